# Measures forward + backward of a llama-family model slice with the executor's own model and trainer (causal_lm.py,
# trainer.py), for benchmarks (bench/llama.ts on torch-cpu, bench/cuda_check.sh on a GPU): per token count, tokens/s,
# peak memory, activation memory per token, on CUDA the MFU against a given dense peak (the LM head's FLOPs are
# counted: "mfuIncludesLmHead"), the attention kernel, and the dtype and rank of the tensors it was called with.
# Optionally under ZeRO-3 (FSDP2 over a 1-rank process group), with a checkpointing policy and a precision (default
# bf16 on cuda, fp32 on the CPU), as K packed sequences per count, and with a torch.profiler summary of device idle
# time. `--require-kernel NAME` exits 3 (after printing its rows) when the kernel in use is not NAME or its inputs are
# not 4-D in the run's dtype: the first GPU run must prove FlashAttention in bf16, not find out later.
#
# usage: python3 -m kernels.torch.llama_slice --shape JSON --tokens N[,N...] [--sequences K]
#        [--policy none|selective|full] [--zero3] [--device cpu|cuda] [--precision bf16|fp32] [--repeats R]
#        [--peak-tflops T] [--require-kernel NAME] [--torch-profile]   -> one JSON line per token count on stdout
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

import torch

from .attention import AttentionKernel, Segments, UlyssesContext
from .causal_lm import CausalLm, transformers_config
from .model_shape import ModelShape
from .param_init import init_params
from .param_layout import param_layout
from .packing import pack_group
from .trainer import PRECISIONS, AdamWConfig, Trainer


def flops_per_token(shape: ModelShape, seq_len: int) -> float:
    """Model FLOPs per token of forward + backward (6·matmul parameters incl. the LM head + causal attention at
    sequences of `seq_len` tokens: 6·L·s·heads·headDim per token)."""
    H, q, kv, ff = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    per_layer = H * q + 2 * H * kv + q * H + 3 * H * ff
    dense = shape.layers * per_layer + shape.vocab * H
    attn = shape.layers * 2 * seq_len * q  # causal: half of 4·s·q per token, times 3 for fwd+bwd
    return 6 * dense + 3 * attn


def _idle(prof: Any, wall_ms: float) -> dict[str, float]:
    """Device busy time (sum of kernel durations) against the profiled wall time."""
    busy_us = 0.0
    for e in prof.events():
        if getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CUDA"):
            busy_us += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
    busy_ms = busy_us / 1000
    return {"wallMs": wall_ms, "deviceBusyMs": busy_ms, "idleFraction": max(0.0, 1 - busy_ms / wall_ms)}


