# The sharded DCP checkpoint of one in-process torch-cpu rank (dcp_checkpoint.py): a tied head (GPT, llama with
# tie_word_embeddings) is written once, with its AdamW state once (the bytes within 10% of 12 x the unique parameters),
# loads back into both names, and a resume from it is bit-identical to the uninterrupted run. And real executor
# processes (4 ranks, ZeRO-3, a 93M-parameter GPT): each rank's peak host memory while saving and loading, as its
# `saved` and `loaded` events report it, stays within 2.5x of that rank's shard. With checkpointAsync, a step runs
# while the checkpoint is written, `saved` comes once it is durable, its files are those of a synchronous save
# (bit-identical), and a rank SIGKILLed while the write is in flight leaves no checkpoint directory behind.
from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from .. import dcp_checkpoint
from ..model_shape import ModelShape
from ..param_init import init_params
from ..param_layout import param_layout
from .harness import (TINY, data_files, files_of, group, plan, save_all, seqs, start_run, step_all,
                           stop_all)
from .single_rank import loss_and_grads, single_rank

torch.set_num_threads(1)
#: A large vocabulary next to a small body: a head written twice would add ~20% (the test then fails).
GPT = {"layers": 1, "hidden": 64, "heads": 4, "vocab": 4096, "maxSeq": 64}
LLAMA = {**GPT, "family": "llama", "kvHeads": 2, "intermediate": 128, "ropeTheta": 10000.0, "normEps": 1e-5,
         "tieEmbeddings": True}
SEQS = [[(7 * i + j) % 4096 for j in range(40)] for i in range(3)]


def train(tr: Any, kernel: Any, steps: int) -> None:
    for i in range(steps):
        loss_and_grads(tr, kernel, SEQS[i % len(SEQS) :] + SEQS[: i % len(SEQS)])
        tr.clip()
        tr.step(3e-3)


def flat_state(tr: Any) -> list[torch.Tensor]:
    """Every parameter and AdamW moment, in order (tied ones once)."""
    out = []
    for p in tr.inner.parameters():
        st = tr.optim.state.get(p, {})
        out += [p.detach().clone()] + [st[k].clone() for k in ("exp_avg", "exp_avg_sq") if k in st]
    return out


class TiedWeights(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="flexsp-dcp-")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_family(self, js: dict[str, Any], head: str, embed: str) -> None:
        shape = ModelShape.from_json(js)
        lay = param_layout(shape)
        flat = init_params(lay, 3)
        tr, kernel = single_rank(shape, flat)
        self.assertIs(dict(tr.inner.named_parameters(remove_duplicate=False))[head], tr.inner.embeddings().weight)
        self.assertEqual(dcp_checkpoint.tied_names(tr.inner), {head: embed})
        train(tr, kernel, 2)
        names = dcp_checkpoint.layout_names(tr.inner, lay)
        path = os.path.join(self.dir, js.get("family", "gpt"))
        files = dcp_checkpoint.save(path, tr.inner, tr.optim, 2, shape, names, 0)
        assert isinstance(files, list), "a save without `done` is synchronous"
        md = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
        self.assertIn(f"model.{embed}", md)
        self.assertNotIn(f"model.{head}", md, "the tied head is the embedding: written once")
        unique = sum(p.numel() for p in tr.inner.parameters())
        data = sum(f["bytes"] for f in files if f["name"].endswith(".distcp"))
        self.assertLess(abs(data / (12 * unique) - 1), 0.1, f"{data} bytes for {unique} unique parameters")
        want = flat_state(tr)
        train(tr, kernel, 2)
        straight = flat_state(tr)
        # A fresh rank (other starting values) loads it: the head is the loaded embedding, and it resumes
        # bit-identically.
        back, kernel2 = single_rank(shape, init_params(lay, 9))
        info = dcp_checkpoint.check(path, files, shape, 0, 1)
        self.assertEqual(dcp_checkpoint.load(path, info, back.inner, back.optim), 2)
        got = flat_state(back)
        self.assertEqual(len(got), len(want))
        for a, b in zip(got, want):
            self.assertTrue(torch.equal(a, b))
        self.assertIs(dict(back.inner.named_parameters(remove_duplicate=False))[head], back.inner.embeddings().weight)
        train(back, kernel2, 2)
        for a, b in zip(flat_state(back), straight):
            self.assertTrue(torch.equal(a, b), "the resumed run is bit-identical")

    def test_gpt_tied_head_is_written_once_and_resumes_bit_identically(self) -> None:
        self.check_family(GPT, "lm_head.weight", "transformer.wte.weight")

    def test_llama_tied_head_is_written_once_and_resumes_bit_identically(self) -> None:
        self.check_family(LLAMA, "lm_head.weight", "model.embed_tokens.weight")

    def test_an_asynchronous_save_holds_the_state_of_its_step_while_training_goes_on(self) -> None:
        shape = ModelShape.from_json(GPT)
        lay = param_layout(shape)
        tr, kernel = single_rank(shape, init_params(lay, 3))
        train(tr, kernel, 2)
        want = flat_state(tr)
        path = os.path.join(self.dir, "async")
        got: list[Any] = []
        pending = dcp_checkpoint.save(path, tr.inner, tr.optim, 2, shape, dcp_checkpoint.layout_names(tr.inner, lay),
                                      0, got.append)
        self.assertIsInstance(pending, dcp_checkpoint.AsyncSave)
        train(tr, kernel, 2)  # changes the parameters in place while the thread writes
        assert isinstance(pending, dcp_checkpoint.AsyncSave)
        pending.wait()
        self.assertEqual(len(got), 1)
        files = got[0]
        self.assertIsInstance(files, list, f"{files!r}")
        self.assertFalse(os.path.exists(path + ".tmp"))
        back, _ = single_rank(shape, init_params(lay, 9))
        info = dcp_checkpoint.check(path, files, shape, 0, 1)
        dcp_checkpoint.load(path, info, back.inner, back.optim)
        for a, b in zip(flat_state(back), want):
            self.assertTrue(torch.equal(a, b), "the checkpoint holds the state of its step")


