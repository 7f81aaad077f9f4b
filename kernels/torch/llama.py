# The Llama family (Hugging Face model_type llama, mistral, qwen2) on one rank of a Ulysses SP group, in torch with
# autograd, beside the GPT of gpt.py: RMSNorm, rotary position embeddings (the config's theta, linear or llama3
# scaling), SwiGLU, grouped-query attention, tied or untied output head, optional q/k/v (and o) biases.
#
# Parameters are views into one flat float32 buffer (llama_layout: Hugging Face tensor names and [out, in]
# shapes, so a safetensors tensor copies straight into its slice and back out at export); their `.grad` are
# views into one flat gradient buffer, as for the GPT, so the optimizer, the all-reduce and the checkpoints are
# the executor's.
#
# Ulysses with GQA: RoPE is token-local (it uses each token's position inside its own sequence), so it runs
# before the all-to-all. The degree d must divide the query heads. K/V heads either divide by d (each SP rank
# receives kv/d of them) or d is a multiple of kv: then each K/V head is replicated d/kv times before the
# exchange, so every rank receives exactly the one K/V head its query heads use (DeepSpeed-Ulysses' way). One
# all-to-all carries Q, K and V together; a second brings the attention output back.
#
# Activation checkpointing (model.checkpointing, as orchestrator/planner/cost_model.ts assumes): "none" keeps
# every activation; "selective" recomputes the attention core (the per-sequence softmax attention) in the
# backward; "full" keeps only each layer's input and recomputes the whole layer.
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from gpt import CausalVarlenAttention, all_to_all
from model import LayoutBuilder, ModelShape, ParamLayout, bind_params

#: Activation checkpointing policies (config model.checkpointing).
CHECKPOINTING = ("none", "selective", "full")


def llama_layout(shape: ModelShape) -> ParamLayout:
    """The flat layout of a llama-family model: Hugging Face names, [out, in] matrices, 64-element aligned."""
    H, V, NH, KV, D, FF = shape.hidden, shape.vocab, shape.heads, shape.kv_heads, shape.head_dim, shape.intermediate
    builder = LayoutBuilder(shape)
    add = builder.add
    add("model.embed_tokens.weight", (V, H), "normal", True)
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        add(p + "input_layernorm.weight", (H,), "ones", False)
        add(p + "self_attn.q_proj.weight", (NH * D, H), "normal", True)
        if shape.qkv_bias:
            add(p + "self_attn.q_proj.bias", (NH * D,), "zeros", False)
        add(p + "self_attn.k_proj.weight", (KV * D, H), "normal", True)
        if shape.qkv_bias:
            add(p + "self_attn.k_proj.bias", (KV * D,), "zeros", False)
        add(p + "self_attn.v_proj.weight", (KV * D, H), "normal", True)
        if shape.qkv_bias:
            add(p + "self_attn.v_proj.bias", (KV * D,), "zeros", False)
        add(p + "self_attn.o_proj.weight", (H, NH * D), "normal", True)
        if shape.o_bias:
            add(p + "self_attn.o_proj.bias", (H,), "zeros", False)
        add(p + "post_attention_layernorm.weight", (H,), "ones", False)
        add(p + "mlp.gate_proj.weight", (FF, H), "normal", True)
        add(p + "mlp.up_proj.weight", (FF, H), "normal", True)
        add(p + "mlp.down_proj.weight", (H, FF), "normal", True)
    add("model.norm.weight", (H,), "ones", False)
    if not shape.tied:
        add("lm_head.weight", (V, H), "normal", True)
    return builder.layout()


