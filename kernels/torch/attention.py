# Attention for the torch executor: the Ulysses exchange around a fused causal-attention kernel, registered with
# transformers' AttentionInterface so that its decoder layers (llama, mistral, qwen2, gpt2) call it.
#
# A rank holds a contiguous slice of its SP group's packed token stream. In each layer transformers computes q, k, v
# for the local tokens ([1, heads, T, D], RoPE applied: it is token-local); `ulysses_attention` casts them to the
# run's compute dtype, sends head block j to SP rank j with one all_to_all_single (q, k and v together), runs causal
# attention over the whole stream of its heads, never across a packed sequence boundary, and sends the output back
# with a second all-to-all. Backward mirrors both exchanges (an autograd function), so a layer issues exactly two
# all-to-alls forward and two backward; under `selective` checkpointing only the kernel is recomputed.
#
# Kernels, chosen once per executor (`AttentionKernel`), the inputs always 4-D in the compute dtype (asserted):
#   - "flash varlen": torch.nn.attention.varlen.varlen_attn (CUDA) over cu_seqlens, with enable_gqa and
#     window_size where this torch has them (feature-detected), after a start-up self-check against a float32
#     reference with a relative tolerance;
#   - "sdpa": scaled_dot_product_attention per packed sequence on [1, heads, s, D] (the fallback, and the CPU
#     path, where torch's CPU flash kernel serves it). A segment longer than QUADRATIC_LIMIT tokens runs with the
#     math backend excluded, so it never materialises s² scores unless the run allows it (allowQuadraticAttention).
# Sliding windows (mistral, qwen2) go to the kernel: varlen's window_size, or SDPA over query blocks of the window.
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

#: Sequences longer than this many tokens are refused a kernel that materialises their s² attention scores.
QUADRATIC_LIMIT = 4096
#: The name under which the Ulysses attention is registered with transformers.
IMPLEMENTATION = "flexsp_ulysses"


class AttentionRefused(ValueError):
    """The only kernel available would materialise s² scores of a long sequence."""


class _AllToAll(torch.autograd.Function):
    """all_to_all_single over equal splits of dim 0; the backward is the same exchange of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:  # noqa: ANN401
        ctx.group = group
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        dist.all_to_all_single(out, x.contiguous(), group=group)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN401
        out = torch.empty(g.shape, dtype=g.dtype, device=g.device)
        dist.all_to_all_single(out, g.contiguous(), group=ctx.group)
        return out, None


def all_to_all(x: torch.Tensor, group: Any) -> torch.Tensor:
    """Differentiable all-to-all: chunk j of dim 0 goes to SP rank j; chunk i of the result came from SP rank i."""
    out: torch.Tensor = _AllToAll.apply(x, group)  # type: ignore[no-untyped-call]  # torch leaves apply untyped
    return out


def kv_per_rank(heads: int, kv_heads: int, degree: int) -> int:
    """K/V heads each SP rank attends with (after replication); raises a clear error for an incompatible degree."""
    if heads % degree != 0:
        raise ValueError(f"Ulysses SP: {heads} query heads are not divisible by the SP degree {degree}")
    if kv_heads % degree == 0:
        return kv_heads // degree
    if degree % kv_heads == 0:
        return 1
    raise ValueError(f"Ulysses SP: {kv_heads} K/V heads neither divide by the SP degree {degree} nor divide it "
                     "(replication needs the degree to be a multiple of the K/V heads)")


@dataclass
class Segments:
    """The packed sequences of an SP group's whole stream: built once per micro-batch."""

    #: Cumulative lengths [0, l0, l0+l1, ..., S] (a padding segment included), on the host.
    cu: list[int]
    #: The same as int32 on the device, for varlen kernels (None until a kernel needs it).
    cu_device: torch.Tensor | None = None
    max_len: int = 0

    def __post_init__(self) -> None:
        self.max_len = max((b - a for a, b in zip(self.cu[:-1], self.cu[1:])), default=0)

    def on(self, device: torch.device) -> torch.Tensor:
        """cu_seqlens as int32 on `device` (copied once)."""
        if self.cu_device is None or self.cu_device.device != device:
            self.cu_device = torch.tensor(self.cu, dtype=torch.int32).to(device, non_blocking=True)
        return self.cu_device


