# Forward of the GPT (kernels/ulysses_model.ts) on one rank of a Ulysses SP group, in torch with autograd. The
# rank holds a contiguous slice of the group's packed token stream; everything is token-local except attention,
# where one all_to_all_single turns "local tokens, all heads" of Q, K and V into "all tokens, heads/d heads",
# causal attention runs per packed sequence (SDPA on each segment of cu_seqlens, so no token ever attends across
# a sequence boundary), and a second all-to-all turns the output back. Autograd mirrors both exchanges.
#
# Parameters are views into one flat float32 buffer laid out by ParamLayout; their `.grad` are views into one
# flat gradient buffer, so gradients accumulate in the layout the all-reduce buckets and the checkpoints use.
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from model import LAYER_KEYS, LN_EPS, ParamLayout


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


def causal_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: list[int]) -> torch.Tensor:
    """Causal attention of `[heads, S, D]` tensors inside each segment `[cu[i], cu[i+1])` of the packed stream."""
    if len(cu) == 2:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    outs = []
    for a, b in zip(cu[:-1], cu[1:]):
        outs.append(F.scaled_dot_product_attention(q[:, a:b], k[:, a:b], v[:, a:b], is_causal=True))
    return torch.cat(outs, dim=1)


class Gpt:
    """The GPT over flat parameter / gradient buffers (gradients accumulate until the caller zeroes them)."""

    def __init__(self, layout: ParamLayout, flat: torch.Tensor, grads: torch.Tensor) -> None:
        if flat.numel() < layout.total or grads.numel() < layout.total:
            raise ValueError(f"model: parameter/gradient buffers must hold {layout.total} elements")
        self.layout = layout
        self.params: list[torch.Tensor] = []
        self.p: dict[str, torch.Tensor] = {}
        for s in layout.slices:
            t = flat[s.offset : s.offset + s.length].view(s.shape)
            t.requires_grad_(True)
            t.grad = grads[s.offset : s.offset + s.length].view(s.shape)
            self.params.append(t)
            self.p[s.name] = t

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
                hm = qkv.view(T, 3, NH, D).permute(1, 2, 0, 3)  # [3, NH, T, D]
                o = causal_varlen_attention(hm[0], hm[1], hm[2], cu)  # [NH, T, D]
                y = o.permute(1, 0, 2).reshape(T, H)
            else:
                # [T, 3, d, hpr, D] -> [d, T, 3, hpr, D]: block j (heads of SP rank j) goes to SP rank j.
                send = qkv.view(T, 3, d, hpr, D).permute(2, 0, 1, 3, 4)
                full = all_to_all(send, group).reshape(d * T, 3, hpr, D)  # all tokens in order, my heads
                hm = full.permute(1, 2, 0, 3)  # [3, hpr, S, D]
                o = causal_varlen_attention(hm[0], hm[1], hm[2], cu)  # [hpr, S, D]
                back = o.view(hpr, d, T, D).permute(1, 2, 0, 3)  # [d (token block), T, hpr, D]
                got = all_to_all(back, group)  # [d (head block), T, hpr, D]
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

