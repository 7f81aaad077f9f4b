# Test-only: a flat parameter buffer written as a Hugging Face directory (config.json + safetensors shards) that
# transformers loads, so tests can build checkpoints the executor reads back (the real export is
# orchestrator/run/hf_export.ts).
from __future__ import annotations

import json
import os
import struct
from typing import Any

import torch

from ..checkpoint import write_atomic
from ..hf import _NAMES, hf_config
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
