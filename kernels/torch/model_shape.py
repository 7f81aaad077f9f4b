# The model shape the protocol's init carries (core/model_shape.ts ModelShape), validated as the TypeScript side does;
# the model families, checkpointing policies and RoPE scalings the torch executor runs.
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

