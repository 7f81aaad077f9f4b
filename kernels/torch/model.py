# The GPT of the TypeScript executors (kernels/model.ts), ported exactly: the flat float32 parameter layout (named
# slices at 64-element aligned offsets), the sfc32 PRNG seeded through splitmix32, and the GPT-2 initialisation,
# so a torch executor starts from the very same bits as a `cpu` or `webgpu` one. Pure data, no device code.
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

#: Views into the flat buffer start at multiples of this many elements (kernels/backend.ts VIEW_ALIGN).
VIEW_ALIGN = 64
#: Standard deviation of the normal initialisation (GPT-2).
INIT_STD = 0.02
#: LayerNorm epsilon used everywhere.
LN_EPS = 1e-5

_M32 = 0xFFFFFFFF
_SHAPE_KEYS = ("layers", "hidden", "heads", "vocab", "maxSeq")


#: Model families the torch executor runs: "gpt" (kernels/model.ts) and "llama" (kernels/torch/llama.py: Llama,
#: Mistral, Qwen2 checkpoints of Hugging Face).
FAMILIES = ("gpt", "llama")
#: Activation checkpointing policies (config model.checkpointing).
CHECKPOINTING = ("none", "selective", "full")
#: RoPE scaling types the llama family implements (rope_scaling / rope_parameters rope_type of config.json).
ROPE_TYPES = ("default", "linear", "llama3")


def _pos_int(d: dict[str, Any], k: str, where: str = "model shape") -> int:
    v = d.get(k)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{where}: {k} must be a positive integer")
    return v


def _pos_num(d: dict[str, Any], k: str) -> float:
    v = d.get(k)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
        raise ValueError(f"model shape: {k} must be a positive number")
    return float(v)


