# Contracts of the executor's training path that a GPU run depends on, checked on torch-cpu:
#   - the loss never holds float32 logits of every token at once (chunked cross-entropy), under bf16;
#   - under `selective` checkpointing the backward issues exactly two all-to-alls per layer (the exchanges are saved,
#     only the attention kernel is recomputed), where `full` recomputes the layer with its exchanges (four);
#   - one 16K-token sequence stays far below the memory its s² attention scores would take (a fused kernel).
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..model_shape import ModelShape

from ..param_init import init_params

from ..param_layout import param_layout
from .harness import package_env
from .single_rank import loss_and_grads, single_rank

torch.set_num_threads(1)
LLAMA: dict[str, Any] = {"family": "llama", "layers": 2, "hidden": 64, "heads": 4, "kvHeads": 2, "intermediate": 128,
                         "vocab": 512, "maxSeq": 16384, "ropeTheta": 10000.0, "normEps": 1e-5}


class _LargestFloat32(TorchDispatchMode):
    """Records the largest float32 tensor any op produces."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:  # noqa: ANN401
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.largest = max(self.largest, t.numel())
        return out


class ChunkedLoss(unittest.TestCase):
    def largest(self, chunk_elements: str | None) -> tuple[int, float]:
        shape = ModelShape.from_json(LLAMA)
        old = os.environ.pop("FLEXSP_LOSS_CHUNK_ELEMENTS", None)
        if chunk_elements is not None:
            os.environ["FLEXSP_LOSS_CHUNK_ELEMENTS"] = chunk_elements
        try:
            tr, kernel = single_rank(shape, init_params(param_layout(shape), 3, "fast"), "bf16")
            seqs = [[int(x) for x in torch.randint(0, 512, (n,), generator=torch.Generator().manual_seed(n))]
                    for n in (700, 324)]
            with _LargestFloat32() as mode:
                loss, _ = loss_and_grads(tr, kernel, seqs)
            return mode.largest, float(loss)
        finally:
            os.environ.pop("FLEXSP_LOSS_CHUNK_ELEMENTS", None)
            if old is not None:
                os.environ["FLEXSP_LOSS_CHUNK_ELEMENTS"] = old

    def test_no_float32_tensor_of_tokens_by_vocab_under_bf16(self) -> None:
        tokens_by_vocab = 1024 * 512
        whole, loss_whole = self.largest(str(1 << 25))  # one chunk: the detector sees the whole logits
        self.assertGreaterEqual(whole, tokens_by_vocab, "the probe must see whole float32 logits when not chunked")
        chunked, loss_chunked = self.largest(str(1 << 16))  # 128 tokens of a 512 vocabulary per chunk
        self.assertLess(chunked, tokens_by_vocab // 4, f"largest float32 tensor {chunked} elements")
        self.assertAlmostEqual(loss_chunked, loss_whole, delta=1e-3 * abs(loss_whole))


WORKER = r'''
import json, os, sys, torch, torch.distributed as dist
from kernels.torch.attention import Segments, UlyssesContext
from kernels.torch.model_shape import ModelShape
from kernels.torch.param_init import init_params
from kernels.torch.param_layout import param_layout
from kernels.torch.tests.single_rank import single_rank
rank, policy, store = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
shape = ModelShape.from_json(json.loads(sys.argv[4]))
tr, kernel = single_rank(shape, init_params(param_layout(shape), 3, "fast"), checkpointing=policy)
calls = {"n": 0}
real = dist.all_to_all_single
def counted(*a, **k):
    calls["n"] += 1
    return real(*a, **k)
dist.all_to_all_single = counted
g = torch.Generator().manual_seed(rank)
tok = torch.randint(0, shape.vocab, (64,), generator=g)
pos = torch.arange(64) + 64 * rank
tgt = torch.cat([tok[1:], tok[:1]])
ctx = UlyssesContext(dist.group.WORLD, 2, Segments([0, 128]), kernel)
loss = tr.module(tok, pos, tgt, ctx)
forward = calls["n"]
loss.backward()
print(json.dumps({"forward": forward, "backward": calls["n"] - forward}), flush=True)
# Both ranks are done with the group before either tears it down, and the process then exits without running C++
# static destructors: a rank exiting while its peer's gloo thread still reads the pair once ended in std::terminate.
dist.barrier()
dist.destroy_process_group()
os._exit(0)
'''


class Exchanges(unittest.TestCase):
    def counts(self, policy: str) -> list[dict[str, int]]:
        with tempfile.TemporaryDirectory(prefix="flexsp-a2a-") as d:
            args = [policy, os.path.join(d, "store"), json.dumps(LLAMA)]
            ps = [subprocess.Popen([sys.executable, "-c", WORKER, str(r), *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=package_env()) for r in range(2)]
            outs = [p.communicate(timeout=300) for p in ps]
        for p, (out, err) in zip(ps, outs):
            self.assertEqual(p.returncode, 0, err[-2000:])
        return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]

    def test_selective_saves_the_exchanges_full_recomputes_them(self) -> None:
        layers = LLAMA["layers"]
        for c in self.counts("selective"):
            self.assertEqual(c, {"forward": 2 * layers, "backward": 2 * layers})
        for c in self.counts("full"):  # the layer is recomputed, its two exchanges with it
            self.assertEqual(c, {"forward": 2 * layers, "backward": 4 * layers})


MEMORY = r'''
import json, resource, sys, torch
from kernels.torch.model_shape import ModelShape
from kernels.torch.param_init import init_params
from kernels.torch.param_layout import param_layout
from kernels.torch.tests.single_rank import loss_and_grads, single_rank
torch.set_num_threads(1)
shape = ModelShape.from_json(json.loads(sys.argv[1]))
tr, kernel = single_rank(shape, init_params(param_layout(shape), 3, "fast"), checkpointing="selective")
seq = [int(x) for x in torch.randint(0, shape.vocab, (16384,), generator=torch.Generator().manual_seed(1))]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
loss, _ = loss_and_grads(tr, kernel, [seq])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"growth": after - before, "loss": float(loss), "kernel": kernel.describe()}))
'''


class LongSequence(unittest.TestCase):
    def test_16k_tokens_in_one_sequence_stay_far_below_the_s2_scores(self) -> None:
        p = subprocess.run([sys.executable, "-c", MEMORY, json.dumps(LLAMA)], capture_output=True, text=True,
                           timeout=600, env=package_env())
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        r = json.loads(p.stdout.strip().splitlines()[-1])
        s2 = LLAMA["heads"] * 16384 ** 2 * 4  # one layer's float32 scores
        self.assertLess(r["growth"], s2 / 8, f"peak RSS grew {r['growth'] / 2**20:.0f} MiB; the s² scores of one "
                        f"layer would take {s2 / 2**20:.0f} MiB ({r['kernel']})")
        self.assertTrue(r["loss"] == r["loss"])


if __name__ == "__main__":
    unittest.main()
