# One in-process torch executor model for unit tests: the executor's Trainer on one CPU rank (no process group),
# started from a flat parameter buffer in the layout, and its summed loss and flat gradient on packed sequences.
from __future__ import annotations

import torch

from ..attention import AttentionKernel, Segments, UlyssesContext
from ..causal_lm import CausalLm, transformers_config
from ..model_shape import ModelShape
from ..param_layout import ParamLayout, param_layout
from ..packing import pack_group
from ..trainer import PRECISIONS, AdamWConfig, Trainer

OPT = AdamWConfig(weight_decay=0.1, grad_clip=1.0, beta1=0.9, beta2=0.95, eps=1e-8)


def single_rank(shape: ModelShape, flat: torch.Tensor, precision: str = "fp32", checkpointing: str = "none",
                config_json: dict | None = None) -> tuple[Trainer, AttentionKernel]:
    """The executor's trainer on one CPU rank, parameters from `flat` (the layout of `shape`)."""
    lay = param_layout(shape)
    with torch.device("meta"):
        model = CausalLm(shape, transformers_config(shape, config_json), checkpointing)
    by = lay.by_name

    def get(name: str, _m: str, rows: tuple[int, int] | None) -> torch.Tensor:
        t = flat[by[name].offset : by[name].offset + by[name].length].view(by[name].shape)
        return t if rows is None else t[rows[0] : rows[1]]

    tr = Trainer(model, lay, torch.device("cpu"), 1, 0, precision, OPT, get)
    kernel = AttentionKernel(torch.device("cpu"), PRECISIONS[precision], shape.heads, shape.kv_heads or shape.heads,
                             shape.head_dim or shape.hidden // shape.heads)
    return tr, kernel


def flat_grads(tr: Trainer, lay: ParamLayout) -> torch.Tensor:
    """The trainer's gradients in the flat layout (float64)."""
    out = torch.zeros(lay.total, dtype=torch.float64)
    for s, p in zip(lay.slices, tr.params):
        if p.grad is not None:
            out[s.offset : s.offset + s.length] = p.grad.reshape(-1).double()
    return out


def loss_and_grads(tr: Trainer, kernel: AttentionKernel, seqs: list[list[int]],
                   trace: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss of the packed `seqs` (degree 1) and the flat gradient of that sum."""
    sh = tr.inner.shape
    pk = pack_group(seqs, 1, sh.max_seq, sh.vocab)
    tr.zero_grad()
    ctx = UlyssesContext(None, 1, Segments(pk.cu_seqlens), kernel, trace=trace)
    with tr.autocast():
        loss = tr.module(pk.tokens, pk.positions, pk.targets, ctx)
    loss.backward()
    return loss.detach(), flat_grads(tr, tr.layout)