@dataclass(frozen=True)
class ModelShape:
    """
    Shape of a model (core/model_shape.ts ModelShape). `family` "gpt" is the GPT-2 style model of the TypeScript
    executors; "llama" adds the fields of the Llama family (grouped-query attention, SwiGLU, RMSNorm, RoPE).
    """

    layers: int
    hidden: int
    heads: int
    vocab: int
    max_seq: int
    family: str = "gpt"
    #: K/V heads (grouped-query attention); equals `heads` for the gpt family.
    kv_heads: int = 0
    #: Width of one attention head.
    head_dim: int = 0
    #: SwiGLU width (llama family; the gpt MLP is 4·hidden).
    intermediate: int = 0
    rope_theta: float = 10000.0
    #: RoPE scaling: None or {"type": "linear" | "llama3", ...the config's parameters}.
    rope_scaling: dict[str, Any] | None = field(default=None, compare=False)
    norm_eps: float = 1e-5
    #: Whether the output head is the token embedding (tied) or a separate `lm_head` matrix.
    tied: bool = True
    #: Biases on the q/k/v projections (qwen2; llama's attention_bias) and on o_proj (llama's attention_bias).
    qkv_bias: bool = False
    o_bias: bool = False
    #: The shape as the init message carried it (written back verbatim into checkpoint headers).
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @staticmethod
    def from_json(d: Any) -> "ModelShape":
        """Parses and validates a ModelShape object; throws a clear error naming the bad field."""
        if not isinstance(d, dict):
            raise ValueError("model shape: expected an object with layers, hidden, heads, vocab, maxSeq")
        for k in _SHAPE_KEYS:
            _pos_int(d, k)
        family = d.get("family", "gpt")
        if family not in FAMILIES:
            raise ValueError(f"model shape: family must be one of {', '.join(FAMILIES)}, got {family!r}")
        if family == "gpt":
            if d["hidden"] % d["heads"] != 0:
                raise ValueError(f"model shape: hidden {d['hidden']} is not divisible by heads {d['heads']}")
            return ModelShape(d["layers"], d["hidden"], d["heads"], d["vocab"], d["maxSeq"], "gpt", d["heads"],
                              d["hidden"] // d["heads"], 4 * d["hidden"], raw=dict(d))
        kv = _pos_int(d, "kvHeads")
        if d["heads"] % kv != 0:
            raise ValueError(f"model shape: heads {d['heads']} is not a multiple of kvHeads {kv}")
        head_dim = d.get("headDim", d["hidden"] // d["heads"] if d["hidden"] % d["heads"] == 0 else 0)
        if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
            raise ValueError("model shape: headDim must be a positive even integer (or hidden divisible by heads)")
        scaling = d.get("ropeScaling")
        if scaling is not None:
            if not isinstance(scaling, dict) or scaling.get("type") not in ROPE_TYPES:
                got = scaling.get("type") if isinstance(scaling, dict) else scaling
                raise ValueError(f"model shape: ropeScaling type {got!r} is not supported (supported: "
                                 f"{', '.join(ROPE_TYPES)})")
            if scaling["type"] == "default":
                scaling = None
        for k in ("tieEmbeddings", "qkvBias", "oBias"):
            if not isinstance(d.get(k, False), bool):
                raise ValueError(f"model shape: {k} must be true or false")
        return ModelShape(d["layers"], d["hidden"], d["heads"], d["vocab"], d["maxSeq"], "llama", kv, head_dim,
                          _pos_int(d, "intermediate"), _pos_num(d, "ropeTheta"), scaling, _pos_num(d, "normEps"),
                          bool(d.get("tieEmbeddings", False)), bool(d.get("qkvBias", False)),
                          bool(d.get("oBias", False)), dict(d))

    def to_json(self) -> dict[str, Any]:
        """The shape as protocol JSON."""
        return self.raw or {
            "layers": self.layers,
            "hidden": self.hidden,
            "heads": self.heads,
            "vocab": self.vocab,
            "maxSeq": self.max_seq,
        }


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


def bind_params(
    layout: ParamLayout, flat: torch.Tensor, grads: torch.Tensor
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Views of the flat parameter and gradient buffers, one per slice (leaf tensors with `.grad` set), in layout
    order and by name."""
    params: list[torch.Tensor] = []
    by_name: dict[str, torch.Tensor] = {}
    for sl in layout.slices:
        t = flat[sl.offset : sl.offset + sl.length].view(sl.shape)
        t.requires_grad_(True)
        t.grad = grads[sl.offset : sl.offset + sl.length].view(sl.shape)
        params.append(t)
        by_name[sl.name] = t
    return params, by_name


def param_layout(shape: ModelShape) -> ParamLayout:
    """Builds the flat parameter layout (order: wte, wpe, blocks 0..L-1, lnf), as kernels/model.ts does; the llama
    family's layout is `llama.llama_layout` (Hugging Face tensor names)."""
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


class Prng:
    """sfc32 seeded through splitmix32, bit-identical to `Prng` of kernels/model.ts; `normal()` is Box-Muller."""

    __slots__ = ("a", "b", "c", "d", "spare")

    def __init__(self, *seeds: int) -> None:
        s = 0x9E3779B9

        def mix() -> int:
            nonlocal s
            s = (s + 0x9E3779B9) & _M32
            z = s
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & _M32
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & _M32
            return (z ^ (z >> 16)) & _M32

        for x in seeds:
            lo = x % 0x100000000
            hi = (x // 0x100000000) % 0x100000000
            s = (s ^ (((lo ^ hi) * 0x27D4EB2F) & _M32)) & _M32
            mix()
        self.a = mix()
        self.b = mix()
        self.c = mix()
        self.d = mix()
        self.spare: float | None = None
        for _ in range(12):
            self.next_u32()

    def next_u32(self) -> int:
        """Next uniform 32-bit unsigned integer."""
        a, b, c, d = self.a, self.b, self.c, self.d
        t = (a + b + d) & _M32
        self.d = (d + 1) & _M32
        self.a = b ^ (b >> 9)
        self.b = (c + (c << 3)) & _M32
        c = ((c << 21) & _M32) | (c >> 11)
        self.c = (c + t) & _M32
        return t

    def uniform(self) -> float:
        """Uniform in [0, 1) with 32 bits of resolution."""
        return self.next_u32() / 4294967296

    def below(self, n: int) -> int:
        """Uniform integer in [0, n) (`int(n)` of the TypeScript Prng)."""
        return math.floor(self.uniform() * n)

    def normal(self) -> float:
        """Standard normal sample."""
        if self.spare is not None:
            s = self.spare
            self.spare = None
            return s
        u1 = (self.next_u32() + 1) / 4294967297
        u2 = self.uniform()
        r = math.sqrt(-2 * math.log(u1))
        self.spare = r * math.sin(2 * math.pi * u2)
        return r * math.cos(2 * math.pi * u2)

    def normals(self, n: int, std: float) -> list[float]:
        """`n` samples of N(0, std²) in float64 (the hot loop of initialisation, inlined)."""
        out = [0.0] * n
        a, b, c, d = self.a, self.b, self.c, self.d
        log, sqrt, sin, cos, tau = math.log, math.sqrt, math.sin, math.cos, 2 * math.pi
        i = 0
        if self.spare is not None and n > 0:
            out[0] = self.spare * std
            self.spare = None
            i = 1
        while i < n:
            t1 = (a + b + d) & _M32
            d = (d + 1) & _M32
            a = b ^ (b >> 9)
            b = (c + (c << 3)) & _M32
            c = ((((c << 21) & _M32) | (c >> 11)) + t1) & _M32
            t2 = (a + b + d) & _M32
            d = (d + 1) & _M32
            a = b ^ (b >> 9)
            b = (c + (c << 3)) & _M32
            c = ((((c << 21) & _M32) | (c >> 11)) + t2) & _M32
            r = sqrt(-2 * log((t1 + 1) / 4294967297))
            u2 = t2 / 4294967296
            out[i] = r * cos(tau * u2) * std
            if i + 1 < n:
                out[i + 1] = r * sin(tau * u2) * std
            else:
                self.spare = r * sin(tau * u2)
            i += 2
        self.a, self.b, self.c, self.d = a, b, c, d
        return out


#: Above this many parameters the default initialisation is "fast" (the exact stream runs in Python, about
#: half a microsecond per value: fine for every model the TypeScript executors can train, minutes for billions).
EXACT_INIT_LIMIT = 16_000_000


def init_mode(layout: ParamLayout) -> str:
    """ "exact" or "fast": FLEXSP_TORCH_INIT when set, else exact up to EXACT_INIT_LIMIT parameters."""
    mode = os.environ.get("FLEXSP_TORCH_INIT", "")
    if mode not in ("", "exact", "fast"):
        raise ValueError(f'FLEXSP_TORCH_INIT must be "exact" or "fast", got "{mode}"')
    return mode or ("exact" if layout.count <= EXACT_INIT_LIMIT else "fast")


def init_params(layout: ParamLayout, seed: int, mode: str = "exact",
                device: torch.device | None = None) -> torch.Tensor:
    """
    The seeded initial parameters as a flat float32 tensor of `layout.total` values (on `device`, default CPU).
    "exact" is bit-identical to `initParams` of kernels/model.ts: weights N(0, 0.02), residual projections
    N(0, 0.02/sqrt(2·layers)), biases 0, LayerNorm gains 1, each slice from its own stream (seed, slice index + 1).
    "fast" draws the same distributions from torch's generator of `device` seeded by (seed, slice index): identical
    on every rank of a device type and on every run, seconds for billions of parameters, but not the TypeScript
    executors' bits.
    """
    dev = device or torch.device("cpu")
    out = torch.zeros(layout.total, dtype=torch.float32, device=dev)
    for i, s in enumerate(layout.slices):
        out[s.offset : s.offset + s.length] = init_slice(layout, i, seed, mode, dev)
    return out


def init_slice(layout: ParamLayout, i: int, seed: int, mode: str = "exact",
               device: torch.device | None = None) -> torch.Tensor:
    """Slice `i` of `init_params` on its own (flat float32): each slice has its own stream, so a rank can start from
    one tensor at a time instead of the whole model."""
    if mode not in ("exact", "fast"):
        raise ValueError(f"init_params: unknown mode {mode}")
    dev = device or torch.device("cpu")
    s = layout.slices[i]
    dst = torch.zeros(s.length, dtype=torch.float32, device=dev)
    if s.init == "ones":
        dst.fill_(1)
    elif s.init in ("normal", "normal_residual"):
        std = INIT_STD if s.init == "normal" else INIT_STD / math.sqrt(2 * layout.shape.layers)
        if mode == "fast":
            g = torch.Generator(device=dev).manual_seed(((seed % (1 << 31)) << 20) + i + 1)
            torch.randn(s.length, generator=g, dtype=torch.float32, out=dst)
            dst.mul_(std)
        else:
            dst.copy_(torch.tensor(Prng(seed, i + 1).normals(s.length, std), dtype=torch.float64).to(dev))
    return dst
