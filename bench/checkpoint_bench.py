# One measurement of `deno task bench --only checkpoint` (bench/checkpoint.ts): WORLD torch-cpu ranks (gloo on
# 127.0.0.1, one thread each) hold a GPT of the given shape under ZeRO-STAGE with its AdamW state, and each rank times
# (1) the sharded DCP save of kernels/torch/dcp_checkpoint.py and the bytes it wrote, (2) loading it back, and (3) the
# full-copy format the torch executor wrote before (every tensor gathered whole to every rank's host, the flat file
# of checkpoint.py written by every rank). Prints one JSON object: per rank, seconds, bytes and peak host memory
# (dcp_checkpoint.PeakHostMemory: the rise of resident memory above its level before) of each; and (4) the
# asynchronous save (training.checkpoint_async): how long it blocks the caller (the staging copy) and how long until
# it is durable.
# `PYTHONPATH=. python3 bench/checkpoint_bench.py --shape JSON --world N --stage Z --dir DIR` (the repository's root on
# PYTHONPATH: the executor package imports as kernels.torch)
from __future__ import annotations

import argparse
import json
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kernels.torch import dcp_checkpoint
from kernels.torch.causal_lm import CausalLm, transformers_config
from kernels.torch.checkpoint import encode_state, write_atomic
from kernels.torch.model_shape import ModelShape
from kernels.torch.param_init import init_slice
from kernels.torch.param_layout import param_layout
from kernels.torch.trainer import AdamWConfig, Trainer

OPT = AdamWConfig(weight_decay=0.1, grad_clip=1.0, beta1=0.9, beta2=0.95, eps=1e-8)


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().to("cpu", torch.float32)


def full_copy_save(tr: Trainer, shape: ModelShape, path: str) -> int:
    """The former format: every tensor gathered whole, three flat buffers, one whole file per rank."""
    lay = tr.layout
    p, m, v = (torch.zeros(lay.total) for _ in range(3))
    for sl, param in zip(lay.slices, tr.params):
        st = tr.optim.state.get(param, {})
        for buf, t in ((p, param), (m, st.get("exp_avg")), (v, st.get("exp_avg_sq"))):
            if t is not None:
                buf[sl.offset : sl.offset + sl.length] = _full(t).reshape(-1)
    data = encode_state(shape, 1, p, m, v)
    write_atomic(path, data)
    return len(data)


def worker(rank: int, a: argparse.Namespace, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=a.world)
    shape = ModelShape.from_json(json.loads(a.shape))
    lay = param_layout(shape)
    index = {s.name: i for i, s in enumerate(lay.slices)}

    def start(name: str, _m: str, rows: tuple[int, int] | None) -> torch.Tensor:
        t = init_slice(lay, index[name], 1, "fast").view(lay.slices[index[name]].shape)
        return t if rows is None else t[rows[0] : rows[1]]

    with torch.device("meta"):
        model = CausalLm(shape, transformers_config(shape, None), "none")
    tr = Trainer(model, lay, torch.device("cpu"), a.world, a.stage, "fp32", OPT, start)
    names = dcp_checkpoint.layout_names(tr.inner, lay)
    ck = os.path.join(a.dir, "dcp")
    dcp_checkpoint.save(ck, tr.inner, tr.optim, 1, shape, names, rank)  # warm-up; creates the AdamW state
    dist.barrier()
    t0 = time.perf_counter()
    with dcp_checkpoint.PeakHostMemory() as save_mem:
        files = dcp_checkpoint.save(ck, tr.inner, tr.optim, 1, shape, names, rank)
    save_s = time.perf_counter() - t0
    dist.barrier()
    t0 = time.perf_counter()
    every_file = [f for per in _all(files) for f in per]
    with dcp_checkpoint.PeakHostMemory() as load_mem:
        info = dcp_checkpoint.check(ck, every_file, shape, rank, a.world)
        dcp_checkpoint.load(ck, info, tr.inner, tr.optim)
    load_s = time.perf_counter() - t0
    dist.barrier()
    times: list[float] = []
    for _ in range(2):  # the first creates the asynchronous saves' process group
        got: list[object] = []
        t0 = time.perf_counter()
        pending = dcp_checkpoint.save(os.path.join(a.dir, "async"), tr.inner, tr.optim, 1, shape, names, rank,
                                      got.append)
        times = [time.perf_counter() - t0]
        assert isinstance(pending, dcp_checkpoint.AsyncSave)
        pending.wait()
        times.append(time.perf_counter() - t0)
        assert isinstance(got[0], list), got
        dist.barrier()
    t0 = time.perf_counter()
    with dcp_checkpoint.PeakHostMemory() as full_mem:
        full_bytes = full_copy_save(tr, shape, os.path.join(a.dir, f"rank-{rank}.ckpt"))
    full_s = time.perf_counter() - t0
    res = {"rank": rank, "dcpSaveS": save_s, "dcpLoadS": load_s, "dcpBytes": sum(f["bytes"] for f in files),
           "fullSaveS": full_s, "fullBytes": full_bytes, "dcpSavePeakHostBytes": save_mem.bytes,
           "dcpLoadPeakHostBytes": load_mem.bytes, "fullSavePeakHostBytes": full_mem.bytes,
           "asyncBlockS": times[0], "asyncDurableS": times[1]}
    every = _all(res)
    if rank == 0:
        print(json.dumps({"params": lay.total, "world": a.world, "stage": a.stage, "ranks": every}), flush=True)
    dist.destroy_process_group()


def _all(x: object) -> list:
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(a, port), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
