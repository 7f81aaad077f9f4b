# The torch executor's side of `deno task profile` (kernels/profiling.ts): forward+backward timing of packed
# degree-1 batches with activation memory, and timed all-to-alls of concurrent pool groups.
#
# Time: CUDA events on cuda, perf_counter on the CPU. Memory: on cuda the allocator's peak above what was
# allocated before the run (torch.cuda.max_memory_allocated, "device_peak"); on the CPU torch keeps no allocator
# statistics, so the executor counts the bytes of the distinct tensors autograd saves for the backward (parameters
# excluded) plus the largest transient of the run, one chunk of logits and its gradient (loss.py): the activation
# memory of that batch ("buffers").
#
# Fault injection (tests only, fault_injection.py): FLEXSP_PROFILE_FAULT="RANK:error" makes that rank's compute
# benchmark throw, and "RANK:exit" makes the process exit, at the first timed run.
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any, Callable, Iterator

import torch

from .comm import DataPlane
from .errors import Refusal
from .fault_injection import injected_fault
from .loss import chunk_tokens
from .model_shape import ModelShape
from .packing import TokenSource, pack_group


def check_compute_request(req: Any, shape: ModelShape) -> None:
    """Refuses a bad compute request before any collective starts (the messages of kernels/profiling.ts)."""
    if not isinstance(req, dict) or not isinstance(req.get("id"), str) or not isinstance(req.get("points"), list) \
            or not req["points"]:
        raise Refusal("profile_compute: needs an id and at least one point")
    for i, p in enumerate(req["points"]):
        c, ln = (p.get("count"), p.get("length")) if isinstance(p, dict) else (None, None)
        if not isinstance(c, int) or c < 1 or not isinstance(ln, int) or ln < 2:
            raise Refusal(f"profile_compute: point {i} needs count >= 1 and length >= 2, "
                          f"got {json.dumps(p, separators=(',', ':'))}")
        if ln > shape.max_seq:
            raise Refusal(f"profile_compute: point {i} has length {ln}, more than the model's {shape.max_seq}")
    order = req.get("order")
    if not isinstance(order, list) or not order:
        raise Refusal("profile_compute: empty order")
    for i in order:
        if not isinstance(i, int) or i < 0 or i >= len(req["points"]):
            raise Refusal(f"profile_compute: order refers to point {i}, which does not exist")
    w = req.get("warmup")
    if not isinstance(w, int) or w < 0:
        raise Refusal("profile_compute: bad warmup")


def check_alltoall_request(req: Any, world_size: int, in_pool: Callable[[list[int]], bool]) -> None:
    """Refuses a bad all-to-all request; every group must be a block of the SP-group pool."""
    if not isinstance(req, dict) or not isinstance(req.get("id"), str) or not isinstance(req.get("groups"), list) \
            or not isinstance(req.get("sizes"), list):
        raise Refusal("profile_alltoall: needs id, groups and sizes")
    seen: set[int] = set()
    for g in req["groups"]:
        if not isinstance(g, list) or len(g) < 2:
            raise Refusal("profile_alltoall: every group needs at least 2 ranks")
        for r in g:
            if not isinstance(r, int) or r < 0 or r >= world_size:
                raise Refusal(f"profile_alltoall: bad rank {r}")
            if r in seen:
                raise Refusal(f"profile_alltoall: rank {r} is in two groups")
            seen.add(r)
        if not in_pool(g):
            raise Refusal(f"profile_alltoall: group {g} is not an aligned power-of-two block of the SP-group pool")
    for s in req["sizes"]:
        if not isinstance(s, int) or s < 0:
            raise Refusal(f"profile_alltoall: bad size {s}")
    it, w = req.get("iters"), req.get("warmup")
    if not isinstance(it, int) or it < 1 or not isinstance(w, int) or w < 0:
        raise Refusal("profile_alltoall: bad iters or warmup")


