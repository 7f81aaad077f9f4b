// The whole GPT on the CPU backend: loss against an independent float64 reference, gradients against float64
// central differences of that reference, float32 vs float64, and Ulysses SP-degree invariance (d = 1, 2, 4, 8)
// through in-process group communicators.

import { CpuBackend } from "../../kernels/cpu/backend.ts";
import { SOLO_GROUP } from "../../kernels/group_comm.ts";
import { localGroup } from "../../kernels/local_comm.ts";
import { initParams, type ModelShape, paramLayout, Prng } from "../../kernels/model.ts";
import { packGroup, rankSlice } from "../../kernels/packing.ts";
import { UlyssesGpt } from "../../kernels/ulysses_model.ts";
import { assert, assertArrayClose, assertThrows } from "../assert.ts";
import { refGptLoss } from "./reference.ts";

const SHAPE: ModelShape = { layers: 2, hidden: 16, heads: 4, vocab: 32, maxSeq: 16 };
const SHAPE8: ModelShape = { layers: 2, hidden: 32, heads: 8, vocab: 32, maxSeq: 16 };

function sequences(shape: ModelShape, lengths: number[], seed: number): Int32Array[] {
  const rng = new Prng(seed);
  return lengths.map((n) => Int32Array.from({ length: n }, () => rng.int(shape.vocab)));
}

/** Params with non-trivial LayerNorm gains/biases so every gradient path is exercised. */
function testParams(shape: ModelShape, seed: number): Float64Array {
  const layout = paramLayout(shape);
  const p = Float64Array.from(initParams(layout, seed));
  const rng = new Prng(seed, 99);
  for (const s of layout.slices) {
    for (let i = 0; i < s.length; i++) {
      if (s.init === "ones") p[s.offset + i] = 1 + 0.3 * rng.normal();
      else if (s.init === "zeros") p[s.offset + i] = 0.05 * rng.normal();
      else p[s.offset + i] *= 10; // std 0.2: larger activations, less trivial attention
    }
  }
  return p;
}

/** Runs one micro-batch on `degree` in-process ranks; returns the loss sum and the gradients summed over ranks. */
async function runGroup(
  backend: CpuBackend,
  shape: ModelShape,
  params: Float64Array,
  seqs: Int32Array[],
  degree: number,
): Promise<{ loss: number; grads: Float64Array; targets: number }> {
  const layout = paramLayout(shape);
  const group = packGroup(seqs, degree, shape.maxSeq, shape.vocab);
  const comms = degree === 1 ? [SOLO_GROUP] : localGroup(degree);
  const grads = new Float64Array(layout.total);
  const results = await Promise.all(comms.map(async (comm, r) => {
    const P = backend.uploadF64(params), G = backend.alloc(layout.total);
    const model = new UlyssesGpt(backend, layout, P, G);
    const res = await model.run(rankSlice(group, r), comm);
    return { res, g: backend.downloadF64(G) };
  }));
  let loss = 0, targets = 0;
  for (const { res, g } of results) {
    loss += res.lossSum;
    targets += res.targets;
    for (let i = 0; i < g.length; i++) grads[i] += g[i];
  }
  return { loss, grads, targets };
}

const LENGTHS = [5, 1, 9, 3, 16, 2];

Deno.test("model: loss equals the independent float64 reference; targets counted per sequence", async () => {
  const f64 = new CpuBackend({ precision: "f64" });
  const params = testParams(SHAPE, 3);
  const seqs = sequences(SHAPE, LENGTHS, 1);
  const { loss, targets } = await runGroup(f64, SHAPE, params, seqs, 1);
  const ref = refGptLoss(paramLayout(SHAPE), params, seqs);
  // Per-token losses come back as float32 (Backend.download), so the sum matches to float32 rounding.
  assertArrayClose([loss], [ref], 0, 1e-7, "loss");
  assert(targets === LENGTHS.reduce((a, n) => a + n - 1, 0), `targets ${targets}`);
});

