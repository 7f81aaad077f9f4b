# An executor's full training state (parameters, AdamW moments, step count) in one file, byte for byte the flat format
# of the TypeScript executors (kernels/checkpoint.ts). The torch executor itself writes sharded checkpoints
# (dcp_checkpoint.py); this format is what dcp_export.py --flat converts them to (tests, small models).
#   "FLEXSPCK" | u32 LE version | u32 LE header length | header JSON | zero padding to 4 bytes |
#   params, m, v as float32 little-endian, `total` values each.
# Files are written atomically (temporary file beside the target, fsync, rename, fsync of the directory).
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import torch

from .model_shape import ModelShape

MAGIC = b"FLEXSPCK"
VERSION = 1
_KEYS = ("layers", "hidden", "heads", "vocab", "maxSeq")


@dataclass
class ExecutorState:
    """The state of one executor (flat float32 CPU tensors)."""

    shape: dict[str, Any]
    step: int
    params: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor


def _raw(t: torch.Tensor) -> bytes:
    """The bytes of a float32 tensor (copied to the host, little-endian)."""
    c = t.detach().to("cpu", torch.float32).contiguous()
    return ctypes.string_at(c.data_ptr(), c.numel() * 4)


def encode_state(shape: ModelShape, step: int, params: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> bytes:
    """Serialises a state (the header JSON as JavaScript's JSON.stringify writes it)."""
    total = params.numel()
    if m.numel() != total or v.numel() != total:
        raise ValueError("checkpoint: params/m/v lengths differ")
    header = json.dumps({"shape": shape.to_json(), "step": step, "total": total}, separators=(",", ":")).encode()
    head_len = 16 + len(header)
    pad = (4 - head_len % 4) % 4
    return b"".join([MAGIC, struct.pack("<II", VERSION, len(header)), header, b"\0" * pad, _raw(params), _raw(m),
                     _raw(v)])


def decode_state(data: bytes, expect: ModelShape, path: str) -> ExecutorState:
    """Parses bytes written by `encode_state` (or the TypeScript executors); the shape must match `expect`."""

    def bad(why: str) -> ValueError:
        return ValueError(f"checkpoint {path}: {why}")

    if len(data) < 16 or data[:8] != MAGIC:
        raise bad("not a flexsp executor checkpoint")
    version, hl = struct.unpack_from("<II", data, 8)
    if version != VERSION:
        raise bad(f"version {version}, expected {VERSION}")
    if 16 + hl > len(data):
        raise bad("truncated header")
    try:
        header = json.loads(data[16 : 16 + hl].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("corrupt header") from None
    got = header.get("shape") if isinstance(header, dict) else None
    if not isinstance(got, dict):
        raise bad("header has no model shape")
    want = expect.to_json()
    for k in _KEYS:
        g = got.get(k) if isinstance(got, dict) else None
        if g != want[k]:
            raise bad(f"model {k} is {g if g is not None else 'undefined'}, this run has {want[k]}")
    start = 16 + hl + (4 - (16 + hl) % 4) % 4
    total = header.get("total")
    if not isinstance(total, int) or len(data) != start + 3 * total * 4:
        need = start + 3 * total * 4 if isinstance(total, int) else "?"
        raise bad(f"size {len(data)} bytes, expected {need}")
    buf = bytearray(data[start:])
    arr = torch.frombuffer(buf, dtype=torch.float32)
    return ExecutorState(got, int(header.get("step", 0)), arr[:total], arr[total : 2 * total], arr[2 * total :])


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically; creates the directory. Nothing is left half-written on failure."""
    d = os.path.dirname(path)
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        if d:
            os.makedirs(d, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RuntimeError(f"checkpoint: writing {path} failed: {e.strerror or e}") from None
    fsync_dir(d or ".")


def fsync_dir(d: str) -> None:
    """Makes a directory's entries (a rename) durable; best effort."""
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
