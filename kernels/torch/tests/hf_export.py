# Test-only: a flat parameter buffer written as a Hugging Face directory (config.json + safetensors shards) that
# transformers loads, and read back whole from one (load_weights, with the reader's checks), so tests can build
# checkpoints the executor reads (the real export is orchestrator/run/hf_export.ts; the executor reads one tensor
# at a time through hf.py's TensorReader).
from __future__ import annotations

import json
import os
import struct
from typing import Any

import torch

from ..checkpoint import write_atomic
from ..hf import _NAMES, HfError, SafetensorsFile, hf_config, weight_files
from ..param_layout import ParamLayout


def _encode(tensors: list[tuple[str, torch.Tensor]], dtype: torch.dtype) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    off = 0
    for name, t in tensors:
        c = t.detach().to("cpu", dtype).contiguous()
        raw = c.view(torch.uint8).numpy().tobytes() if c.numel() else b""
        header[name] = {"dtype": _NAMES[dtype], "shape": list(c.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    return b"".join([struct.pack("<Q", len(hj)), hj, *blobs])



def export_hf(out_dir: str, shape: dict[str, Any], layout: ParamLayout, flat: torch.Tensor,
              dtype: torch.dtype = torch.float32, shard_bytes: int = 2 << 30) -> list[str]:
    """
    Writes `out_dir`/config.json and the parameters as safetensors (one model.safetensors, or shards of about
    `shard_bytes` plus model.safetensors.index.json), each file atomically. Returns the files written.
    """
    tensors = [(s.name, flat[s.offset : s.offset + s.length].view(s.shape)) for s in layout.slices]
    esize = torch.tensor([], dtype=dtype).element_size()
    shards: list[list[tuple[str, torch.Tensor]]] = [[]]
    size = 0
    for name, t in tensors:
        b = t.numel() * esize
        if shards[-1] and size + b > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, t))
        size += b
    written: list[str] = []
    os.makedirs(out_dir, exist_ok=True)
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, part in zip(names, shards):
        path = os.path.join(out_dir, name)
        write_atomic(path, _encode(part, dtype))
        written.append(path)
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.numel() * esize for _, t in tensors)},
                 "weight_map": {n: fn for fn, part in zip(names, shards) for n, _ in part}}
        p = os.path.join(out_dir, "model.safetensors.index.json")
        write_atomic(p, json.dumps(index, indent=2).encode())
        written.append(p)
    p = os.path.join(out_dir, "config.json")
    write_atomic(p, json.dumps(hf_config(shape, dtype), indent=2).encode())
    written.append(p)
    return written


def load_weights(model_dir: str, layout: ParamLayout, flat: torch.Tensor) -> int:
    """
    Copies every tensor of the layout from `model_dir`'s safetensors into `flat` (float32), one tensor at a time
    (shard by shard: at most one tensor beyond `flat` is in host memory). Returns the number of tensors read.
    """
    where = weight_files(model_dir)
    need = [s for s in layout.slices]
    missing = [s.name for s in need if s.name not in where]
    if missing:
        raise HfError(f"{model_dir}: the weights lack {len(missing)} tensor(s) the config implies, e.g. "
                      f"{', '.join(missing[:3])}")
    by_file: dict[str, list[Any]] = {}
    for s in need:
        by_file.setdefault(where[s.name], []).append(s)
    n = 0
    with torch.no_grad():
        for path, slices in sorted(by_file.items()):
            sf = SafetensorsFile(path)
            try:
                for s in slices:
                    t = sf.get(s.name)
                    if tuple(t.shape) != s.shape:
                        raise HfError(f"{path}: tensor {s.name} has shape {list(t.shape)}, config.json implies "
                                      f"{list(s.shape)}")
                    flat[s.offset : s.offset + s.length].copy_(t.reshape(-1).to(torch.float32))
                    n += 1
            finally:
                sf.close()
    return n