class UlyssesContext:
    """What one micro-batch's attention calls need: the SP group, its degree and the stream's segments. A plain
    class, not a dataclass, so FSDP2's forward-input traversal passes it through untouched."""

    def __init__(self, group: Any, degree: int, segments: Segments, kernel: "AttentionKernel",
                 trace: list[tuple[torch.dtype, int]] | None = None) -> None:
        self.group = group
        self.degree = degree
        self.segments = segments
        self.kernel = kernel
        self.checkpoint_kernel = False
        #: Tests and benchmarks: each kernel call's (dtype, ndim) of q.
        self.trace = trace


def _repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:
    return x if n == 1 else x.repeat_interleave(n, dim=1)


def _sdpa_window(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float) -> torch.Tensor:
    """Causal attention with a sliding window of `window` tokens over query blocks of `window` (memory ∝ window²)."""
    s = q.shape[2]
    out = []
    for a in range(0, s, window):
        b = min(s, a + window)
        lo = max(0, a - window + 1)
        qi = torch.arange(a, b, device=q.device)[:, None]
        kj = torch.arange(lo, b, device=q.device)[None, :]
        mask = (kj <= qi) & (kj > qi - window)
        out.append(F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, lo:b], v[:, :, lo:b], attn_mask=mask,
                                                  scale=scale))
    return torch.cat(out, dim=2)


def _varlen_fn() -> tuple[Callable[..., Any], set[str]] | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, set(inspect.signature(varlen_attn).parameters)


