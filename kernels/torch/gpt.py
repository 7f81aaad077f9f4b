# Forward of the GPT (kernels/ulysses_model.ts) on one rank of a Ulysses SP group, in torch with autograd. The
# rank holds a contiguous slice of the group's packed token stream; everything is token-local except attention,
# where one all_to_all_single turns "local tokens, all heads" of Q, K and V into "all tokens, heads/d heads",
# causal attention runs per packed sequence (SDPA on each segment of cu_seqlens, so no token ever attends across
# a sequence boundary), and a second all-to-all turns the output back. Autograd mirrors both exchanges.
#
# Parameters are views into one flat float32 buffer laid out by ParamLayout; their `.grad` are views into one
# flat gradient buffer, so gradients accumulate in the layout the all-reduce buckets and the checkpoints use.
from __future__ import annotations

import inspect
import os
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from model import LAYER_KEYS, LN_EPS, ParamLayout, bind_params


class _AllToAll(torch.autograd.Function):
    """all_to_all_single over equal splits of dim 0; the backward is the same exchange of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:  # noqa: ANN401
        ctx.group = group
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous (empty_like keeps x's strides)
        dist.all_to_all_single(out, x.contiguous(), group=group)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN401
        out = torch.empty(g.shape, dtype=g.dtype, device=g.device)
        dist.all_to_all_single(out, g.contiguous(), group=ctx.group)
        return out, None


def all_to_all(x: torch.Tensor, group: Any) -> torch.Tensor:
    """Differentiable all-to-all: chunk j of dim 0 goes to SP rank j; chunk i of the result came from SP rank i."""
    return _AllToAll.apply(x, group)


def _sdpa_segments(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: list[int]) -> torch.Tensor:
    """Causal SDPA of token-major `[S, heads, D]` tensors inside each segment `[cu[i], cu[i+1])`."""
    q, k, v = (x.transpose(0, 1) for x in (q, k, v))  # [heads, S, D]
    if len(cu) == 2:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        o = torch.cat([F.scaled_dot_product_attention(q[:, a:b], k[:, a:b], v[:, a:b], is_causal=True)
                       for a, b in zip(cu[:-1], cu[1:])], dim=1)
    return o.transpose(0, 1)


def _varlen_call() -> Callable[..., torch.Tensor] | None:
    """torch's FlashAttention varlen entry point with causal masking, if this torch has one."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    causal: dict[str, Any]
    if "window_size" in params:
        causal = {"window_size": (-1, 0)}
    elif "is_causal" in params:
        causal = {"is_causal": True}
    else:
        return None

    def call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int) -> torch.Tensor:
        out = varlen_attn(q, k, v, cu, cu, max_len, max_len, **causal)
        return out[0] if isinstance(out, tuple) else out

    return call


class CausalVarlenAttention:
    """
    Causal attention that never crosses a packed sequence boundary, on token-major `[S, heads, D]` tensors. On a
    GPU it uses torch's FlashAttention varlen kernel when this torch has one AND it passes a forward+backward
    self-check against per-segment SDPA at start-up; otherwise (and always on the CPU) SDPA per segment.
    FLEXSP_TORCH_ATTENTION=sdpa forces the SDPA path.
    """

    def __init__(self, device: torch.device, heads: int, head_dim: int, log: Callable[[str], None]) -> None:
        self.varlen: Callable[..., torch.Tensor] | None = None
        self.name = "sdpa per sequence"
        if device.type != "cuda" or os.environ.get("FLEXSP_TORCH_ATTENTION") == "sdpa":
            return
        call = _varlen_call()
        if call is None:
            return
        why = self._self_check(call, device, heads, head_dim)
        if why is None:
            self.varlen, self.name = call, "flash varlen"
        else:
            log(f"attention: not using varlen_attn ({why}); SDPA per sequence")

    @staticmethod
    def _self_check(call: Callable[..., torch.Tensor], device: torch.device, heads: int, d: int) -> str | None:
        try:
            g = torch.Generator(device=device).manual_seed(0)
            x = [torch.randn(48, heads, d, generator=g, device=device, dtype=torch.bfloat16).requires_grad_(True)
                 for _ in range(3)]
            cu = [0, 20, 47, 48]
            want = _sdpa_segments(x[0], x[1], x[2], cu)
            w = torch.autograd.grad(want.float().square().sum(), x)
            got = call(*x, torch.tensor(cu, dtype=torch.int32, device=device), 27)
            gg = torch.autograd.grad(got.float().square().sum(), x)
            err = max(float((a.float() - b.float()).abs().max()) for a, b in zip((got, *gg), (want, *w)))
            return None if err < 0.1 else f"self-check differs from SDPA by {err:.3g}"
        except Exception as e:  # noqa: BLE001 - any failure means: do not use it
            return f"self-check failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: list[int]) -> torch.Tensor:
        if self.varlen is not None:
            cut = torch.tensor(cu, dtype=torch.int32, device=q.device)
            max_len = max(b - a for a, b in zip(cu[:-1], cu[1:]))
            return self.varlen(q.contiguous(), k.contiguous(), v.contiguous(), cut, max_len)
        return _sdpa_segments(q, k, v, cu)


