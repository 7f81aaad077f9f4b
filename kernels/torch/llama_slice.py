# Measures one forward + backward of a llama-family model slice on this device, for benchmarks (bench/llama.ts on
# torch-cpu, bench/cuda_check.sh on a GPU): tokens/s, peak memory, activation memory per token, and on CUDA the
# MFU against a given dense peak. Optionally under ZeRO-3 (FSDP2 `fully_shard` over a 1-rank process group, the
# executor's zero3.py path) and with the executor's activation checkpointing policy.
#
# usage: python3 llama_slice.py --shape JSON --tokens N [--policy none|selective|full] [--zero3] [--device cpu|cuda]
#        [--repeats R] [--peak-tflops T]        -> one JSON line on stdout
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import torch

from llama import Llama
from model import ModelShape, init_params, param_layout
from packing import pack_group


def flops_per_token(shape: ModelShape, tokens: int) -> float:
    """Model FLOPs per token of forward + backward (6·matmul parameters + causal attention 6·L·S·heads·headDim)."""
    H, D, q, kv, ff = shape.hidden, shape.head_dim, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, \
        shape.intermediate
    per_layer = H * q + 2 * H * kv + q * H + 3 * H * ff
    dense = shape.layers * per_layer + shape.vocab * H
    attn = shape.layers * 2 * tokens * q  # causal: half of 4·S·q per token, times 3 for fwd+bwd -> 6·S·q/2
    return 6 * dense + 3 * attn


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--policy", default="selective", choices=("none", "selective", "full"))
    ap.add_argument("--zero3", action="store_true")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    a = ap.parse_args()
    shape = ModelShape.from_json(json.loads(a.shape))
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.cuda.set_device(0)
    lay = param_layout(shape)
    host = init_params(lay, 1, "fast")
    store_dir = tempfile.mkdtemp(prefix="flexsp-slice-")
    model_fwd = None
    if a.zero3:
        import torch.distributed as dist

        from zero3 import Zero3Llama

        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                init_method=f"file://{os.path.join(store_dir, 'store')}", rank=0, world_size=1)
        z = Zero3Llama(lay, 1, dev, checkpointing=a.policy)
        z.load_flat(host)
        model_fwd = z.forward
        state_bytes = 16 * z.local_elements()
    else:
        flat, grads = host.to(dev), torch.zeros(lay.total, device=dev)
        m = Llama(lay, flat, grads, checkpointing=a.policy)
        model_fwd = m.forward
        state_bytes = 8 * lay.total  # params + grads (no optimizer here)
    del host
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, shape.vocab, (a.tokens,), generator=g).tolist()
    pk = pack_group([seq], 1, max(shape.max_seq, a.tokens), shape.vocab)
    tok, pos, tgt = pk.tokens.to(dev), pk.positions.to(dev), pk.targets.to(dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()

    def once() -> None:
        with autocast:
            losses = model_fwd(tok, pos, tgt, pk.cu_seqlens, None, 1)
        (losses.sum() / pk.target_count).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    once()  # warm-up (allocations, kernels)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.repeats):
        once()
    sec = (time.perf_counter() - t0) / a.repeats
    out = {
        "tokens": a.tokens, "policy": a.policy, "zero3": a.zero3, "device": a.device, "layers": shape.layers,
        "seconds": sec, "tokensPerS": a.tokens / sec, "modelStateBytes": state_bytes,
    }
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
        out.update(peakBytes=peak, activationBytesPerToken=(peak - base) / a.tokens)
        tflops = flops_per_token(shape, a.tokens) * a.tokens / sec / 1e12
        out.update(tflops=tflops, mfu=tflops / a.peak_tflops if a.peak_tflops > 0 else None)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out.update(peakBytes=peak, peakGrowthBytes=max(0, peak - rss0),
                   tflops=flops_per_token(shape, a.tokens) * a.tokens / sec / 1e12)
    print(json.dumps(out))
    if a.zero3:
        import torch.distributed as dist

        dist.destroy_process_group()
    shutil.rmtree(store_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