class _Timer:
    """Wall time of a region: CUDA events on a GPU (the device's own clock), perf_counter otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.a = torch.cuda.Event(enable_timing=True)
            self.b = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        if self.cuda:
            self.a.record()
        else:
            self.t0 = time.perf_counter()

    def stop_ms(self) -> float:
        if self.cuda:
            self.b.record()
            self.b.synchronize()
            return float(self.a.elapsed_time(self.b))
        return (time.perf_counter() - self.t0) * 1000


@contextlib.contextmanager
def _saved_bytes(param_ptrs: set[int], acc: list[int]) -> Iterator[None]:
    """Counts into acc[0] the bytes of the distinct storages autograd saves for the backward (not parameters)."""
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        try:
            ptr = st.data_ptr()
        except RuntimeError:  # a storage FSDP2 has freed (a resharded parameter): not an activation
            return t
        if ptr not in seen and ptr not in param_ptrs:
            seen.add(ptr)
            acc[0] += st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def profile_compute(
    req: dict[str, Any],
    *,
    rank: int,
    world_size: int,
    shape: ModelShape,
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list[int]], torch.Tensor],
    param_ptrs: set[int],
    zero_grad: Callable[[], None],
    source: TokenSource,
    dp: DataPlane | None,
    device: torch.device,
    device_name: str,
    autocast: Callable[[], Any],
    model_state_bytes: int,
) -> dict[str, Any]:
    """Runs the compute grid on this device (the same path as a training micro-batch)."""
    sync = bool(req.get("barrier")) and world_size > 1
    if sync and dp is None:
        raise RuntimeError("profile_compute: data plane not connected (send peers first)")
    fault = injected_fault("FLEXSP_PROFILE_FAULT", rank)
    timer = _Timer(device)
    cuda = device.type == "cuda"
    samples: list[dict[str, Any]] = []
    runs = [req["order"][0]] * req["warmup"] + list(req["order"])
    for i, pi in enumerate(runs):
        timed = i >= req["warmup"]
        p = req["points"][pi]
        if sync and dp is not None:
            dp.barrier()
        if timed and fault:
            if fault == "exit":
                print(f"rank {rank}: injected fault (FLEXSP_PROFILE_FAULT): exiting", file=sys.stderr, flush=True)
                os._exit(3)
            raise RuntimeError(f"injected fault (FLEXSP_PROFILE_FAULT) at {p['count']}x{p['length']} tokens")
        if cuda:
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        acc = [0]
        timer.start()
        refs = [{"id": 1_000_000 + i * 64 + k, "offset": 0, "length": p["length"]} for k in range(p["count"])]
        packed = pack_group([source.read(r) for r in refs], 1, shape.max_seq, shape.vocab)
        tok, pos, tgt = (x.to(device) for x in (packed.tokens, packed.positions, packed.targets))
        with _saved_bytes(param_ptrs, acc), autocast():
            loss = forward(tok, pos, tgt, packed.cu_seqlens)
        (loss * (1 / max(1, packed.target_count))).backward()
        loss_sum = float(loss.detach().double().item())
        ms = timer.stop_ms()
        if loss_sum != loss_sum or loss_sum in (float("inf"), float("-inf")):
            raise RuntimeError(f"loss is {loss_sum} at {p['count']}x{p['length']} tokens: the device computes garbage")
        if cuda:
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = acc[0] + 2 * min(packed.seq_len, chunk_tokens(shape.vocab)) * shape.vocab * 4  # + a logits chunk
        if timed:
            samples.append({"point": pi, "ms": ms, "tokens": packed.seq_len, "peakBytes": int(peak)})
    zero_grad()
    return {
        "id": req["id"],
        "samples": samples,
        "modelStateBytes": model_state_bytes,
        "memorySource": "device_peak" if cuda else "buffers",
        "device": device_name,
    }


def profile_alltoall(
    req: dict[str, Any], *, rank: int, world_size: int, dp: DataPlane | None, device: torch.device
) -> dict[str, Any]:
    """Timed all-to-alls: per size, warmup + iters rounds, each after a barrier of all ranks so groups run at once."""
    import torch.distributed as dist

    if world_size > 1 and dp is None:
        raise RuntimeError("profile_alltoall: data plane not connected")
    group = next((g for g in req["groups"] if rank in g), None)
    pg = dp.group(group) if group is not None and dp is not None else None
    timer = _Timer(device)
    samples: list[dict[str, Any]] = []
    for nbytes in req["sizes"]:
        ms: list[float] = []
        if group is not None:
            per = max(1, nbytes // 4 // len(group))
            send = torch.full((per * len(group),), rank + 0.5, dtype=torch.float32, device=device)
            recv = torch.empty_like(send)
        for it in range(req["warmup"] + req["iters"]):
            if world_size > 1 and dp is not None:
                dp.barrier()
            if group is None:
                continue
            timer.start()
            dist.all_to_all_single(recv, send, group=pg)
            dt = timer.stop_ms()
            if it >= req["warmup"]:
                ms.append(dt)
        samples.append({"bytes": nbytes, "ms": ms})
    return {"id": req["id"], "samples": samples}
