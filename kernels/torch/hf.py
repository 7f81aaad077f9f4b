# Hugging Face model directories for the llama family: config.json -> the protocol's model shape (the same mapping
# as core/hf_config.ts, so planner and executor agree; the executor checks that they do), weights from
# model.safetensors or a sharded index (model.safetensors.index.json), read one tensor at a time (TensorReader), and
# the transformers config of a shape (hf_config, for the executor's model; the export to a Hugging Face directory
# is the orchestrator's, orchestrator/run/hf_export.ts, and the tests').
#
# safetensors is read here directly (8-byte little-endian header length, JSON header with dtype, shape
# and data_offsets per tensor, raw little-endian data), with the stdlib and torch only: nothing to install on a
# node beyond torch.
from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Any

import torch

from .param_layout import ParamLayout

#: Hugging Face model_type values the llama family covers.
SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class HfError(ValueError):
    """A Hugging Face directory that flexsp cannot use (the message names the file and the fix)."""


def read_config(model_dir: str) -> dict[str, Any]:
    """config.json of `model_dir` as a dict (clear error when missing or not JSON)."""
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise HfError(f"{path}: not found (model.from must be a Hugging Face model directory with config.json)") \
            from None
    except (OSError, json.JSONDecodeError) as e:
        raise HfError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise HfError(f"{path}: expected a JSON object")
    return cfg