class HostMemory(unittest.TestCase):
    def test_the_measure_sees_an_allocation(self) -> None:
        with dcp_checkpoint.PeakHostMemory() as m:
            t = torch.ones(16 << 20)  # 64 MiB, touched
            del t
        self.assertGreater(m.bytes, 60 << 20)
        self.assertLess(m.bytes, 80 << 20)

    def test_peak_host_memory_of_save_and_load_is_bounded_by_the_rank_shard(self) -> None:
        shape = {"layers": 6, "hidden": 1024, "heads": 16, "vocab": 16384, "maxSeq": 1024}  # 93M parameters
        root = tempfile.mkdtemp(prefix="flexsp-dcp-mem-")
        try:
            tokens = os.path.join(root, "tokens.bin")
            with open(tokens, "wb") as f:
                f.write(bytes(torch.randint(0, shape["vocab"], (2000,), dtype=torch.int16).untyped_storage()))
            procs = start_run(4, shape, env={"FLEXSP_TORCH_INIT": "fast"},
                              init=lambda r: {"dataset": {"tokensPath": tokens, "tokenBytes": 2}, "zeroStage": 3})
            try:
                step_all(procs, plan(0, [[group([0, 1, 2, 3], seqs([64]))]]), timeout=300)
                saved = save_all(procs, os.path.join(root, "ck"), timeout=300)
                for p in procs:
                    p.send({"type": "load", "path": saved[0]["path"], "files": files_of(saved)})
                loaded = [p.of("loaded", 300) for p in procs]
            finally:
                stop_all(procs)
            md = dcp.FileSystemReader(saved[0]["path"]).read_metadata().state_dict_metadata
            self.assertNotIn("model.lm_head.weight", md, "ZeRO-3: the tied head is written once")
            params = param_layout(ModelShape.from_json(shape)).total
            for s, ld in zip(saved, loaded):
                shard = sum(f["bytes"] for f in s["files"] if f["name"].endswith(".distcp"))
                self.assertLess(shard, 1.1 * 12 * params / 4, f"rank {s['rank']} writes a quarter")
                for what, peak in (("save", s["peakHostBytes"]), ("load", ld["peakHostBytes"])):
                    self.assertLessEqual(peak, 2.5 * shard, f"rank {s['rank']} {what}: {peak} bytes, shard {shard}")
        finally:
            shutil.rmtree(root, ignore_errors=True)


class AsyncProcesses(unittest.TestCase):
    def test_async_saves_are_bit_identical_durable_when_reported_and_absent_when_killed(self) -> None:
        root = tempfile.mkdtemp(prefix="flexsp-dcp-async-")
        s = seqs([150, 40, 77, 200], first_id=100, offset=50)
        steps = [plan(i, [[group([0, 1], s[i:i + 2])]], 3e-3) for i in range(3)]
        try:
            tokens = os.path.join(root, "tokens.bin")
            with open(tokens, "wb") as f:
                f.write(bytes(torch.randint(0, TINY["vocab"], (3000,), dtype=torch.int16).untyped_storage()))

            def init(asynchronous: bool) -> Any:
                return lambda r: {"dataset": {"tokensPath": tokens, "tokenBytes": 2}, "zeroStage": 3,
                                  "checkpointAsync": asynchronous}

            procs = start_run(2, TINY, init=init(False))
            try:
                step_all(procs, steps[0])
                sync = save_all(procs, os.path.join(root, "sync"))
                step_all(procs, steps[1])
                sync2 = save_all(procs, os.path.join(root, "sync2"))
            finally:
                stop_all(procs)
            procs = start_run(2, TINY, init=init(True))
            try:
                step_all(procs, steps[0])
                for p in procs:
                    p.send({"type": "save", "path": os.path.join(root, "async")})
                # The next step is sent at once; `saved` comes when the checkpoint is durable, before or after it.
                step_all(procs, steps[1])
                saved = [p.of("saved", 60) for p in procs]
                self.assertTrue(os.path.isdir(saved[0]["path"]))
                self.assertFalse(os.path.exists(saved[0]["path"] + ".tmp"))
                self.assertEqual(data_files(saved), data_files(sync), "the state of step 0, bit for bit")
                saved2 = save_all(procs, os.path.join(root, "async2"))
                self.assertEqual(data_files(saved2), data_files(sync2))
            finally:
                stop_all(procs)
            # Rank 1 is SIGKILLed once its files are written, before the rename: no checkpoint directory.
            procs = start_run(2, TINY, env={"FLEXSP_SAVE_FAULT": "1:exit"}, init=init(True))
            try:
                for p in procs:
                    p.send({"type": "load", "path": sync[0]["path"], "files": files_of(sync)})
                for p in procs:
                    p.of("loaded", 60)
                step_all(procs, steps[1])
                killed = os.path.join(root, "killed")
                for p in procs:
                    p.send({"type": "save", "path": killed})
                self.assertEqual(procs[1].p.wait(60), -9)
                self.assertFalse(os.path.exists(killed), "no checkpoint directory without every rank's files")
                self.assertTrue(os.path.isdir(killed + ".tmp"))
            finally:
                for p in procs:
                    p.p.kill()
                    p.p.wait()
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
