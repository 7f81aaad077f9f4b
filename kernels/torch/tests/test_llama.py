# In-process tests of the llama family against transformers (the independent oracle): tiny random llama (GQA,
# llama3 RoPE scaling), mistral (a sliding window shorter than the sequence, handled by the attention kernel) and
# qwen2 (q/k/v biases, tied embeddings) checkpoints saved by transformers and loaded through kernels/torch/hf.py
# give transformers' loss; the three checkpointing policies give the same loss and gradients while the saved
# activations fall as the cost model assumes; the export is loaded by
# transformers.AutoModelForCausalLM with identical logits (single file and sharded); bad directories and
# incompatible SP degrees get one clear error.
from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from typing import Any

import torch

from .. import hf
from ..attention import AttentionKernel, Segments, UlyssesContext, kv_per_rank
from ..model_shape import ModelShape
from ..param_init import init_params
from ..param_layout import ParamLayout, param_layout
from ..packing import pack_group
from ..step_plan import check_plan
from ..trainer import Trainer
from .hf_export import export_hf, load_weights
from .llama_fixtures import hf_mean_loss, save_tiny
from .single_rank import loss_and_grads, single_rank

torch.set_num_threads(1)
LLAMA3 = {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 16}, "rope_theta": 5000.0}


def batch(vocab: int, lengths: list[int], seed: int = 3) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[int(x) for x in torch.randint(0, vocab, (n,), generator=g)] for n in lengths]


def load(d: str, checkpointing: str = "none") -> tuple[Trainer, AttentionKernel, ParamLayout, torch.Tensor]:
    """The executor's model of a Hugging Face directory (weights read through hf.py), and its flat parameters."""
    cfg = hf.read_config(d)
    shape = ModelShape.from_json(hf.shape_json(cfg, d))
    lay = param_layout(shape)
    flat = torch.zeros(lay.total)
    load_weights(d, lay, flat)
    tr, kernel = single_rank(shape, flat, checkpointing=checkpointing, config_json=cfg)
    return tr, kernel, lay, flat


def mean_loss(tr: Trainer, kernel: AttentionKernel, seqs: list[list[int]]) -> float:
    loss, _ = loss_and_grads(tr, kernel, seqs)
    return float(loss) / sum(len(s) - 1 for s in seqs)


class Parity(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="flexsp-llama-")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, model_type: str, **over: Any) -> None:
        d, ref = save_tiny(model_type, self.dir, **over)
        tr, kernel, *_ = load(d)
        seqs = batch(128, [57, 23, 9])
        self.assertAlmostEqual(mean_loss(tr, kernel, seqs), hf_mean_loss(ref, seqs), delta=1e-4)

    def test_llama_gqa_llama3_rope_untied(self) -> None:
        self.check("llama", **LLAMA3)

    def test_llama_linear_rope_tied(self) -> None:
        self.check("llama", rope_scaling={"rope_type": "linear", "factor": 4.0}, tie_word_embeddings=True)

    def test_mistral(self) -> None:
        self.check("mistral")

    def test_mistral_sliding_window_shorter_than_the_sequences(self) -> None:
        self.check("mistral", sliding_window=16)
        shape = hf.shape_json(hf.read_config(self.dir), self.dir)
        self.assertEqual(shape["maxSeq"], hf.read_config(self.dir)["max_position_embeddings"])  # not capped

    def test_qwen2_biases_tied(self) -> None:
        self.check("qwen2", tie_word_embeddings=True)
        shape = hf.shape_json(hf.read_config(self.dir), self.dir)
        self.assertTrue(shape["qkvBias"] and shape["tieEmbeddings"] and not shape["oBias"])


