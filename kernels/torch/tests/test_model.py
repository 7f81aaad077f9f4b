# In-process tests of the torch executor's pieces: the PRNG and initialisation streams, the GPT against an
# independent float64 reference (plain matrix code, explicit causal masks, one sequence at a time), packed
# sequence boundaries, plan validation messages, AdamW against the scalar formula, and the checkpoint format.
from __future__ import annotations

import math
import os
import tempfile
import unittest

import torch

from executor import cuda_index
from checkpoint import decode_state, encode_state, sha256_hex, write_atomic
from gpt import Gpt
from model import ModelShape, Prng, init_mode, init_params, param_layout
from optim import AdamWConfig, adamw, clip_factor, sum_squares
from packing import SyntheticSource, pack_group
from step_plan import check_plan

torch.set_num_threads(1)
SMALL = ModelShape.from_json({"layers": 2, "hidden": 32, "heads": 4, "vocab": 50, "maxSeq": 64})


def reference_losses(shape: ModelShape, flat: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
    """Per-target-token losses of each sequence on its own, in plain float64 code (the oracle)."""
    lay = param_layout(shape)
    H, NH = shape.hidden, shape.heads
    D = H // NH

    def P(name: str) -> torch.Tensor:
        s = lay.by_name[name]
        return flat[s.offset : s.offset + s.length].view(s.shape)

    def ln(x: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * g + b

    def gelu(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    out = []
    for s in seqs:
        n = len(s)
        x = P("wte")[torch.tensor(s, dtype=torch.long)] + P("wpe")[torch.arange(n)]
        for layer in range(shape.layers):
            p = f"h{layer}."
            a = ln(x, P(p + "ln1.g"), P(p + "ln1.b"))
            qkv = a @ P(p + "attn.w_qkv") + P(p + "attn.b_qkv")
            heads = []
            for h in range(NH):
                q = qkv[:, h * D : (h + 1) * D]
                k = qkv[:, H + h * D : H + (h + 1) * D]
                v = qkv[:, 2 * H + h * D : 2 * H + (h + 1) * D]
                sc = (q @ k.t()) / math.sqrt(D)
                sc = sc.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
                heads.append(torch.softmax(sc, -1) @ v)
            hh = x + torch.cat(heads, 1) @ P(p + "attn.w_o") + P(p + "attn.b_o")
            u = gelu(ln(hh, P(p + "ln2.g"), P(p + "ln2.b")) @ P(p + "mlp.w_fc") + P(p + "mlp.b_fc"))
            x = hh + u @ P(p + "mlp.w_proj") + P(p + "mlp.b_proj")
        logits = ln(x, P("lnf.g"), P("lnf.b")) @ P("wte").t()
        lse = torch.logsumexp(logits[:-1], -1)
        out.append(lse - logits[torch.arange(n - 1), torch.tensor(s[1:], dtype=torch.long)])
    return torch.cat(out)


def run_gpt(shape: ModelShape, flat: torch.Tensor, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and flat gradient of the executor's GPT on the packed `seqs` (degree 1)."""
    lay = param_layout(shape)
    grads = torch.zeros_like(flat)
    model = Gpt(lay, flat.clone(), grads)
    pk = pack_group(seqs, 1, shape.max_seq, shape.vocab)
    losses = model.forward(pk.tokens, pk.positions, pk.targets, pk.cu_seqlens, None, 1)
    total = losses.double().sum() if losses.dtype != torch.float64 else losses.sum()
    losses.sum().backward()
    return total.detach(), grads


class PrngAndInit(unittest.TestCase):
    def test_prng_stream_matches_the_typescript_prng(self) -> None:
        # Values printed by `new Prng(7, 3)` of kernels/model.ts: 5 × nextU32, normal(), int(100).
        r = Prng(7, 3)
        got = [r.next_u32() for _ in range(5)] + [r.normal(), r.below(100)]
        self.assertEqual(got, [2989863682, 4127010375, 2175715246, 2925571566, 3063593031, 0.3877153818427411, 40])

    def test_inlined_normals_equal_the_scalar_generator(self) -> None:
        a, b = Prng(1234, 5), Prng(1234, 5)
        xs = a.normals(1001, 0.02) + a.normals(3, 0.02)
        ys = [b.normal() * 0.02 for _ in range(1004)]
        self.assertEqual(xs, ys)

    def test_init_layout_and_statistics(self) -> None:
        lay = param_layout(SMALL)
        p = init_params(lay, 1)
        self.assertEqual(lay.total % 64, 0)
        for s in lay.slices:
            self.assertEqual(s.offset % 64, 0)
            x = p[s.offset : s.offset + s.length]
            if s.init == "ones":
                self.assertTrue(bool((x == 1).all()), s.name)
            elif s.init == "zeros":
                self.assertTrue(bool((x == 0).all()), s.name)
        w = p[lay.by_name["h0.mlp.w_fc"].offset :][: lay.by_name["h0.mlp.w_fc"].length]
        self.assertAlmostEqual(float(w.std()), 0.02, delta=0.002)
        self.assertTrue(torch.equal(p, init_params(lay, 1)), "deterministic")
        self.assertFalse(torch.equal(p, init_params(lay, 2)), "seeded")


    def test_fast_init_for_billion_parameter_shapes(self) -> None:
        big = param_layout(ModelShape.from_json({"layers": 1, "hidden": 4096, "heads": 64, "vocab": 50257,
                                                 "maxSeq": 65536}))
        self.assertEqual(init_mode(big), "fast")
        self.assertEqual(init_mode(param_layout(SMALL)), "exact")
        lay = param_layout(SMALL)
        a, b = init_params(lay, 3, "fast"), init_params(lay, 3, "fast")
        self.assertTrue(torch.equal(a, b), "deterministic")
        self.assertFalse(torch.equal(a, init_params(lay, 3)), "not the exact stream")
        w = lay.by_name["h1.attn.w_o"]
        self.assertAlmostEqual(float(a[w.offset : w.offset + w.length].std()), 0.02 / 2, delta=0.001)
        self.assertTrue(bool((a[lay.by_name["lnf.g"].offset :][:32] == 1).all()))


class GptParity(unittest.TestCase):
    def setUp(self) -> None:
        self.lay = param_layout(SMALL)
        self.flat32 = init_params(self.lay, 7)
        # Larger weights than the init, so attention is far from uniform and errors would show.
        self.flat32 = self.flat32 * 8
        src = SyntheticSource(SMALL.vocab)
        self.seqs = [src.read({"id": i, "offset": 0, "length": n}) for i, n in enumerate([13, 1, 30, 7])]

    def test_float64_model_equals_the_plain_reference(self) -> None:
        flat = self.flat32.double().requires_grad_(True)
        ref = reference_losses(SMALL, flat, self.seqs)
        ref.sum().backward()
        loss, grads = run_gpt(SMALL, self.flat32.double(), self.seqs)
        r = float(ref.sum().detach())
        self.assertAlmostEqual(float(loss), r, delta=1e-12 * r)
        assert flat.grad is not None
        err = float((grads - flat.grad).abs().max())
        self.assertLess(err, 1e-12 * float(flat.grad.abs().max()))

    def test_float32_model_is_close_to_the_float64_reference(self) -> None:
        flat = self.flat32.double().requires_grad_(True)
        ref = reference_losses(SMALL, flat, self.seqs)
        ref.sum().backward()
        loss, grads = run_gpt(SMALL, self.flat32, self.seqs)
        r = float(ref.sum().detach())
        self.assertLess(abs(float(loss) - r) / r, 1e-5)
        assert flat.grad is not None
        self.assertLess(float((grads.double() - flat.grad).abs().max()), 1e-4 * float(flat.grad.abs().max()))

    def test_bf16_autocast_path_of_the_cuda_kind_runs_on_the_cpu(self) -> None:
        # The cuda kind runs the forward under bf16 autocast with float32 master weights and a float32 loss;
        # the same code under CPU autocast must give float32 losses near the float32 run and float32 gradients
        # (at the initialisation: the 8x weights of the other tests are too chaotic for bf16).
        lay = param_layout(SMALL)
        flat = init_params(lay, 7)
        pk = pack_group(self.seqs, 1, SMALL.max_seq, SMALL.vocab)
        grads = torch.zeros(lay.total)
        model = Gpt(lay, flat.clone(), grads)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model.forward(pk.tokens, pk.positions, pk.targets, pk.cu_seqlens, None, 1)
        self.assertEqual(losses.dtype, torch.float32)
        losses.sum().backward()
        ref, ref_g = run_gpt(SMALL, flat, self.seqs)
        self.assertLess(abs(float(losses.detach().double().sum()) - float(ref)) / float(ref), 1e-3)
        self.assertEqual(grads.dtype, torch.float32)
        self.assertTrue(bool(torch.isfinite(grads).all()))
        cos = float(torch.nn.functional.cosine_similarity(grads.double(), ref_g.double(), dim=0))
        self.assertGreater(cos, 0.999)

    def test_attention_never_crosses_packed_sequence_boundaries(self) -> None:
        flat = self.flat32.double()
        together, _ = run_gpt(SMALL, flat, self.seqs)
        apart = sum(float(run_gpt(SMALL, flat, [s])[0]) for s in self.seqs if len(s) > 1)
        self.assertAlmostEqual(float(together), apart, delta=1e-10 * apart)


class Packing(unittest.TestCase):
    def test_padding_segment_and_bounds(self) -> None:
        pk = pack_group([[1, 2, 3], [4, 5]], 4, 16, 10)
        self.assertEqual(pk.seq_len, 8)
        self.assertEqual(pk.cu_seqlens, [0, 3, 5, 8])
        self.assertEqual(pk.bounds, [0, 2, 4, 6, 8])
        self.assertEqual(pk.targets.tolist(), [2, 3, -1, 5, -1, -1, -1, -1])
        self.assertEqual(pk.positions.tolist(), [0, 1, 2, 0, 1, 0, 1, 2])
        self.assertEqual(pk.target_count, 3)
        with self.assertRaisesRegex(ValueError, "token 12 outside the vocabulary"):
            pack_group([[12]], 1, 16, 10)


class PlanValidation(unittest.TestCase):
    def plan(self, groups: list[dict[str, object]]) -> dict[str, object]:
        return {"step": 3, "microBatches": [{"groups": groups}], "globalTokens": 10, "lr": 1e-3}

    def check(self, groups: list[dict[str, object]], pattern: str) -> None:
        in_pool = lambda r: r in ([0, 1], [2, 3], [0, 1, 2, 3])  # noqa: E731
        with self.assertRaisesRegex(ValueError, pattern):
            check_plan(self.plan(groups), 0, 4, SMALL.__class__.from_json({**SMALL.to_json(), "heads": 4}), in_pool)

    def test_clear_errors(self) -> None:
        s = [{"id": 1, "offset": 0, "length": 5}]
        self.check([{"degree": 3, "ranks": [0, 1, 2], "sequences": s}, {"degree": 1, "ranks": [3], "sequences": []}],
                   "SP degree 3 does not divide the model's 4 attention heads")
        self.check([{"degree": 2, "ranks": [0, 1], "sequences": s}, {"degree": 1, "ranks": [2], "sequences": []}],
                   r"rank\(s\) 3 are in no group")
        self.check([{"degree": 1, "ranks": [0], "sequences": []}, {"degree": 2, "ranks": [1, 2], "sequences": s},
                    {"degree": 1, "ranks": [3], "sequences": []}], "not an aligned power-of-two block")
        self.check([{"degree": 4, "ranks": [0, 1, 2, 3], "sequences": [{"id": 9, "offset": 0, "length": 65}]}],
                   "sequence 9 has length 65; the model accepts 1..64")


class Optimizer(unittest.TestCase):
    def test_adamw_equals_the_scalar_formula_bit_for_bit(self) -> None:
        g = torch.Generator().manual_seed(3)
        p, grad, m, v = (torch.randn(257, generator=g) for _ in range(4))
        v = v.abs()
        cfg = AdamWConfig(weight_decay=0.1, grad_clip=1.0, beta1=0.9, beta2=0.95, eps=1e-8)
        exp_p, exp_m, exp_v = p.tolist(), m.tolist(), v.tolist()
        lr, step, scale = 3e-3, 4, 0.37
        bc1, bc2 = 1 - 0.9**step, 1 - 0.95**step
        for i, gi0 in enumerate(grad.tolist()):
            gi = gi0 * scale
            mi = 0.9 * exp_m[i] + (1 - 0.9) * gi
            vi = 0.95 * exp_v[i] + (1 - 0.95) * gi * gi
            exp_m[i], exp_v[i] = mi, vi
            exp_p[i] = exp_p[i] * (1 - lr * 0.1) - lr * (mi / bc1) / (math.sqrt(vi / bc2) + 1e-8)
        adamw(p, grad, m, v, lr, cfg, 0.1, step, scale)
        self.assertTrue(torch.equal(p, torch.tensor(exp_p, dtype=torch.float32)))
        self.assertTrue(torch.equal(m, torch.tensor(exp_m, dtype=torch.float32)))
        self.assertTrue(torch.equal(v, torch.tensor(exp_v, dtype=torch.float32)))

    def test_clipping(self) -> None:
        g = torch.tensor([3.0, 4.0, 0.0, 12.0])
        self.assertEqual(sum_squares(g, [(0, 2), (3, 4)]), 169.0)
        self.assertAlmostEqual(clip_factor(13.0, 1.0), 1 / (13 + 1e-6))
        self.assertEqual(clip_factor(0.5, 1.0), 1.0)
        self.assertEqual(clip_factor(13.0, 0.0), 1.0)


class CudaDeviceIndex(unittest.TestCase):
    def test_the_agents_cuda_visible_devices_maps_the_node_gpu_to_index_0(self) -> None:
        old = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            os.environ["CUDA_VISIBLE_DEVICES"] = "3"
            self.assertEqual(cuda_index(3, 1, "here"), 0)
            os.environ["CUDA_VISIBLE_DEVICES"] = "0,1,2,3"
            self.assertEqual(cuda_index(2, 4, "here"), 2)
            del os.environ["CUDA_VISIBLE_DEVICES"]
            self.assertEqual(cuda_index(1, 2, "here"), 1)
            with self.assertRaisesRegex(RuntimeError, r"GPU 5 is not visible \(here sees 2 GPU\(s\)"):
                cuda_index(5, 2, "here")
        finally:
            if old is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = old


class Checkpoints(unittest.TestCase):
    def test_round_trip_atomic_and_refusals(self) -> None:
        lay = param_layout(SMALL)
        p = init_params(lay, 1)
        m, v = p * 0.5, p.abs()
        data = encode_state(SMALL, 17, p, m, v)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sub", "rank0.ckpt")
            write_atomic(path, data)
            self.assertEqual(os.listdir(os.path.dirname(path)), ["rank0.ckpt"], "no temporary file left")
            with open(path, "rb") as f:
                back = f.read()
        self.assertEqual(sha256_hex(back), sha256_hex(data))
        st = decode_state(back, SMALL, path)
        self.assertEqual(st.step, 17)
        self.assertTrue(torch.equal(st.params, p) and torch.equal(st.m, m) and torch.equal(st.v, v))
        other = ModelShape.from_json({**SMALL.to_json(), "hidden": 64})
        with self.assertRaisesRegex(ValueError, "model hidden is 32, this run has 64"):
            decode_state(back, other, path)
        with self.assertRaisesRegex(ValueError, "size .* bytes, expected"):
            decode_state(back[:-4], SMALL, path)
        with self.assertRaisesRegex(ValueError, "not a flexsp executor checkpoint"):
            decode_state(b"PK\x03\x04" + back[4:], SMALL, path)


if __name__ == "__main__":
    unittest.main()
