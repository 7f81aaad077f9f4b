# Benchmark peer, written for `deno task bench --only peers` (bench/peers.ts), not part of flexsp: what the plain
# PyTorch peers (peers_ddp.py, peers_ulysses.py) share. Each runs under torchrun (python -m torch.distributed.run) on
# gloo, trains transformers' LlamaForCausalLM from the same Hugging Face directory that flexsp loads (`model.from`),
# on the very token sequences flexsp trained per step (the job file, written from flexsp's ledger), with
# torch.optim.AdamW and gradient clipping, and times every step end to end (forward, backward, gradient all-reduce,
# optimizer). Rank 0 writes the result JSON.
#
# The job file: {"model": DIR, "steps": [[[token, ...], ...], ...], "lrs": [float per step], "weight_decay": float,
#                "grad_clip": float, "seed": int, "threads": int, "cpus": [[cpu, ...], ...] | null}
#
# usage (the model both sides start from): python3 peers_common.py make-model DIR SHAPE_JSON SEED
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from transformers import LlamaForCausalLM


@dataclass
class Job:
    model: str
    steps: list[list[list[int]]]
    lrs: list[float]
    weight_decay: float
    grad_clip: float
    seed: int
    threads: int
    cpus: list[list[int]] | None


def read_job(path: str) -> Job:
    with open(path) as f:
        raw = json.load(f)
    return Job(
        model=raw["model"],
        steps=raw["steps"],
        lrs=[float(x) for x in raw["lrs"]],
        weight_decay=float(raw["weight_decay"]),
        grad_clip=float(raw["grad_clip"]),
        seed=int(raw["seed"]),
        threads=int(raw["threads"]),
        cpus=raw.get("cpus"),
    )


def start(job: Job) -> tuple[int, int]:
    """Joins torchrun's gloo process group; pins this rank as flexsp pins its executor; returns (rank, world)."""
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if job.cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, job.cpus[rank % len(job.cpus)])
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    return rank, world


def load_model(job: Job, attn: str) -> LlamaForCausalLM:
    """The same initial weights as flexsp (the directory flexsp's `model.from` names), float32, training mode."""
    model = LlamaForCausalLM.from_pretrained(
        job.model, attn_implementation=attn, dtype=torch.float32, local_files_only=True
    )
    model.config.use_cache = False
    model.train()
    return model


def lpt(lengths: list[int], bins: int) -> list[list[int]]:
    """Longest processing time first: each sequence (longest first) to the least-loaded rank; indices per rank."""
    loads = [0] * bins
    out: list[list[int]] = [[] for _ in range(bins)]
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        b = min(range(bins), key=lambda r: (loads[r], r))
        loads[b] += lengths[i]
        out[b].append(i)
    return out


@dataclass
class StepResult:
    ms: float
    tokens: int
    loss: float


def train(
    job: Job,
    model: DistributedDataParallel,
    micro: Callable[[int, list[list[int]], int], list[tuple[Callable[[], torch.Tensor], bool]]],
) -> list[StepResult]:
    """Runs every step: `micro(step, seqs, targets)` gives this rank's micro-batches as (loss closure, last) pairs,
    each loss already scaled so that the all-reduced gradient is that of the step's mean token loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=job.lrs[0], weight_decay=job.weight_decay, betas=(0.9, 0.95), eps=1e-8, foreach=True
    )
    results: list[StepResult] = []
    for step, seqs in enumerate(job.steps):
        for g in opt.param_groups:
            g["lr"] = job.lrs[step]
        dist.barrier()
        t0 = time.perf_counter()
        targets = sum(len(s) - 1 for s in seqs)
        total = torch.zeros(())
        for loss_fn, last in micro(step, seqs, targets):
            if last:
                loss = loss_fn()
                loss.backward()
            else:
                with model.no_sync():
                    loss = loss_fn()
                    loss.backward()
            total += loss.detach()
        if job.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, job.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dist.all_reduce(total)
        ms = (time.perf_counter() - t0) * 1000
        results.append(StepResult(ms=ms, tokens=sum(len(s) for s in seqs), loss=float(total) / dist.get_world_size()))
    return results


def finish(rank: int, out: str, name: str, results: list[StepResult]) -> None:
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"peer": name, "steps": [r.__dict__ for r in results]}, f)
    dist.barrier()
    # No destroy_process_group: with a second gloo group (Ulysses') it hung now and then on the loaded test machine
    # after both ranks were done. The result is written; leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def make_model(out: str, shape: dict[str, int | float], seed: int) -> None:
    """A randomly initialised llama (transformers' own init) saved as a Hugging Face directory."""
    from transformers import LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=int(shape["hidden"]),
        intermediate_size=int(shape["intermediate"]),
        num_hidden_layers=int(shape["layers"]),
        num_attention_heads=int(shape["heads"]),
        num_key_value_heads=int(shape["kvHeads"]),
        vocab_size=int(shape["vocab"]),
        max_position_embeddings=int(shape["maxSeq"]),
        rope_theta=float(shape["ropeTheta"]),
        rms_norm_eps=float(shape["normEps"]),
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "make-model":
        sys.exit("usage: python3 peers_common.py make-model DIR SHAPE_JSON SEED")
    make_model(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