def _versus_transformers(shape: ModelShape, seqs: list[list[int]], dev: torch.device, precision: str,
                         repeats: int, ours: Any) -> tuple[float, float]:
    """Seconds per forward + backward of the executor (`ours()`) and of transformers' own model (its SDPA attention,
    float32 weights, autocast for bf16) over `seqs`, one sequence per call (what a user of transformers runs
    instead): alternated, the fastest of `repeats` runs each, so a busy machine slows both alike."""
    import transformers

    cfg = transformers_config(shape)
    cfg._attn_implementation = "sdpa"
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(dev)
    batches = [torch.tensor([s], device=dev) for s in seqs]
    ac = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def once() -> None:
        for x in batches:
            with ac:
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
        model.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    once()
    best = [float("inf"), float("inf")]
    for _ in range(max(3, repeats)):
        for i, f in enumerate((ours, once)):
            t0 = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best[0], best[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--tokens", required=True, help="token counts, comma-separated")
    ap.add_argument("--sequences", type=int, default=1, help="packed sequences per count (equal lengths)")
    ap.add_argument("--policy", default="selective", choices=("none", "selective", "full"))
    ap.add_argument("--zero3", action="store_true")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="")
    ap.add_argument("--require-kernel", default="")
    ap.add_argument("--torch-profile", action="store_true")
    ap.add_argument("--transformers", action="store_true",
                    help="also time transformers' own model (SDPA, one sequence per call) on the same sequences")
    a = ap.parse_args()
    shape = ModelShape.from_json(json.loads(a.shape))
    counts = [int(x) for x in a.tokens.split(",")]
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.cuda.set_device(0)
    lay = param_layout(shape)
    host = init_params(lay, 1, "fast")
    store_dir = tempfile.mkdtemp(prefix="flexsp-slice-")
    if a.zero3:
        import torch.distributed as dist

        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                init_method=f"file://{os.path.join(store_dir, 'store')}", rank=0, world_size=1)
    precision = a.precision or ("bf16" if dev.type == "cuda" else "fp32")
    with torch.device("meta"):
        model = CausalLm(shape, transformers_config(shape), a.policy)
    by = lay.by_name
    tr = Trainer(model, lay, dev, 1, 3 if a.zero3 else 0, precision, AdamWConfig(0.1, 1.0, 0.9, 0.95, 1e-8),
                 lambda n, _m, rows: host[by[n].offset : by[n].offset + by[n].length].view(by[n].shape)[
                     slice(*rows) if rows else slice(None)])
    kernel = AttentionKernel(dev, PRECISIONS[precision], shape.heads, shape.kv_heads, shape.head_dim)
    host = torch.empty(0)  # the trainer holds what it needs
    failed = False
    for tokens in counts:
        k = max(1, min(a.sequences, tokens))
        g = torch.Generator().manual_seed(tokens)
        seqs = [torch.randint(0, shape.vocab, (tokens // k,), generator=g).tolist() for _ in range(k)]
        pk = pack_group(seqs, 1, max(shape.max_seq, tokens), shape.vocab)
        tok, pos, tgt = pk.tokens.to(dev), pk.positions.to(dev), pk.targets.to(dev)
        trace: list[tuple[torch.dtype, int]] = []

        def once() -> None:
            ctx = UlyssesContext(None, 1, Segments(pk.cu_seqlens), kernel, trace=trace)
            with tr.autocast():
                loss = tr.module(tok, pos, tgt, ctx)
            (loss / pk.target_count).backward()
            tr.zero_grad()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        once()  # warm-up (allocations, kernels)
        base = 0
        if dev.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            once()
        sec = (time.perf_counter() - t0) / a.repeats
        n = pk.seq_len
        inputs = sorted({f"{str(d).replace('torch.', '')} {r}-D" for d, r in trace})
        out: dict[str, Any] = {
            "tokens": n, "sequences": k, "policy": a.policy, "zero3": a.zero3, "device": a.device,
            "layers": shape.layers, "seconds": sec, "tokensPerS": n / sec, "modelStateBytes": 8 * lay.total,
            "precision": precision, "attention": kernel.describe(), "kernelInputs": inputs,
            "mfuIncludesLmHead": True,
        }
        tflops = flops_per_token(shape, n // k) * n / sec / 1e12
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated()
            out.update(peakBytes=peak, activationBytesPerToken=(peak - base) / n, tflops=tflops,
                       mfu=tflops / a.peak_tflops if a.peak_tflops > 0 else None)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            out.update(peakBytes=peak, peakGrowthBytes=max(0, peak - rss0), tflops=tflops)
        if a.torch_profile and dev.type == "cuda":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                t1 = time.perf_counter()
                once()
                wall = (time.perf_counter() - t1) * 1000
            out["profile"] = _idle(prof, wall)
        if a.transformers:
            mine, theirs = _versus_transformers(shape, seqs, dev, precision, a.repeats, once)
            out.update(fastestTokensPerS=n / mine, transformersTokensPerS=n / theirs, vsTransformers=theirs / mine)
        want = f"{str(kernel.dtype).replace('torch.', '')} 4-D"
        if a.require_kernel and (kernel.name != a.require_kernel or inputs != [want]):
            out["requireFailed"] = (f"wanted {a.require_kernel} called with {want}, got {kernel.describe()} called "
                                    f"with {', '.join(inputs) or 'nothing'}")
            failed = True
        print(json.dumps(out), flush=True)
    if a.zero3:
        import torch.distributed as dist

        dist.destroy_process_group()
    shutil.rmtree(store_dir, ignore_errors=True)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
