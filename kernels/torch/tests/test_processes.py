# Real torch-cpu executor processes (executor_main.py) on gloo over 127.0.0.1, one torch thread each, driven
# through the protocol: the SP-group pool, SP-degree invariance (degree 1, 2, 4 and a 2+1+1 plan give the group
# losses and the all-reduced gradient of an in-process degree-1 reference within 1e-5), bit-identical state on
# every rank, checkpoint round trips and a resume that is bit-identical to the uninterrupted run, and bad plans
# refused by every rank with the same clear error.
from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from ..attention import Segments, UlyssesContext
from ..dcp_checkpoint import read_flat
from ..model_shape import ModelShape
from ..param_init import init_params
from ..param_layout import param_layout
from ..prng import Prng
from ..packing import FileSource, pack_group
from .harness import (TINY, Proc, data_files, files_of, group, load_all, plan, save_all, seqs, start_run, step_all,
                      stop_all)
from .single_rank import flat_grads, single_rank

torch.set_num_threads(1)
SHAPE = ModelShape.from_json(TINY)


class FourRanks(unittest.TestCase):
    procs: list[Proc]
    dir: str
    tokens: str
    init_ckpt: list[dict[str, Any]]

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = tempfile.mkdtemp(prefix="flexsp-torch-")
        rng = Prng(77)
        cls.tokens = os.path.join(cls.dir, "tokens.bin")
        data = torch.tensor([rng.below(TINY["vocab"]) for _ in range(3000)], dtype=torch.int16)
        with open(cls.tokens, "wb") as f:
            f.write(bytes(data.untyped_storage()))
        ds = {"dataset": {"tokensPath": cls.tokens, "tokenBytes": 2}}
        cls.procs = start_run(4, TINY, init=lambda r: ds)
        cls.init_ckpt = cls.save_all("init")

    @classmethod
    def tearDownClass(cls) -> None:
        stop_all(cls.procs)
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def save_all(cls, tag: str) -> list[dict[str, Any]]:
        return save_all(cls.procs, os.path.join(cls.dir, tag))

    def load_all(self, saved: list[dict[str, Any]]) -> None:
        load_all(self.procs, saved)

    def test_pool_has_every_aligned_power_of_two_block(self) -> None:
        for p in self.procs:
            pool = p.connected["pool"]
            self.assertEqual([(x["degree"], x["groups"]) for x in pool], [(2, 2), (4, 1)], f"rank {p.rank}")
            self.assertTrue(all(x["ms"] > 0 for x in pool), "creation is timed")

    def reference(self, p: dict[str, Any]) -> tuple[list[list[float]], torch.Tensor]:
        """Every group at degree 1 in this process: group losses and the clipped mean gradient's first moment."""
        lay = param_layout(SHAPE)
        tr, kernel = single_rank(SHAPE, init_params(lay, 1234))
        src = FileSource(self.tokens, 2)
        losses = []
        for mb in p["microBatches"]:
            row = []
            for g in mb["groups"]:
                pk = pack_group([src.read(s) for s in g["sequences"]], 1, SHAPE.max_seq, SHAPE.vocab)
                loss = tr.module(pk.tokens, pk.positions, pk.targets,
                                 UlyssesContext(None, 1, Segments(pk.cu_seqlens), kernel))
                (loss / p["globalTokens"]).backward()
                row.append(float(loss.detach().double()))
            losses.append(row)
        src.close()
        g64 = flat_grads(tr, lay)
        norm = float(g64.dot(g64).sqrt())
        clip = 1.0 / (norm + 1e-6) if norm > 1.0 else 1.0  # gradClip 1
        return losses, 0.1 * g64 * clip

    def run_plan(self, p: dict[str, Any]) -> tuple[list[dict[str, Any]], torch.Tensor]:
        self.load_all(self.init_ckpt)
        done = step_all(self.procs, p)
        saved = self.save_all(f"plan{id(p)}")
        _, _, m, _ = read_flat(saved[0]["path"], param_layout(SHAPE))
        return done, m.double()

    def test_sp_degree_invariance_1_2_4_and_2_1_1(self) -> None:
        s = seqs([300, 57, 129, 200, 31, 99, 1, 64], offset=5)
        plans = {
            "degree 4": plan(0, [[group([0, 1, 2, 3], s)]]),
            "degree 2": plan(0, [[group([0, 1], s[:4]), group([2, 3], s[4:])]]),
            "degree 1": plan(0, [[group([0], s[:2]), group([1], s[2:4]), group([2], s[4:6]), group([3], s[6:])]]),
            "2+1+1": plan(0, [[group([0, 1], s[:3]), group([2], s[3:5]), group([3], s[5:])]]),
        }
        ref_m = None
        for name, p in plans.items():
            ref_losses, ref_m = self.reference(p)
            done, m = self.run_plan(p)
            for gi, g in enumerate(p["microBatches"][0]["groups"]):
                lead = done[g["ranks"][0]]["microBatches"][0]
                self.assertAlmostEqual(lead["lossSum"], ref_losses[0][gi], delta=1e-5 * ref_losses[0][gi],
                                       msg=f"{name}: group {gi} loss")
                self.assertEqual(lead["tokens"], sum(x["length"] - 1 for x in g["sequences"]))
                for r in g["ranks"][1:]:
                    self.assertEqual(done[r]["microBatches"][0]["lossSum"], 0, "reported once")
            scale = float(ref_m.abs().max())
            self.assertGreater(scale, 0)
            err = float((m - ref_m).abs().max())
            self.assertLess(err, 1e-5 * scale, f"{name}: all-reduced gradient vs degree-1 reference")

    def test_resume_from_a_checkpoint_is_bit_identical(self) -> None:
        s = seqs([150, 40, 77, 200], first_id=100, offset=50)
        steps = [
            plan(0, [[group([0, 1], s[:2]), group([2], s[2:3]), group([3], s[3:])], [group([0, 1, 2, 3], s)]], 3e-3),
            plan(1, [[group([0, 1, 2, 3], s[1:])]], 3e-3),
            plan(2, [[group([0], s[:1]), group([1], s[1:2]), group([2, 3], s[2:])]], 3e-3),
        ]
        self.load_all(self.init_ckpt)
        losses = []
        for p in steps:
            losses.append(sum(m["lossSum"] for d in step_all(self.procs, p) for m in d["microBatches"]))
        straight = self.save_all("straight")
        self.assertLess(losses[2], losses[0], "the loss falls")
        self.load_all(self.init_ckpt)
        step_all(self.procs, steps[0])
        mid = self.save_all("mid")
        self.load_all(self.init_ckpt)  # lose the in-memory state, as a killed run does
        self.load_all(mid)
        for p in steps[1:]:
            step_all(self.procs, p)
        resumed = self.save_all("resumed")
        self.assertEqual(data_files(resumed), data_files(straight))

    def test_a_checkpoint_holds_each_value_once_and_is_refused_when_altered(self) -> None:
        self.load_all(self.init_ckpt)
        s = seqs([150, 40, 77, 200], first_id=300, offset=20)
        step_all(self.procs, plan(0, [[group([0, 1, 2, 3], s)]], 3e-3))
        saved = self.save_all("altered")
        lay = param_layout(SHAPE)
        files = files_of(saved)
        data = sum(f["bytes"] for f in files if f["name"].endswith(".distcp"))
        # Parameters and both moments once (12 bytes each, not 4 ranks x 12; the tied head is the embedding), plus
        # each item's serialisation (about 1.5 KiB, much for this tiny model).
        md = dcp.FileSystemReader(saved[0]["path"]).read_metadata()
        self.assertNotIn("model.lm_head.weight", md.state_dict_metadata)
        items = len(md.storage_data)
        self.assertGreater(data, 12 * lay.total)
        self.assertLess(data, 1.1 * 12 * lay.total + 2048 * items, f"{data} bytes for {lay.total} values")
        self.assertGreater(len({s["rank"] for s in saved if any(f["name"].endswith(".distcp") for f in s["files"])}),
                           1, "replicated state is spread over the ranks")
        victim = next(f for f in files if f["name"].startswith("__2_"))
        path = os.path.join(saved[0]["path"], victim["name"])
        with open(path, "r+b") as f:
            f.seek(victim["bytes"] // 2)
            b = f.read(1)
            f.seek(victim["bytes"] // 2)
            f.write(bytes([b[0] ^ 1]))
        # Every rank refuses; rank 0 alone reports it (no late refusal can meet the orchestrator's next request).
        for p in self.procs:
            p.send({"type": "load", "path": saved[0]["path"], "files": files})
        e = self.procs[0].of("error")
        self.assertIn(f"{victim['name']}: sha256", e["message"])
        self.assertFalse(e["fatal"])
        os.truncate(path, victim["bytes"] - 10)
        for p in self.procs:
            p.send({"type": "load", "path": saved[0]["path"], "files": files})
        self.assertRegex(self.procs[0].of("error")["message"],
                         rf"{victim['name']} has {victim['bytes'] - 10} bytes, the manifest")
        flat = os.path.join(self.dir, "flat.ckpt")
        with open(flat, "wb") as out:
            out.write(b"FLEXSPCK")
        for p in self.procs:
            p.send({"type": "load", "path": flat, "files": []})
        self.assertIn("flat checkpoint of the TypeScript executors", self.procs[0].of("error")["message"])
        # Nothing was loaded, the other ranks reported nothing, and all go on.
        self.load_all(self.init_ckpt)
        for p in self.procs[1:]:
            self.assertEqual([e for e in p.pending if e["type"] == "error"], [], f"rank {p.rank}")

    def test_bad_plans_are_refused_by_every_rank_with_the_same_error(self) -> None:
        s = seqs([20, 30, 40], first_id=500)
        bad = [
            (plan(0, [[group([0, 1, 2], s[:1]), group([3], s[1:])]]),
             r"SP degree 3 does not divide the model's 4 attention heads"),
            (plan(0, [[group([0, 1], s[:1]), group([2], s[1:])]]), r"rank\(s\) 3 are in no group"),
            (plan(0, [[group([0], s[:1]), group([1, 2], s[1:2]), group([3], s[2:])]]),
             r"ranks \[1, 2\] are not an aligned power-of-two block of the SP-group pool"),
            (plan(0, [[group([0, 1, 2, 3], [{"id": 1, "offset": 0, "length": 5000}])]]), r"length 5000"),
        ]
        for p, pattern in bad:
            for x in self.procs:
                x.send({"type": "step", "plan": p})
            errs = [x.of("error", 20) for x in self.procs]
            for e in errs:
                self.assertRegex(e["message"], pattern)
                self.assertFalse(e["fatal"], "a refused plan is not fatal")
                self.assertFalse(e["echo"])
            self.assertEqual(len({e["message"] for e in errs}), 1, "every rank says the same")
        done = step_all(self.procs, plan(0, [[group([0], s[:1]), group([1], s[1:2]), group([2, 3], s[2:])]]))
        self.assertEqual(len(done), 4, "still usable")


    def test_profile_compute_and_alltoall(self) -> None:
        req = {"id": "pc1", "points": [{"count": 2, "length": 64}, {"count": 1, "length": 256}], "order": [1, 0, 1],
               "warmup": 1, "barrier": True}
        for p in self.procs:
            p.send({"type": "profile_compute", "request": req})
        results = [p.of("profile_compute_done")["result"] for p in self.procs]
        for r in results:
            self.assertEqual([x["point"] for x in r["samples"]], [1, 0, 1])
            self.assertEqual([x["tokens"] for x in r["samples"]], [256, 128, 256])
            self.assertTrue(all(x["ms"] > 0 for x in r["samples"]))
            self.assertEqual(r["memorySource"], "buffers")
            self.assertEqual(r["modelStateBytes"], 16 * param_layout(SHAPE).total)
            self.assertRegex(r["device"], r"^torch-cpu \(.+\)$")
            peaks = [x["peakBytes"] for x in r["samples"]]
            self.assertEqual(peaks[0], peaks[2], "same batch, same activation bytes")
            self.assertGreater(peaks[0], peaks[1], "more tokens, more activations")
        a2a = {"id": "a1", "groups": [[0, 1], [2, 3]], "sizes": [4096, 1 << 16], "warmup": 1, "iters": 3}
        for p in self.procs:
            p.send({"type": "profile_alltoall", "request": a2a})
        for p in self.procs:
            res = p.of("profile_alltoall_done")["result"]
            self.assertEqual([x["bytes"] for x in res["samples"]], [4096, 1 << 16])
            self.assertTrue(all(len(x["ms"]) == 3 and min(x["ms"]) > 0 for x in res["samples"]))
        bad = {**a2a, "id": "a2", "groups": [[1, 2]]}
        for p in self.procs:
            p.send({"type": "profile_alltoall", "request": bad})
        for p in self.procs:
            e = p.of("error")
            self.assertRegex(e["message"], r"group \[1, 2\] is not an aligned power-of-two block")
            self.assertFalse(e["fatal"])
        # The executors still train.
        step_all(self.procs, plan(0, [[group([0, 1, 2, 3], seqs([40], first_id=900))]]))


class PeerLoss(unittest.TestCase):
    def test_a_peer_killed_mid_step_makes_the_other_fail_with_a_fatal_echo(self) -> None:
        # Rank 1 exits inside its first micro-batch while rank 0 waits for it in the group's first collective.
        procs = start_run(2, env={"FLEXSP_DP_OP_TIMEOUT_MS": "30000", "FLEXSP_STEP_FAULT": "1:exit"})
        try:
            for p in procs:
                p.send({"type": "step", "plan": plan(0, [[group([0, 1], seqs([256, 256]))]])})
            self.assertEqual(procs[1].p.wait(60), 3)
            e = procs[0].of("error", 60)
            self.assertTrue(e["fatal"])
            self.assertTrue(e["echo"], f"rank 0 only repeats rank 1's failure: {e['message']}")
            self.assertIn("a peer rank disconnected or aborted", e["message"])
        finally:
            stop_all(procs)


if __name__ == "__main__":
    unittest.main()