Deno.test("model: gradient check of every parameter slice against float64 finite differences", async () => {
  const f64 = new CpuBackend({ precision: "f64" });
  const layout = paramLayout(SHAPE);
  const params = testParams(SHAPE, 4);
  const seqs = sequences(SHAPE, [7, 4, 10], 2);
  const { grads } = await runGroup(f64, SHAPE, params, seqs, 1);
  const rng = new Prng(7);
  const h = 1e-5;
  let checked = 0;
  for (const s of layout.slices) {
    // wte/wpe: pick rows that are actually used too (a used token id, position 0).
    const picks = [rng.int(s.length), rng.int(s.length)];
    if (s.name === "wte") picks.push(seqs[0][1] * SHAPE.hidden + 3);
    if (s.name === "wpe") picks.push(5);
    for (const j of picks) {
      const i = s.offset + j, keep = params[i];
      params[i] = keep + h;
      const lp = refGptLoss(layout, params, seqs);
      params[i] = keep - h;
      const lm = refGptLoss(layout, params, seqs);
      params[i] = keep;
      const num = (lp - lm) / (2 * h);
      if (!(Math.abs(num - grads[i]) <= 1e-7 + 1e-5 * Math.abs(num))) {
        throw new Error(`grad ${s.name}[${j}]: analytic ${grads[i]} vs numeric ${num}`);
      }
      checked++;
    }
  }
  assert(checked >= 2 * layout.slices.length, "every slice checked");
  // Padding stays zero.
  for (let s = 0; s < layout.slices.length - 1; s++) {
    const a = layout.slices[s], b = layout.slices[s + 1];
    for (let i = a.offset + a.length; i < b.offset; i++) assert(grads[i] === 0, "padding gradient must stay 0");
  }
});

Deno.test("model: float32 backend agrees with float64", async () => {
  const params = testParams(SHAPE, 5);
  const seqs = sequences(SHAPE, LENGTHS, 3);
  const a = await runGroup(new CpuBackend({ precision: "f64" }), SHAPE, params, seqs, 1);
  const b = await runGroup(new CpuBackend(), SHAPE, params, seqs, 1);
  assertArrayClose([b.loss], [a.loss], 0, 1e-5, "loss f32 vs f64");
  const scale = a.grads.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assertArrayClose(b.grads, a.grads, 1e-5 * scale, 1e-3, "grads f32 vs f64");
});

Deno.test("Ulysses SP-degree invariance: d = 1, 2, 4 (4 heads) and d = 8 (8 heads) give the same loss and grads", async () => {
  for (const [shape, degrees] of [[SHAPE, [2, 4]], [SHAPE8, [2, 8]]] as const) {
    const params = testParams(shape, 6);
    const seqs = sequences(shape, [5, 1, 9, 3, 16, 2, 7], 4); // 43 tokens: uneven, padded per degree
    for (const precision of ["f64", "f32"] as const) {
      const be = new CpuBackend({ precision });
      const base = await runGroup(be, shape, params, seqs, 1);
      const scale = base.grads.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      // The all-to-all carries float32 (Backend.download), so even f64 storage agrees only to ~float32 rounding.
      const tol = precision === "f64" ? 1e-6 : 2e-5;
      for (const d of degrees) {
        const r = await runGroup(be, shape, params, seqs, d);
        assertArrayClose([r.loss], [base.loss], 0, tol, `loss d=${d} ${precision}`);
        assert(r.targets === base.targets, "target count");
        assertArrayClose(r.grads, base.grads, tol * scale, tol, `grads d=${d} ${precision}`);
      }
    }
  }
});

Deno.test("Ulysses SP: a degree that does not divide the head count is a clear error", async () => {
  const be = new CpuBackend();
  const layout = paramLayout(SHAPE8);
  const model = new UlyssesGpt(be, layout, be.upload(initParams(layout, 1)), be.alloc(layout.total));
  const group = packGroup(sequences(SHAPE8, [6], 1), 3, SHAPE8.maxSeq, SHAPE8.vocab);
  await assertThrows(() => model.run(rankSlice(group, 0), localGroup(3)[0]), /8 attention heads.*SP degree 3/);
});

Deno.test("packing: too-long sequence and out-of-vocabulary token are clear errors", async () => {
  await assertThrows(() => packGroup([new Int32Array(17)], 1, 16, 32), /17 tokens, more than maxSeq 16/);
  await assertThrows(() => packGroup([Int32Array.from([1, 40])], 1, 16, 32), /token 40 outside/);
  const g = packGroup([new Int32Array(5), new Int32Array(2)], 4, 16, 32);
  assert(g.seqLen === 8 && g.cuSeqlens.join() === "0,5,7,8" && g.bounds.join() === "0,2,4,6,8", "padding");
  assert(g.targets[6] === -1 && g.targets[7] === -1 && g.targetCount === 5, "targets");
});