class Gpt:
    """The GPT over flat parameter / gradient buffers (gradients accumulate until the caller zeroes them)."""

    def __init__(self, layout: ParamLayout, flat: torch.Tensor, grads: torch.Tensor,
                 log: Callable[[str], None] = lambda _: None) -> None:
        if flat.numel() < layout.total or grads.numel() < layout.total:
            raise ValueError(f"model: parameter/gradient buffers must hold {layout.total} elements")
        self.layout = layout
        self.params, self.p = bind_params(layout, flat, grads)
        sh = layout.shape
        self.attention = CausalVarlenAttention(flat.device, sh.heads, sh.hidden // sh.heads, log)

    def _w(self, layer: int, key: str) -> torch.Tensor:
        return self.p[self.layout.layer(layer, key).name]

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        targets: torch.Tensor,
        cu: list[int],
        group: Any,
        degree: int,
    ) -> torch.Tensor:
        """Per-token float32 losses `[T]` of this rank's slice (0 where the target is -1); differentiable."""
        shape = self.layout.shape
        H, NH, L = shape.hidden, shape.heads, shape.layers
        d = degree
        if NH % d != 0:
            raise ValueError(f"Ulysses SP: {NH} attention heads are not divisible by the SP degree {d}")
        T = tokens.numel()
        D, hpr = H // NH, NH // d
        wte, wpe = self.p["wte"], self.p["wpe"]
        x = F.embedding(tokens, wte) + F.embedding(positions, wpe)
        for layer in range(L):
            w = {k: self._w(layer, k) for k in LAYER_KEYS}
            a = F.layer_norm(x, (H,), w["ln1g"], w["ln1b"], LN_EPS)
            qkv = torch.addmm(w["bqkv"], a, w["wqkv"])  # [T, 3H]: q heads, k heads, v heads
            if d == 1:
                full = qkv.view(T, 3, NH, D)
                y = self.attention(full[:, 0], full[:, 1], full[:, 2], cu).reshape(T, H)
            else:
                # [T, 3, d, hpr, D] -> [d, T, 3, hpr, D]: block j (heads of SP rank j) goes to SP rank j.
                send = qkv.view(T, 3, d, hpr, D).permute(2, 0, 1, 3, 4)
                full = all_to_all(send, group).reshape(d * T, 3, hpr, D)  # all tokens in order, my heads
                o = self.attention(full[:, 0], full[:, 1], full[:, 2], cu)  # [S, hpr, D]
                got = all_to_all(o.reshape(d, T, hpr, D), group)  # token block j went to rank j; [d (heads), T, ..]
                y = got.permute(1, 0, 2, 3).reshape(T, H)
            h = x + torch.addmm(w["bo"], y, w["wo"])
            bn = F.layer_norm(h, (H,), w["ln2g"], w["ln2b"], LN_EPS)
            u = F.gelu(torch.addmm(w["bfc"], bn, w["wfc"]), approximate="tanh")
            x = h + torch.addmm(w["bproj"], u, w["wproj"])
        fo = F.layer_norm(x, (H,), self.p["lnf.g"], self.p["lnf.b"], LN_EPS)
        logits = fo @ wte.t()
        if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in float32
            logits = logits.float()
        return F.cross_entropy(logits, targets, ignore_index=-1, reduction="none")