def _rope(cfg: dict[str, Any], path: str) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling) from transformers ≥ 5 `rope_parameters` or the older `rope_theta` + `rope_scaling`."""
    rp = cfg.get("rope_parameters")
    sc = cfg.get("rope_scaling")
    theta = cfg.get("rope_theta", 10000.0)
    if isinstance(rp, dict):
        theta = rp.get("rope_theta", theta)
        sc = rp
    if not isinstance(sc, dict):
        return float(theta), None
    kind = sc.get("rope_type", sc.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind == "linear":
        return float(theta), {"type": "linear", "factor": float(sc["factor"])}
    if kind == "llama3":
        return float(theta), {
            "type": "llama3",
            "factor": float(sc["factor"]),
            "lowFreqFactor": float(sc["low_freq_factor"]),
            "highFreqFactor": float(sc["high_freq_factor"]),
            "originalMaxPositionEmbeddings": int(sc["original_max_position_embeddings"]),
        }
    raise HfError(f"{path}: RoPE scaling type {kind!r} is not supported (supported: default, linear, llama3)")


def shape_json(cfg: dict[str, Any], model_dir: str = ".") -> dict[str, Any]:
    """The protocol model shape (family "llama") of a Hugging Face config.json."""
    path = os.path.join(model_dir, "config.json")
    mt = cfg.get("model_type")
    if mt not in SUPPORTED_TYPES:
        raise HfError(f"{path}: model_type {mt!r} is not supported (supported: {', '.join(SUPPORTED_TYPES)})")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise HfError(f"{path}: hidden_act {act!r} is not supported (the llama family uses silu)")
    if cfg.get("mlp_bias"):
        raise HfError(f"{path}: mlp_bias true is not supported")
    for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "intermediate_size"):
        if not isinstance(cfg.get(k), int):
            raise HfError(f"{path}: {k} must be an integer")
    heads = cfg["num_attention_heads"]
    theta, scaling = _rope(cfg, path)
    max_seq = int(cfg.get("max_position_embeddings", 4096))
    # A sliding window (mistral; qwen2 with use_sliding_window) is the attention kernel's business (attention.py):
    # it does not cap the context.
    window = cfg.get("sliding_window")
    windowed = mt == "mistral" or (mt == "qwen2" and bool(cfg.get("use_sliding_window")))
    out: dict[str, Any] = {
        "family": "llama",
        "modelType": mt,
        "layers": cfg["num_hidden_layers"],
        "hidden": cfg["hidden_size"],
        "heads": heads,
        "kvHeads": int(cfg.get("num_key_value_heads") or heads),
        "headDim": int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
        "intermediate": cfg["intermediate_size"],
        "vocab": cfg["vocab_size"],
        "maxSeq": max_seq,
        "ropeTheta": theta,
        "normEps": float(cfg.get("rms_norm_eps", 1e-6)),
        "tieEmbeddings": bool(cfg.get("tie_word_embeddings", False)),
        "qkvBias": mt == "qwen2" or bool(cfg.get("attention_bias", False)),
        "oBias": mt != "qwen2" and bool(cfg.get("attention_bias", False)),
    }
    if scaling is not None:
        out["ropeScaling"] = scaling
    if windowed and isinstance(window, int) and window < max_seq:
        out["slidingWindow"] = window
    return out


def _check_entry(path: str, name: str, h: Any, data_bytes: int, base: int) -> None:
    """One header entry: a known dtype, a shape, and data_offsets inside the file sized to the shape (else HfError)."""
    if not isinstance(h, dict):
        raise HfError(f"{path}: tensor {name} has no valid header entry: re-download it")
    dt = _DTYPES.get(str(h.get("dtype")))
    if dt is None:
        raise HfError(f"{path}: tensor {name} has dtype {h.get('dtype')} (supported: {', '.join(_DTYPES)})")
    shape, offs = h.get("shape"), h.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise HfError(f"{path}: tensor {name} has no valid shape in the header: re-download it")
    if (not isinstance(offs, list) or len(offs) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in offs)):
        raise HfError(f"{path}: tensor {name} has no valid data_offsets in the header: re-download it")
    a, b = offs
    want = dt.itemsize
    for d in shape:
        want *= d
    if b < a or b - a != want:
        raise HfError(f"{path}: tensor {name}: data_offsets [{a}, {b}] hold {b - a} bytes, its {h['dtype']} shape "
                      f"{shape} needs {want}: re-download it")
    if b > data_bytes:
        size = base + data_bytes
        raise HfError(f"{path}: truncated: tensor {name} ends at byte {base + b} of a {size}-byte file "
                      f"({base + b - size} bytes missing): re-download it")


class SafetensorsFile:
    """One safetensors file, memory-mapped; tensors are read one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.f = open(path, "rb")
        except OSError as e:
            raise HfError(f"{path}: cannot open ({e.strerror or e})") from None
        try:
            size = self._read_header(path)
        except BaseException:
            self.f.close()
            raise
        self.mm = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else None
        #: Tensor bytes read so far (a rank reading only its rows reads about its share).
        self.bytes_read = 0

    def _read_header(self, path: str) -> int:
        """Reads and checks the header (every entry: dtype, shape, data_offsets within the file); the file's size."""
        head = self.f.read(8)
        if len(head) < 8:
            raise HfError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        size = os.fstat(self.f.fileno()).st_size
        if n > size - 8:
            raise HfError(f"{path}: not a safetensors file (header length {n} beyond the file's {size} bytes)")
        try:
            self.header: dict[str, Any] = json.loads(self.f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HfError(f"{path}: corrupt safetensors header") from None
        if not isinstance(self.header, dict):
            raise HfError(f"{path}: corrupt safetensors header (not a JSON object)")
        self.header.pop("__metadata__", None)
        self.base = 8 + n
        for name, h in self.header.items():
            _check_entry(path, name, h, size - self.base, self.base)
        return size

    def names(self) -> list[str]:
        return list(self.header)

    def shape(self, name: str) -> list[int]:
        """The stored shape of tensor `name`."""
        return list(self.header[name]["shape"])

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Tensor `name` as a CPU tensor in its stored dtype (a copy); `rows` (a, b): only rows [a, b) of dim 0,
        reading only their bytes."""
        h = self.header[name]
        dt = _DTYPES.get(h["dtype"])
        if dt is None:
            raise HfError(f"{self.path}: tensor {name} has dtype {h['dtype']} (supported: {', '.join(_DTYPES)})")
        a, b = h["data_offsets"]
        shape = list(h["shape"])
        if rows is not None and shape:
            per_row = (b - a) // shape[0] if shape[0] else 0
            a, b = a + rows[0] * per_row, a + rows[1] * per_row
            shape = [rows[1] - rows[0], *shape[1:]]
        assert self.mm is not None
        buf = bytearray(self.mm[self.base + a : self.base + b])
        if len(buf) != b - a:  # the header was checked at open; the file shrank since
            raise HfError(f"{self.path}: truncated: tensor {name} has {len(buf)} of its {b - a} bytes")
        self.bytes_read += len(buf)
        if not buf:
            return torch.zeros(shape, dtype=dt)
        return torch.frombuffer(buf, dtype=dt).reshape(shape)

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
        self.f.close()


def weight_files(model_dir: str) -> dict[str, str]:
    """Tensor name -> safetensors file path, from the sharded index or model.safetensors (missing shard: error)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
        try:
            with open(index) as f:
                wm = json.load(f)["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise HfError(f"{index}: cannot read its weight_map ({e})") from None
        out = {k: os.path.join(model_dir, v) for k, v in wm.items()}
        for shard in sorted(set(out.values())):
            if not os.path.exists(shard):
                raise HfError(f"{index} names shard {os.path.basename(shard)}, which is missing from {model_dir} "
                              "(download every shard the index lists)")
        return out
    if os.path.exists(single):
        sf = SafetensorsFile(single)
        try:
            return {k: single for k in sf.names()}
        finally:
            sf.close()
    raise HfError(f"{model_dir}: no model.safetensors or model.safetensors.index.json (only safetensors "
                  "weights are read; convert .bin checkpoints with transformers' save_pretrained)")


class TensorReader:
    """Reads the layout's tensors of a Hugging Face directory by name, one at a time (files opened as needed)."""

    def __init__(self, model_dir: str, layout: ParamLayout) -> None:
        self.where = weight_files(model_dir)
        missing = [s.name for s in layout.slices if s.name not in self.where]
        if missing:
            raise HfError(f"{model_dir}: the weights lack {len(missing)} tensor(s) the config implies, e.g. "
                          f"{', '.join(missing[:3])}")
        self.shapes = {s.name: s.shape for s in layout.slices}
        self.files: dict[str, SafetensorsFile] = {}
        self.read_closed = 0

    def __call__(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Tensor `name` (rows [a, b) of dim 0 only, when given)."""
        path = self.where[name]
        sf = self.files.get(path)
        if sf is None:
            sf = self.files[path] = SafetensorsFile(path)
        if tuple(sf.shape(name)) != self.shapes[name]:
            raise HfError(f"{path}: tensor {name} has shape {sf.shape(name)}, config.json implies "
                          f"{list(self.shapes[name])}")
        return sf.get(name, rows)

    def bytes_read(self) -> int:
        """Tensor bytes read so far, over every file."""
        return self.read_closed + sum(f.bytes_read for f in self.files.values())

    def close(self) -> None:
        self.read_closed = self.bytes_read()
        for f in self.files.values():
            f.close()
        self.files = {}


def hf_config(shape: dict[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """A transformers config.json for a llama-family shape (the inverse of shape_json)."""
    mt = shape.get("modelType", "llama")
    cfg: dict[str, Any] = {
        "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                           "qwen2": "Qwen2ForCausalLM"}[mt]],
        "model_type": mt,
        "hidden_act": "silu",
        "num_hidden_layers": shape["layers"],
        "hidden_size": shape["hidden"],
        "num_attention_heads": shape["heads"],
        "num_key_value_heads": shape["kvHeads"],
        "head_dim": shape["headDim"],
        "intermediate_size": shape["intermediate"],
        "vocab_size": shape["vocab"],
        "max_position_embeddings": shape["maxSeq"],
        "rms_norm_eps": shape["normEps"],
        "tie_word_embeddings": bool(shape.get("tieEmbeddings", False)),
        "torch_dtype": {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype],
    }
    rp: dict[str, Any] = {"rope_theta": shape["ropeTheta"], "rope_type": "default"}
    sc = shape.get("ropeScaling")
    if sc:
        rp["rope_type"] = sc["type"]
        rp["factor"] = sc["factor"]
        if sc["type"] == "llama3":
            rp.update(low_freq_factor=sc["lowFreqFactor"], high_freq_factor=sc["highFreqFactor"],
                      original_max_position_embeddings=sc["originalMaxPositionEmbeddings"])
    cfg["rope_parameters"] = rp
    cfg["rope_theta"] = shape["ropeTheta"]
    if mt == "llama":
        cfg["attention_bias"] = bool(shape.get("qkvBias", False))
        cfg["mlp_bias"] = False
    if mt == "mistral":
        cfg["sliding_window"] = shape.get("slidingWindow")
    if mt == "qwen2":
        cfg["use_sliding_window"] = shape.get("slidingWindow") is not None
        cfg["sliding_window"] = shape.get("slidingWindow")
    return cfg