def rope_inv_freq(shape: ModelShape) -> torch.Tensor:
    """Inverse frequencies (float32, head_dim/2) of RoPE with the shape's theta and scaling (as transformers)."""
    D = shape.head_dim
    inv = 1.0 / (shape.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    sc = shape.rope_scaling
    if sc is None:
        return inv
    if sc["type"] == "linear":
        return inv / float(sc["factor"])
    if sc["type"] == "llama3":
        factor, lo, hi = float(sc["factor"]), float(sc["lowFreqFactor"]), float(sc["highFreqFactor"])
        old = float(sc["originalMaxPositionEmbeddings"])
        lo_wavelen, hi_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > lo_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < hi_wavelen) * ~(wavelen > lo_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"RoPE scaling type {sc['type']!r} is not supported")


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


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * y.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Llama:
    """The llama-family model over flat parameter / gradient buffers (gradients accumulate until zeroed)."""

    def __init__(self, layout: ParamLayout, flat: torch.Tensor | None, grads: torch.Tensor | None,
                 log: Callable[[str], None] = lambda _: None, checkpointing: str = "none",
                 device: torch.device | None = None) -> None:
        """`flat`/`grads` None: the math only, over parameters the caller passes (zero3.py's sharded modules)."""
        if flat is not None and grads is not None and (flat.numel() < layout.total or grads.numel() < layout.total):
            raise ValueError(f"model: parameter/gradient buffers must hold {layout.total} elements")
        if checkpointing not in CHECKPOINTING:
            raise ValueError(f"model.checkpointing must be one of {', '.join(CHECKPOINTING)}, got {checkpointing!r}")
        self.layout = layout
        self.checkpointing = checkpointing
        self.params: list[torch.Tensor] = []
        self.p: dict[str, torch.Tensor] = {}
        if flat is not None and grads is not None:
            self.params, self.p = bind_params(layout, flat, grads)
        sh = layout.shape
        dev = flat.device if flat is not None else (device or torch.device("cpu"))
        self.attention = CausalVarlenAttention(dev, sh.heads, sh.head_dim, log)
        self.inv_freq = rope_inv_freq(sh).to(dev)

    def _attn_core(self, qkv: torch.Tensor, cu: list[int], hq: int, hkv: int, group: Any, d: int) -> torch.Tensor:
        """[T, d, hq + 2·hkv, D] rotated q, k, v blocks (block j for SP rank j) -> attention output [T, heads·D]."""
        T, D = qkv.shape[0], qkv.shape[-1]
        if d == 1:
            full = qkv[:, 0]
        else:
            full = all_to_all(qkv.permute(1, 0, 2, 3), group).reshape(d * T, hq + 2 * hkv, D)
        q, k, v = full[:, :hq], full[:, hq : hq + hkv], full[:, hq + hkv :]
        if hkv != hq:
            k = k.repeat_interleave(hq // hkv, dim=1)
            v = v.repeat_interleave(hq // hkv, dim=1)
        o = self.attention(q, k, v, cu)  # [S, hq, D]
        if d == 1:
            return o.reshape(T, hq * D)
        got = all_to_all(o.reshape(d, T, hq, D), group)  # [d (head blocks), T, hq, D]
        return got.permute(1, 0, 2, 3).reshape(T, d * hq * D)

    def _layer(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cu: list[int], group: Any,
               d: int, w: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Block `i` with the parameters `w` (full names; default: this model's own views)."""
        sh = self.layout.shape
        NH, KV, D, eps = sh.heads, sh.kv_heads, sh.head_dim, sh.norm_eps
        p = f"model.layers.{i}."
        w = self.p if w is None else w
        T = x.shape[0]
        a = _rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = F.linear(a, w[p + "self_attn.q_proj.weight"], w.get(p + "self_attn.q_proj.bias")).view(T, NH, D)
        k = F.linear(a, w[p + "self_attn.k_proj.weight"], w.get(p + "self_attn.k_proj.bias")).view(T, KV, D)
        v = F.linear(a, w[p + "self_attn.v_proj.weight"], w.get(p + "self_attn.v_proj.bias")).view(T, KV, D)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        hkv = kv_per_rank(NH, KV, d)
        if KV % d != 0:  # replicate each K/V head d/KV times: SP rank j gets head j // (d/KV)
            k = k.repeat_interleave(d // KV, dim=1)
            v = v.repeat_interleave(d // KV, dim=1)
        hq = NH // d
        qkv = torch.cat((q.view(T, d, hq, D), k.view(T, d, hkv, D), v.view(T, d, hkv, D)), dim=2)
        if self.checkpointing == "selective":
            y = checkpoint(self._attn_core, qkv, cu, hq, hkv, group, d, use_reentrant=False)
        else:
            y = self._attn_core(qkv, cu, hq, hkv, group, d)
        h = x + F.linear(y, w[p + "self_attn.o_proj.weight"], w.get(p + "self_attn.o_proj.bias"))
        b = _rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        u = F.silu(F.linear(b, w[p + "mlp.gate_proj.weight"])) * F.linear(b, w[p + "mlp.up_proj.weight"])
        return h + F.linear(u, w[p + "mlp.down_proj.weight"])

    def logits(self, tokens: torch.Tensor, positions: torch.Tensor, cu: list[int], group: Any,
               degree: int) -> torch.Tensor:
        """Logits `[T, vocab]` of this rank's slice; differentiable."""
        sh = self.layout.shape
        kv_per_rank(sh.heads, sh.kv_heads, degree)  # the clear error before any collective
        x = self.embed(tokens, self.p)
        cos, sin = self.rope(positions, x.dtype)
        for i in range(sh.layers):
            x = self.block(i, x, cos, sin, cu, group, degree, self.p)
        return self.head(x, self.p)

    def embed(self, tokens: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings `[T, hidden]`."""
        return F.embedding(tokens, w["model.embed_tokens.weight"])

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin `[T, 1, head_dim]` of each token's position inside its sequence."""
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[:, None, :].to(dtype), emb.sin()[:, None, :].to(dtype)

    def block(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cu: list[int], group: Any,
              degree: int, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """Block `i` under the checkpointing policy."""
        if self.checkpointing == "full":
            return checkpoint(self._layer, i, x, cos, sin, cu, group, degree, w, use_reentrant=False)
        return self._layer(i, x, cos, sin, cu, group, degree, w)

    def head(self, x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final norm and output head: logits `[T, vocab]`."""
        sh = self.layout.shape
        x = _rms_norm(x, w["model.norm.weight"], sh.norm_eps)
        return x @ (w["model.embed_tokens.weight"] if sh.tied else w["lm_head.weight"]).t()

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, cu: list[int],
                group: Any, degree: int) -> torch.Tensor:
        """Per-token float32 losses `[T]` of this rank's slice (0 where the target is -1); differentiable."""
        logits = self.logits(tokens, positions, cu, group, degree)
        if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in float32
            logits = logits.float()
        return F.cross_entropy(logits, targets, ignore_index=-1, reduction="none")