class AttentionKernel:
    """
    Causal attention of token-major packed streams, 4-D `[1, heads, S, D]` in and out, never across a segment.
    `name` is what the executor reports ("flash varlen" or "sdpa"); `dtype` the dtype it is called with.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int,
                 allow_quadratic: bool = False, log: Callable[[str], None] = lambda _: None) -> None:
        self.device = device
        self.dtype = dtype
        self.allow_quadratic = allow_quadratic
        self.varlen: Callable[..., Any] | None = None
        self.varlen_params: set[str] = set()
        self.name = "sdpa"
        self.note = ""
        forced = os.environ.get("FLEXSP_TORCH_ATTENTION", "")
        if forced not in ("", "sdpa", "varlen"):
            raise ValueError(f'FLEXSP_TORCH_ATTENTION must be "sdpa" or "varlen", got "{forced}"')
        if device.type == "cuda" and forced != "sdpa":
            found = _varlen_fn()
            if found is None:
                self.note = "this torch has no torch.nn.attention.varlen"
            else:
                self.varlen, self.varlen_params = found
                why = self._self_check(heads, kv_heads, head_dim)
                if why is not None:
                    self.varlen, self.note = None, why
                    log(f"attention: not using varlen_attn ({why}); SDPA per sequence")
                else:
                    self.name = "flash varlen"
        elif device.type != "cuda":
            self.note = "varlen_attn is CUDA-only; SDPA per sequence (CPU flash kernel)"

    def describe(self) -> str:
        """One line for the ready event and the run's log."""
        dt = str(self.dtype).replace("torch.", "")
        return f"{self.name} ({dt})" + (f"; {self.note}" if self.note and self.name != "flash varlen" else "")

    # ---------- the kernels ----------

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: Segments, scale: float,
                 window: int | None = None) -> torch.Tensor:
        """q `[1, hq, S, D]`, k/v `[1, hkv, S, D]` -> `[1, hq, S, D]`, causal within each segment."""
        assert q.dim() == 4 and k.dim() == 4 and v.dim() == 4, "attention kernel: inputs must be 4-D"
        assert q.dtype == self.dtype and k.dtype == self.dtype and v.dtype == self.dtype, \
            f"attention kernel: inputs are {q.dtype}/{k.dtype}/{v.dtype}, the run computes in {self.dtype}"
        if self.varlen is not None:
            return self._varlen(q, k, v, seg, scale, window)
        return self._sdpa(q, k, v, seg, scale, window)

    def _varlen(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: Segments, scale: float,
                window: int | None) -> torch.Tensor:
        assert self.varlen is not None
        hq, hkv = q.shape[1], k.shape[1]
        kw: dict[str, Any] = {}
        if "scale" in self.varlen_params:
            kw["scale"] = scale
        if hq != hkv:
            if "enable_gqa" in self.varlen_params:
                kw["enable_gqa"] = True
            else:
                k, v = _repeat_kv(k, hq // hkv), _repeat_kv(v, hq // hkv)
        if "window_size" in self.varlen_params:
            kw["window_size"] = (window - 1 if window else -1, 0)
        elif "is_causal" in self.varlen_params and not window:
            kw["is_causal"] = True
        else:
            return self._sdpa(q, k, v, seg, scale, window)
        cu = seg.on(q.device)
        # varlen takes token-major [S, heads, D].
        qt, kt, vt = (x[0].transpose(0, 1).contiguous() for x in (q, k, v))
        out = self.varlen(qt, kt, vt, cu, cu, seg.max_len, seg.max_len, **kw)
        res: torch.Tensor = out[0] if isinstance(out, tuple) else out
        return res.transpose(0, 1).unsqueeze(0)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: Segments, scale: float,
              window: int | None) -> torch.Tensor:
        hq, hkv = q.shape[1], k.shape[1]
        if hq != hkv:  # the fused CPU kernel has no GQA: repeat K/V (hkv·S·D each, never S²)
            k, v = _repeat_kv(k, hq // hkv), _repeat_kv(v, hq // hkv)
        outs = []
        for a, b in zip(seg.cu[:-1], seg.cu[1:]):
            qs, ks, vs = q[:, :, a:b], k[:, :, a:b], v[:, :, a:b]
            if window and b - a > window:
                outs.append(_sdpa_window(qs, ks, vs, window, scale))
            elif b - a > QUADRATIC_LIMIT and not self.allow_quadratic:
                outs.append(self._fused_only(qs, ks, vs, scale))
            else:
                outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)

    def _fused_only(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        fused = [b for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                             getattr(SDPBackend, "CUDNN_ATTENTION", None)) if b is not None]
        try:
            with sdpa_kernel(fused):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        except RuntimeError as e:
            raise AttentionRefused(
                f"attention: a {q.shape[2]}-token sequence ({q.shape[1]} heads of {q.shape[3]}, {q.dtype} on "
                f"{q.device.type}) has no fused SDPA kernel here, and the math kernel would materialise "
                f"{q.shape[1]}×{q.shape[2]}² scores; use a torch with FlashAttention (varlen_attn on CUDA), "
                f"training.precision bf16, or set training.allow_quadratic_attention: true "
                f"({str(e).splitlines()[0][:160]})") from None

    def _self_check(self, heads: int, kv_heads: int, d: int) -> str | None:
        """Forward + backward of the varlen kernel against a float32 SDPA reference; None when it agrees."""
        try:
            g = torch.Generator(device=self.device).manual_seed(0)
            shapes = ((1, heads, 96, d), (1, kv_heads, 96, d), (1, kv_heads, 96, d))
            x32 = [torch.randn(s, generator=g, device=self.device) for s in shapes]
            seg = Segments([0, 40, 95, 96])
            scale = d ** -0.5
            ref_in = [t.clone().requires_grad_(True) for t in x32]
            with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
                ref = self._sdpa(ref_in[0], ref_in[1], ref_in[2], seg, scale, None)
            up = torch.randn(ref.shape, generator=g, device=self.device)
            ref_g = torch.autograd.grad((ref * up).sum(), ref_in)
            got_in = [t.to(self.dtype).requires_grad_(True) for t in x32]
            got = self._varlen(got_in[0], got_in[1], got_in[2], seg, scale, None)
            got_g = torch.autograd.grad((got.float() * up).sum(), got_in)
            tol = 2e-2 if self.dtype != torch.float32 else 1e-4
            for name, a, b in zip(("output", "dq", "dk", "dv"), (got, *got_g), (ref, *ref_g)):
                rel = float((a.float() - b).norm() / b.norm().clamp_min(1e-12))
                if not rel < tol:
                    return f"self-check: {name} differs from a float32 reference by {rel:.2g} (relative)"
            return None
        except Exception as e:  # noqa: BLE001 - any failure means: do not use it
            return f"self-check failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"


