# Measures one forward + backward of a llama-family model slice on this device, for benchmarks (bench/llama.ts on
# torch-cpu, bench/cuda_check.sh on a GPU): tokens/s, peak memory, activation memory per token, and on CUDA the
# MFU against a given dense peak, the attention kernel and the dtype/rank of its inputs. The executor's own model
# and trainer (causal_lm.py, trainer.py); optionally under ZeRO-3 (FSDP2 over a 1-rank process group) and with the
# executor's activation checkpointing policy and precision (default bf16 on cuda, fp32 on the CPU).
#
# usage: python3 llama_slice.py --shape JSON --tokens N [--policy none|selective|full] [--zero3] [--device cpu|cuda]
#        [--repeats R] [--peak-tflops T]        -> one JSON line on stdout
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import torch

from attention import AttentionKernel, Segments, UlyssesContext
from causal_lm import CausalLm, transformers_config
from model import ModelShape, init_params, param_layout
from packing import pack_group
from trainer import PRECISIONS, AdamWConfig, Trainer


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
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="")
    a = ap.parse_args()
    shape = ModelShape.from_json(json.loads(a.shape))
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
                 lambda n, _m: host[by[n].offset : by[n].offset + by[n].length])
    kernel = AttentionKernel(dev, PRECISIONS[precision], shape.heads, shape.kv_heads, shape.head_dim)
    state_bytes = 8 * lay.total  # params + grads (no optimizer here)
    del host
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, shape.vocab, (a.tokens,), generator=g).tolist()
    pk = pack_group([seq], 1, max(shape.max_seq, a.tokens), shape.vocab)
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
        "seconds": sec, "tokensPerS": a.tokens / sec, "modelStateBytes": state_bytes, "precision": precision,
        "attention": kernel.describe(), "kernelInputs": sorted({f"{str(d).replace('torch.', '')} {n}-D" for d, n in trace}),
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
