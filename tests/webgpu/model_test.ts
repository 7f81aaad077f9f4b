// The whole GPT (Ulysses model code) on the WebGPU backend against the CPU reference backend: forward loss,
// every parameter gradient, Ulysses degree 2 on WebGPU against degree 1 on CPU, and the parameters after several
// AdamW steps with gradient clipping.

import type { Backend, Tensor } from "../../kernels/backend.ts";
import { createCpuBackend } from "../../kernels/cpu/backend.ts";
import { type GroupComm, SOLO_GROUP } from "../../kernels/group_comm.ts";
import { initParams, type ParamLayout, paramLayout, Prng } from "../../kernels/model.ts";
import { type PackedGroup, packGroup, rankSlice } from "../../kernels/packing.ts";
import { UlyssesGpt } from "../../kernels/ulysses_model.ts";
import { assert, assertClose, gpuTest } from "./gpu_test_util.ts";

const SHAPE = { layers: 2, hidden: 32, heads: 4, vocab: 64, maxSeq: 64 };

function sequences(seed: number, lengths: number[]): Int32Array[] {
  const rng = new Prng(seed);
  return lengths.map((n) => Int32Array.from({ length: n }, () => rng.int(SHAPE.vocab)));
}

/** In-process all-to-all between `size` ranks (for degree > 1 inside one test). */
function localComms(size: number): GroupComm[] {
  const boxes = new Map<string, { chunks: Float32Array[][]; waiters: ((r: Float32Array[]) => void)[]; n: number }>();
  return Array.from({ length: size }, (_, rank) => ({
    size,
    rank,
    allToAll(chunks: Float32Array[], tag: string): Promise<Float32Array[]> {
      let box = boxes.get(tag);
      if (!box) boxes.set(tag, box = { chunks: [], waiters: [], n: 0 });
      const b = box;
      return new Promise((resolve) => {
        b.chunks[rank] = chunks;
        b.waiters[rank] = resolve;
        if (++b.n === size) {
          boxes.delete(tag);
          for (let r = 0; r < size; r++) b.waiters[r](b.chunks.map((c) => c[r]));
        }
      });
    },
  }));
}

interface StepResult {
  loss: number;
  grads: Float32Array;
}

/** One forward+backward of `group` split over `degree` ranks sharing backend `b`; gradients summed over ranks. */
async function gradStep(b: Backend, layout: ParamLayout, params: Tensor[], group: PackedGroup): Promise<StepResult> {
  const d = group.degree;
  const comms = d === 1 ? [SOLO_GROUP] : localComms(d);
  const grads = params.map(() => b.alloc(layout.total));
  const results = await Promise.all(
    comms.map((comm, r) =>
      new UlyssesGpt(b, layout, params[r], grads[r]).run(rankSlice(group, r), comm, {
        lossScale: 1 / group.targetCount,
      })
    ),
  );
  const sum = new Float32Array(layout.total);
  for (const g of grads) {
    const host = await b.download(g);
    for (let i = 0; i < sum.length; i++) sum[i] += host[i];
    b.free(g);
  }
  const lossSum = results.reduce((s, r) => s + r.lossSum, 0);
  return { loss: lossSum / group.targetCount, grads: sum };
}

function compareGrads(got: Float32Array, want: Float32Array, layout: ParamLayout, what: string): void {
  for (const s of layout.slices) {
    const g = got.subarray(s.offset, s.offset + s.length), w = want.subarray(s.offset, s.offset + s.length);
    let scale = 0;
    for (const x of w) scale = Math.max(scale, Math.abs(x));
    assert(scale > 0 || s.name.startsWith("wpe"), `${what}: gradient of ${s.name} is all zero on the reference`);
    assertClose(g, w, `${what} ${s.name}`, 2e-3, 2e-4 * scale + 1e-9);
  }
}

