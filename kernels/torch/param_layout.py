# The flat float32 parameter layout of the TypeScript executors (kernels/model.ts), ported exactly: named slices at
# 64-element aligned offsets, for the GPT and (Hugging Face names) the llama family.
from __future__ import annotations

import math
from dataclasses import dataclass

from .model_shape import ModelShape

#: Views into the flat buffer start at multiples of this many elements (kernels/backend.ts VIEW_ALIGN).
VIEW_ALIGN = 64


@dataclass(frozen=True)
class ParamSlice:
    """One named parameter tensor inside the flat parameter buffer."""

    name: str
    offset: int
    length: int
    shape: tuple[int, ...]
    #: Whether AdamW weight decay applies (2-D weights and embeddings).
    decay: bool
    init: str  # "normal" | "normal_residual" | "zeros" | "ones"


#: Per-layer slice keys, in buffer order.
LAYER_KEYS = ("ln1g", "ln1b", "wqkv", "bqkv", "wo", "bo", "ln2g", "ln2b", "wfc", "bfc", "wproj", "bproj")


@dataclass
class ParamLayout:
    """The flat parameter layout of a model: every slice in buffer order, plus named access."""

    shape: ModelShape
    total: int
    count: int
    slices: list[ParamSlice]
    by_name: dict[str, ParamSlice]

    def layer(self, i: int, key: str) -> ParamSlice:
        """Slice `key` (one of LAYER_KEYS) of block `i`."""
        return self.by_name[f"h{i}.{_LAYER_NAMES[key]}"]


_LAYER_NAMES = {
    "ln1g": "ln1.g",
    "ln1b": "ln1.b",
    "wqkv": "attn.w_qkv",
    "bqkv": "attn.b_qkv",
    "wo": "attn.w_o",
    "bo": "attn.b_o",
    "ln2g": "ln2.g",
    "ln2b": "ln2.b",
    "wfc": "mlp.w_fc",
    "bfc": "mlp.b_fc",
    "wproj": "mlp.w_proj",
    "bproj": "mlp.b_proj",
}


class LayoutBuilder:
    """Appends parameters to a flat layout, each view aligned to VIEW_ALIGN elements (the GPT and llama layouts)."""

    def __init__(self, shape: ModelShape) -> None:
        self.shape = shape
        self.slices: list[ParamSlice] = []
        self.offset = 0
        self.count = 0

    def add(self, name: str, dims: tuple[int, ...], init: str, decay: bool) -> None:
        """Appends parameter `name` of `dims` with its initialiser and whether weight decay applies."""
        length = math.prod(dims)
        self.slices.append(ParamSlice(name, self.offset, length, dims, decay, init))
        self.offset += -(-length // VIEW_ALIGN) * VIEW_ALIGN
        self.count += length

    def layout(self) -> ParamLayout:
        """The finished layout."""
        return ParamLayout(self.shape, self.offset, self.count, self.slices, {s.name: s for s in self.slices})


def param_layout(shape: ModelShape) -> ParamLayout:
    """Builds the flat parameter layout (order: wte, wpe, blocks 0..L-1, lnf), as kernels/model.ts does; the llama
    family's layout is `llama_layout` (Hugging Face tensor names)."""
    if shape.family == "llama":
        return llama_layout(shape)
    H, V = shape.hidden, shape.vocab
    builder = LayoutBuilder(shape)
    add = builder.add
    add("wte", (V, H), "normal", True)
    add("wpe", (shape.max_seq, H), "normal", True)
    for layer in range(shape.layers):
        p = f"h{layer}."
        add(p + "ln1.g", (H,), "ones", False)
        add(p + "ln1.b", (H,), "zeros", False)
        add(p + "attn.w_qkv", (H, 3 * H), "normal", True)
        add(p + "attn.b_qkv", (3 * H,), "zeros", False)
        add(p + "attn.w_o", (H, H), "normal_residual", True)
        add(p + "attn.b_o", (H,), "zeros", False)
        add(p + "ln2.g", (H,), "ones", False)
        add(p + "ln2.b", (H,), "zeros", False)
        add(p + "mlp.w_fc", (H, 4 * H), "normal", True)
        add(p + "mlp.b_fc", (4 * H,), "zeros", False)
        add(p + "mlp.w_proj", (4 * H, H), "normal_residual", True)
        add(p + "mlp.b_proj", (H,), "zeros", False)
    add("lnf.g", (H,), "ones", False)
    add("lnf.b", (H,), "zeros", False)
    return builder.layout()


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
