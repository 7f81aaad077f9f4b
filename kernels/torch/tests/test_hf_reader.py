# The safetensors reader of kernels/torch/hf.py as the last line behind the orchestrator's check
# (orchestrator/cluster/model_weights.ts): a file cut at a tensor boundary (the last tensor's bytes gone, its header
# entry intact), cut mid-tensor, or with data_offsets that do not match the shape, or an unsupported dtype, is refused
# at open with one HfError naming the file and the tensor, instead of loading uninitialised memory or failing on a
# reshape that names nothing. A whole file still loads, bit for bit.
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import unittest
from typing import Any, Callable

import torch

from .. import hf
from ..model_shape import ModelShape
from ..param_layout import param_layout
from .hf_export import load_weights
from .llama_fixtures import save_tiny

torch.set_num_threads(1)


def header_of(path: str) -> tuple[int, dict]:
    """(the data's start, the header) of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return 8 + n, json.loads(f.read(n))


def last_tensor(path: str) -> tuple[str, int, int]:
    """The tensor stored last in the file: (name, absolute begin, absolute end)."""
    base, head = header_of(path)
    head.pop("__metadata__", None)
    name, h = max(head.items(), key=lambda kv: kv[1]["data_offsets"][1])
    return name, base + h["data_offsets"][0], base + h["data_offsets"][1]


def rewrite_header(path: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Rewrites the header of `path` with `edit(header)` applied, keeping the data bytes."""
    base, head = header_of(path)
    with open(path, "rb") as f:
        f.seek(base)
        data = f.read()
    edit(head)
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


class Reader(unittest.TestCase):
    def setUp(self) -> None:
        self.dir, _ = save_tiny("llama", tempfile.mkdtemp(prefix="flexsp-hf-reader-"))
        self.path = os.path.join(self.dir, "model.safetensors")
        shape = ModelShape.from_json(hf.shape_json(hf.read_config(self.dir), self.dir))
        self.lay = param_layout(shape)

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def load(self) -> torch.Tensor:
        flat = torch.full((self.lay.total,), float("nan"))
        load_weights(self.dir, self.lay, flat)
        return flat

    def test_whole_file_loads(self) -> None:
        flat = self.load()
        name, a, b = last_tensor(self.path)
        s = next(s for s in self.lay.slices if s.name == name)
        with open(self.path, "rb") as f:
            f.seek(a)
            want = torch.frombuffer(bytearray(f.read(b - a)), dtype=torch.float32)
        self.assertTrue(torch.equal(flat[s.offset : s.offset + s.length], want))

    def test_cut_at_a_tensor_boundary(self) -> None:
        name, a, b = last_tensor(self.path)
        os.truncate(self.path, a)
        with self.assertRaisesRegex(hf.HfError, f"^{self.path}: truncated: tensor {name} ends at byte {b} of a "
                                    f"{a}-byte file \\({b - a} bytes missing\\): re-download it$"):
            self.load()

    def test_cut_mid_tensor(self) -> None:
        name, a, b = last_tensor(self.path)
        os.truncate(self.path, a + 248)
        with self.assertRaisesRegex(hf.HfError, f"^{self.path}: truncated: tensor {name} ends at byte {b} "):
            self.load()

    def test_offsets_that_do_not_fit_the_shape(self) -> None:
        name, _, _ = last_tensor(self.path)

        def shrink(head: dict) -> None:
            a, b = head[name]["data_offsets"]
            head[name]["data_offsets"] = [a, b - 4]

        rewrite_header(self.path, shrink)
        with self.assertRaisesRegex(hf.HfError, f"^{self.path}: tensor {name}: data_offsets \\[\\d+, \\d+\\] hold "
                                    r"\d+ bytes, its F32 shape \[[\d, ]+\] needs \d+: re-download it$"):
            self.load()

    def test_unsupported_dtype(self) -> None:
        name, _, _ = last_tensor(self.path)
        rewrite_header(self.path, lambda head: head[name].update(dtype="I8"))
        with self.assertRaisesRegex(hf.HfError, f"^{self.path}: tensor {name} has dtype I8 \\(supported: "):
            self.load()

    def test_corrupt_header(self) -> None:
        with open(self.path, "r+b") as f:
            f.seek(9)
            f.write(b"\xff\xfe")
        with self.assertRaisesRegex(hf.HfError, f"^{self.path}: corrupt safetensors header"):
            self.load()


if __name__ == "__main__":
    unittest.main()