class Checkpointing(unittest.TestCase):
    """none, selective and full: one loss and one gradient; fewer saved activations, as the cost model assumes."""

    def test_same_losses_less_memory(self) -> None:
        shape = ModelShape.from_json({"family": "llama", "layers": 4, "hidden": 64, "heads": 4, "kvHeads": 2,
                                      "intermediate": 160, "vocab": 128, "maxSeq": 512, "ropeTheta": 10000,
                                      "normEps": 1e-6})
        lay = param_layout(shape)
        flat = init_params(lay, 5, "fast")
        seqs = batch(128, [300, 100], seed=9)
        tokens = 400
        out: dict[str, tuple[float, torch.Tensor, float]] = {}
        for policy in ("none", "selective", "full"):
            tr, kernel = single_rank(shape, flat, checkpointing=policy)
            params = {p.untyped_storage().data_ptr() for p in tr.params}
            saved: dict[int, int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                st = t.untyped_storage()
                if st.data_ptr() not in params:
                    saved[st.data_ptr()] = st.nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss, grads = loss_and_grads(tr, kernel, seqs)
            out[policy] = (float(loss), grads, sum(saved.values()) / tokens)
        base_loss, base_grad, none_b = out["none"]
        for policy in ("selective", "full"):
            self.assertEqual(out[policy][0], base_loss, policy)
            torch.testing.assert_close(out[policy][1], base_grad, rtol=0, atol=1e-6)
        sel_b, full_b = out["selective"][2], out["full"][2]
        self.assertLess(sel_b, none_b)  # the attention core is recomputed
        self.assertLess(full_b, sel_b)
        # The cost model's full policy: each layer's input (hidden values per token per layer) plus one layer's
        # activations; in float32 here. Measured: the layer inputs are kept, the rest is not.
        layer_inputs = 4 * shape.hidden * shape.layers
        self.assertGreaterEqual(full_b, layer_inputs)
        self.assertLessEqual(full_b, layer_inputs + none_b / shape.layers + 4 * 4 * shape.vocab)

    def test_unknown_policy(self) -> None:
        shape = ModelShape.from_json({"family": "llama", "layers": 1, "hidden": 16, "heads": 2, "kvHeads": 1,
                                      "intermediate": 16, "vocab": 8, "maxSeq": 8, "ropeTheta": 1e4, "normEps": 1e-6})
        lay = param_layout(shape)
        with self.assertRaisesRegex(ValueError, "model.checkpointing must be one of none, selective, full"):
            single_rank(shape, torch.zeros(lay.total), checkpointing="some")


class Export(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="flexsp-export-")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def round_trip(self, shard_bytes: int, model_type: str, **over: Any) -> list[str]:
        from transformers import AutoModelForCausalLM

        src, _ = save_tiny(model_type, os.path.join(self.dir, "src"), seed=4, **over)
        cfg = hf.read_config(src)
        _, _, lay, flat = load(src)
        with torch.no_grad():  # a trained model is not the one that was loaded
            flat.add_(torch.randn(lay.total, generator=torch.Generator().manual_seed(1)) * 0.01)
        tr, kernel = single_rank(ModelShape.from_json(hf.shape_json(cfg, src)), flat, config_json=cfg)
        out = os.path.join(self.dir, "out")
        shape = hf.shape_json(hf.read_config(src), src)
        files = export_hf(out, shape, lay, flat, shard_bytes=shard_bytes)
        back = AutoModelForCausalLM.from_pretrained(out).float().eval()
        seq = batch(128, [40], seed=2)[0]
        pk = pack_group([seq], 1, 256, 128)
        with torch.no_grad():
            h = tr.inner.hidden(pk.tokens, pk.positions, UlyssesContext(None, 1, Segments(pk.cu_seqlens), kernel))
            ours = h @ tr.inner.lm_head.weight.t()
            theirs = back(input_ids=torch.tensor([seq])).logits[0]
        torch.testing.assert_close(theirs, ours, rtol=0, atol=2e-5)
        return [os.path.basename(f) for f in files]

    def test_single_file(self) -> None:
        self.assertEqual(self.round_trip(2 << 30, "llama", **LLAMA3), ["model.safetensors", "config.json"])

    def test_sharded_qwen2(self) -> None:
        files = self.round_trip(40_000, "qwen2")
        self.assertIn("model.safetensors.index.json", files)
        self.assertGreater(sum(f.endswith(".safetensors") for f in files), 2)


class Errors(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="flexsp-hf-bad-")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_unsupported_model_type(self) -> None:
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump({"model_type": "gpt_neox", "num_hidden_layers": 2}, f)
        path = os.path.join(self.dir, "config.json")
        with self.assertRaisesRegex(hf.HfError, f"^{path}: model_type 'gpt_neox' is not supported "
                                    r"\(supported: llama, mistral, qwen2\)$"):
            hf.shape_json(hf.read_config(self.dir), self.dir)

    def test_unsupported_rope_scaling(self) -> None:
        save_tiny("llama", self.dir)
        path = os.path.join(self.dir, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
        with open(path, "w") as f:
            json.dump(cfg, f)
        with self.assertRaisesRegex(hf.HfError, "RoPE scaling type 'yarn' is not supported"):
            hf.shape_json(hf.read_config(self.dir), self.dir)

    def test_missing_shard(self) -> None:
        save_tiny("llama", self.dir)
        shape = ModelShape.from_json(hf.shape_json(hf.read_config(self.dir), self.dir))
        lay = param_layout(shape)
        files = export_hf(self.dir, hf.shape_json(hf.read_config(self.dir), self.dir), lay,
                          torch.zeros(lay.total), shard_bytes=40_000)
        os.unlink(os.path.join(self.dir, "model.safetensors"))
        shard = os.path.basename(files[1])
        os.unlink(files[1])
        with self.assertRaisesRegex(hf.HfError, f"names shard {shard}, which is missing"):
            load_weights(self.dir, lay, torch.zeros(lay.total))

    def test_no_weights(self) -> None:
        with self.assertRaisesRegex(hf.HfError, "no model.safetensors or model.safetensors.index.json"):
            hf.weight_files(self.dir)

    def test_max_seq_may_only_cap_the_checkpoint_context(self) -> None:
        from dataclasses import replace

        from ..executor import Executor
        save_tiny("llama", self.dir)
        shape = ModelShape.from_json(hf.shape_json(hf.read_config(self.dir), self.dir))
        Executor._check_hf_shape(self.dir, replace(shape, max_seq=shape.max_seq // 2))  # a cap is accepted
        with self.assertRaisesRegex(ValueError, f"model.max_seq {2 * shape.max_seq} is above the {shape.max_seq} "
                                    "tokens of"):
            Executor._check_hf_shape(self.dir, replace(shape, max_seq=2 * shape.max_seq))
        with self.assertRaisesRegex(ValueError, "disagree"):
            Executor._check_hf_shape(self.dir, replace(shape, layers=shape.layers + 1))

    def test_incompatible_degree(self) -> None:
        self.assertEqual(kv_per_rank(8, 2, 4), 1)  # 2 K/V heads replicated up to 4
        self.assertEqual(kv_per_rank(8, 4, 2), 2)
        with self.assertRaisesRegex(ValueError, "3 K/V heads neither divide by the SP degree 2"):
            kv_per_rank(6, 3, 2)
        with self.assertRaisesRegex(ValueError, "4 query heads are not divisible by the SP degree 8"):
            kv_per_rank(4, 2, 8)
        shape = ModelShape.from_json({"family": "llama", "layers": 1, "hidden": 48, "heads": 6, "kvHeads": 3,
                                      "intermediate": 16, "vocab": 8, "maxSeq": 8, "ropeTheta": 1e4, "normEps": 1e-6})
        plan = {"step": 0, "globalTokens": 1, "lr": 0, "microBatches": [{"groups": [
            {"degree": 2, "ranks": [0, 1], "sequences": [{"id": 0, "offset": 0, "length": 2}]}]}]}
        with self.assertRaisesRegex(ValueError, "SP degree 2 is incompatible with the model's 3 K/V heads"):
            check_plan(plan, 0, 2, shape, lambda r: True)


if __name__ == "__main__":
    unittest.main()