gpuTest("model: forward loss and all gradients match the CPU backend (degree 1)", async (gpu) => {
  const layout = paramLayout(SHAPE);
  const init = initParams(layout, 7);
  const group = packGroup(sequences(3, [23, 7, 40, 1, 13]), 1, SHAPE.maxSeq, SHAPE.vocab);
  const cpu = createCpuBackend();
  const want = await gradStep(cpu, layout, [cpu.upload(init)], group);
  const got = await gradStep(gpu, layout, [gpu.upload(init)], group);
  assert(Math.abs(got.loss - want.loss) <= 1e-5 * want.loss, `loss ${got.loss} vs ${want.loss}`);
  assert(Math.abs(want.loss - Math.log(SHAPE.vocab)) < 0.1, `initial loss ${want.loss} should be near ln(vocab)`);
  compareGrads(got.grads, want.grads, layout, "grad");
});

gpuTest("model: Ulysses degree 2 on WebGPU gives the degree-1 CPU loss and gradients", async (gpu) => {
  const layout = paramLayout(SHAPE);
  const init = initParams(layout, 11);
  const seqs = sequences(5, [31, 6, 18, 9]);
  const cpu = createCpuBackend();
  const want = await gradStep(cpu, layout, [cpu.upload(init)], packGroup(seqs, 1, SHAPE.maxSeq, SHAPE.vocab));
  const g2 = packGroup(seqs, 2, SHAPE.maxSeq, SHAPE.vocab);
  const got = await gradStep(gpu, layout, [gpu.upload(init), gpu.upload(init)], g2);
  assert(Math.abs(got.loss - want.loss) <= 1e-5 * want.loss, `loss ${got.loss} vs ${want.loss}`);
  compareGrads(got.grads, want.grads, layout, "grad d=2");
});

gpuTest("model: parameters after 4 AdamW steps with gradient clipping match the CPU backend", async (gpu) => {
  const layout = paramLayout(SHAPE);
  const init = initParams(layout, 13);
  // The same batch every step, so the loss must fall (it memorises).
  const batch = packGroup(sequences(100, [20, 11, 30]), 1, SHAPE.maxSeq, SHAPE.vocab);
  const batches = [batch, batch, batch, batch];
  const decayMask = new Float32Array(layout.total);
  for (const s of layout.slices) if (s.decay) decayMask.fill(1, s.offset, s.offset + s.length);

  async function train(b: Backend): Promise<{ losses: number[]; params: Float32Array }> {
    const params = b.upload(init), grads = b.alloc(layout.total);
    const m = b.alloc(layout.total), v = b.alloc(layout.total);
    const model = new UlyssesGpt(b, layout, params, grads);
    const losses: number[] = [];
    for (let step = 1; step <= batches.length; step++) {
      const group = batches[step - 1];
      b.zero(grads);
      const r = await model.run(rankSlice(group, 0), SOLO_GROUP, { lossScale: 1 / group.targetCount });
      losses.push(r.lossSum / r.targets);
      const norm = Math.sqrt(await b.sumSquares(grads));
      const maxNorm = 0.5; // below the gradient norms of this batch (~1.3-2), so clipping is active
      const gradScale = norm > maxNorm ? maxNorm / norm : 1;
      for (const s of layout.slices) {
        const view = (t: Tensor) => b.view(t, s.offset, s.length);
        b.adamw(view(params), view(grads), view(m), view(v), {
          lr: 1e-2,
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          weightDecay: s.decay ? 0.1 : 0,
          step,
          gradScale,
        });
      }
    }
    return { losses, params: await b.download(params) };
  }

  const want = await train(createCpuBackend());
  const got = await train(gpu);
  assertClose(got.losses, want.losses, "losses", 1e-5, 0);
  assert(want.losses[3] < want.losses[0], `training should lower the loss: ${want.losses.join(", ")}`);
  let moved = 0;
  for (let i = 0; i < init.length; i++) moved = Math.max(moved, Math.abs(want.params[i] - init[i]));
  assert(moved > 1e-3, `parameters barely moved (${moved})`);
  assertClose(got.params, want.params, "params after AdamW", 1e-3, 5e-5);
});