def _exchange_and_attend(ctx: UlyssesContext, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                         window: int | None) -> torch.Tensor:
    """q `[1, NH, T, D]`, k/v `[1, KV, T, D]` (local tokens, all heads) -> output `[1, T, NH, D]` (local tokens)."""
    d, dt = ctx.degree, ctx.kernel.dtype
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    NH, KV, T, D = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    attend = ctx.kernel
    if ctx.trace is not None:
        ctx.trace.append((q.dtype, q.dim()))
    if d == 1:
        if ctx.checkpoint_kernel:
            o: torch.Tensor = checkpoint(attend, q, k, v, ctx.segments, scale, window, use_reentrant=False)
        else:
            o = attend(q, k, v, ctx.segments, scale, window)
        return o[0].transpose(0, 1).unsqueeze(0)
    hkv = kv_per_rank(NH, KV, d)
    if KV % d != 0:  # replicate each K/V head d/KV times: SP rank j gets head j // (d/KV)
        k, v = _repeat_kv(k, d // KV), _repeat_kv(v, d // KV)
    hq = NH // d
    # [1, H, T, D] -> [d, T, h, D]: block j (the heads of SP rank j) goes to SP rank j; q, k, v in one exchange.
    blocks = [x[0].view(d, x.shape[1] // d, T, D).transpose(1, 2) for x in (q, k, v)]
    full = all_to_all(torch.cat(blocks, dim=2), ctx.group)  # [d (token blocks), T, hq + 2·hkv, D]
    full = full.reshape(d * T, hq + 2 * hkv, D).transpose(0, 1).unsqueeze(0)  # [1, heads, S, D]
    qs, ks, vs = full[:, :hq], full[:, hq : hq + hkv], full[:, hq + hkv :]
    if ctx.checkpoint_kernel:
        o = checkpoint(attend, qs, ks, vs, ctx.segments, scale, window, use_reentrant=False)
    else:
        o = attend(qs, ks, vs, ctx.segments, scale, window)
    # [1, hq, S, D] -> [d (token blocks), T, hq, D]: token block j goes back to SP rank j.
    back = all_to_all(o[0].transpose(0, 1).reshape(d, T, hq, D), ctx.group)  # [d (head blocks), T, hq, D]
    return back.permute(1, 0, 2, 3).reshape(1, T, NH, D)


def ulysses_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      sliding_window: int | None = None, flexsp: UlyssesContext | None = None,
                      **_: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: `[1, heads, T, D]` in, `[1, T, heads, D]` out."""
    if flexsp is None:
        raise RuntimeError("flexsp attention called without its context (the executor passes flexsp=...)")
    if dropout:
        raise ValueError("flexsp attention: dropout is not supported (set attention_dropout 0)")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = _exchange_and_attend(flexsp, query, key, value, scale, sliding_window)
    return out, None


def register() -> None:
    """Registers `ulysses_attention` with transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, ulysses_attention)
