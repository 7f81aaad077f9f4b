# Real torch-cpu executor processes on gloo load a tiny random GQA llama (4 query heads, 2 K/V heads) that
# transformers saved (init.modelFrom), and run Ulysses steps at SP degree 4 (K/V heads replicated up to the
# degree), 2 (K/V heads split) and 1 in one 4-rank run: every group's loss equals transformers' loss on the same
# sequences within 1e-4 (a degree incompatible with the heads: test_llama.py, check_plan).
from __future__ import annotations

import os
import shutil
import tempfile
import unittest

import torch

import hf
from tests.harness import Proc, group, plan, seqs, start_run, step_all, stop_all
from tests.llama_fixtures import hf_mean_loss, save_tiny

torch.set_num_threads(1)


class LlamaFourRanks(unittest.TestCase):
    procs: list[Proc]
    dir: str
    tokens: list[int]

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = tempfile.mkdtemp(prefix="flexsp-llama-run-")
        model_dir, cls.ref = save_tiny("llama", os.path.join(cls.dir, "model"), seed=11,
                                       rope_theta=20000.0)
        g = torch.Generator().manual_seed(5)
        cls.tokens = [int(x) for x in torch.randint(0, 128, (2000,), generator=g)]
        path = os.path.join(cls.dir, "tokens.bin")
        with open(path, "wb") as f:
            f.write(bytes(torch.tensor(cls.tokens, dtype=torch.int16).untyped_storage()))
        shape = hf.shape_json(hf.read_config(model_dir), model_dir)
        extra = {"dataset": {"tokensPath": path, "tokenBytes": 2}, "modelFrom": model_dir}
        cls.procs = start_run(4, shape, init=lambda r: extra)

    @classmethod
    def tearDownClass(cls) -> None:
        stop_all(cls.procs)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def group_losses(self, step: int, groups: list[list[int]], lengths: list[list[int]]) -> None:
        refs, gs, off = [], [], 0
        for ranks, ls in zip(groups, lengths):
            s = seqs(ls, first_id=len(refs) * 10, offset=off)
            off += sum(ls)
            gs.append(group(ranks, s))
            refs.append([self.tokens[x["offset"] : x["offset"] + x["length"]] for x in s])
        done = step_all(self.procs, plan(step, [gs], lr=0.0), timeout=120)
        for ranks, want in zip(groups, refs):
            rep = done[ranks[0]]["microBatches"][0]
            self.assertEqual(rep["tokens"], sum(len(s) - 1 for s in want))
            self.assertAlmostEqual(rep["lossSum"] / rep["tokens"], hf_mean_loss(self.ref, want), delta=1e-4,
                                   msg=f"degree {len(ranks)}")

    def test_degrees_match_transformers(self) -> None:
        self.group_losses(0, [[0, 1, 2, 3]], [[61, 30, 17]])  # degree 4: 2 K/V heads replicated to 4
        self.group_losses(1, [[0, 1], [2, 3]], [[45, 14], [80]])  # degree 2: one K/V head per rank
        self.group_losses(2, [[0], [1], [2], [3]], [[33], [20, 7], [64], [12]])


if __name__ == "__main__":
    unittest.main()
