// Every WebGPU backend op against the CPU reference backend run in float64 (the oracle), on small random inputs
// with odd sizes, accumulation, views and padded/ignored rows. Tolerance: 1e-4 relative plus a small absolute term.

import type { Backend, Tensor } from "../../kernels/backend.ts";
import { createCpuBackend } from "../../kernels/cpu/backend.ts";
import { assert, assertClose, gpuTest, randomFloats, randomInts } from "./gpu_test_util.ts";

/** Runs the same op sequence on the GPU and on the float64 CPU oracle; returns both results. */
async function both(
  gpu: Backend,
  body: (b: Backend) => Promise<Float32Array[]>,
): Promise<[Float32Array[], Float32Array[]]> {
  const cpu = createCpuBackend({ precision: "f64" });
  return [await body(gpu), await body(cpu)];
}

function compareAll(got: Float32Array[], want: Float32Array[], what: string, rtol = 1e-4, atol = 1e-5): void {
  got.forEach((g, i) => assertClose(g, want[i], `${what}[${i}]`, rtol, atol));
}

async function dl(b: Backend, ...ts: Tensor[]): Promise<Float32Array[]> {
  return await Promise.all(ts.map((t) => b.download(t)));
}

// [16, 24, 1100] and [18, 10, 700] take the split-K path for Aᵀ·B (vec4 and scalar variants).
const MATMUL_SHAPES: [number, number, number][] = [
  [37, 20, 12],
  [5, 7, 3],
  [64, 96, 48],
  [130, 256, 64],
  [9, 8, 1],
  [16, 24, 1100],
  [18, 10, 700],
];

gpuTest("matmul: every transpose, accumulate, vec4 and scalar shapes", async (gpu) => {
  let seed = 1;
  for (const [m, n, k] of MATMUL_SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const accumulate of [false, true]) {
          const A = randomFloats(m * k, seed++), B = randomFloats(k * n, seed++), C0 = randomFloats(m * n, seed++);
          const [g, w] = await both(gpu, async (b) => {
            const a = b.upload(A), bb = b.upload(B), c = b.upload(C0);
            b.matmul(a, bb, c, m, n, k, { transA, transB, accumulate });
            return await dl(b, c);
          });
          compareAll(g, w, `matmul ${m}x${n}x${k} tA=${transA} tB=${transB} acc=${accumulate}`);
        }
      }
    }
  }
});

gpuTest("matmul: operands as views of one buffer (read/write aliasing)", async (gpu) => {
  const m = 33, n = 16, k = 24;
  const A = randomFloats(m * k, 5), B = randomFloats(k * n, 6);
  const [g, w] = await both(gpu, async (b) => {
    const flat = b.alloc(4096);
    const a = b.view(flat, 0, m * k), bb = b.view(flat, 1024, k * n), c = b.view(flat, 2048, m * n);
    b.write(a, A);
    b.write(bb, B);
    b.matmul(a, bb, c, m, n, k);
    b.matmul(a, c, bb, k, n, m, { transA: true, accumulate: true }); // B += Aᵀ·C, all in one buffer
    return await dl(b, flat);
  });
  compareAll(g, w, "aliased matmul", 1e-4, 1e-4);
});

gpuTest("matmul: rows split into chunks under a small binding limit", async (gpu) => {
  const m = 300, n = 8, k = 8; // 300 rows · 32 B = 9600 B > 2048 B: chunks of 64 rows
  for (const transB of [false, true]) {
    const A = randomFloats(m * k, 7), B = randomFloats(k * n, 8);
    const [g, w] = await both(gpu, async (b) => {
      const a = b.upload(A), bb = b.upload(B), c = b.alloc(m * n);
      b.matmul(a, bb, c, m, n, k, { transB });
      return await dl(b, c);
    });
    compareAll(g, w, `chunked matmul transB=${transB}`);
  }
}, { maxBindingBytes: 2048 });

// 77x24 takes the vec4 kernels, 13x7 the scalar ones.
for (const [rows, cols] of [[77, 24], [13, 7]]) {
  gpuTest(
    `elementwise ${rows}x${cols}: add, addBias, biasGrad (accumulating), gelu forward/backward, zero, copy, write`,
    async (gpu) => {
      const n = rows * cols;
      const X = randomFloats(n, 11, -3, 3), Y = randomFloats(n, 12), bias = randomFloats(cols, 13);
      X[0] = 25; // large |x|: tanh must saturate, not produce NaN
      X[1] = -25;
      const db0 = randomFloats(cols, 14);
      const [g, w] = await both(gpu, async (b) => {
        const x = b.upload(X), y = b.upload(Y), s = b.alloc(n), bs = b.upload(bias);
        b.add(x, y, s);
        b.addBias(s, bs, rows, cols);
        const db = b.upload(db0);
        b.biasGrad(s, db, rows, cols);
        const ge = b.alloc(n), gd = b.alloc(n);
        b.geluForward(x, ge);
        b.geluBackward(x, y, gd);
        const cp = b.alloc(n + 64);
        b.copy(ge, cp);
        b.write(cp, new Float32Array([1, 2, 3]), n);
        const z = b.upload(Y);
        b.zero(z);
        return await dl(b, s, db, ge, gd, cp, z);
      });
      compareAll(g, w, "elementwise");
    },
  );
}

gpuTest("elementwise ops chunked under a small binding limit, copy between views of one buffer", async (gpu) => {
  const rows = 100, cols = 24, n = rows * cols; // 9600 B per tensor > 4096 B binding limit
  const X = randomFloats(n, 21), Y = randomFloats(n, 22), bias = randomFloats(cols, 23);
  const P = randomFloats(n, 24), G = randomFloats(n, 25);
  const [g, w] = await both(gpu, async (b) => {
    const x = b.upload(X), y = b.upload(Y), s = b.alloc(n);
    b.add(x, y, s);
    b.addBias(s, b.upload(bias), rows, cols);
    const ge = b.alloc(n);
    b.geluForward(s, ge);
    const p = b.upload(P), m = b.alloc(n), v = b.alloc(n);
    b.adamw(p, b.upload(G), m, v, {
      lr: 0.01,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.1,
      step: 1,
      gradScale: 1,
    });
    const flat = b.alloc(2 * n + 64);
    const lo = b.view(flat, 0, n), hi = b.view(flat, n + 64 - (n % 64), n);
    b.write(lo, X);
    b.copy(lo, hi);
    return [...await dl(b, s, ge, p, m, v, flat), new Float32Array([await b.sumSquares(x)])];
  });
  compareAll(g, w, "chunked elementwise");
}, { maxBindingBytes: 4096 });

gpuTest("layer norm forward and backward (dx overwritten and accumulated, dgamma/dbeta accumulate)", async (gpu) => {
  for (const [rows, cols] of [[50, 64], [7, 12], [300, 20]]) {
    for (const accumulateDx of [false, true]) {
      const X = randomFloats(rows * cols, 31, -2, 2), gamma = randomFloats(cols, 32, 0.5, 1.5);
      const beta = randomFloats(cols, 33), DY = randomFloats(rows * cols, 34);
      const dx0 = randomFloats(rows * cols, 35), dg0 = randomFloats(cols, 36), db0 = randomFloats(cols, 37);
      const [g, w] = await both(gpu, async (b) => {
        const x = b.upload(X), ga = b.upload(gamma), be = b.upload(beta);
        const out = b.alloc(rows * cols), mean = b.alloc(rows), rstd = b.alloc(rows);
        b.layerNormForward({ x, gamma: ga, beta: be, out, mean, rstd, rows, cols, eps: 1e-5 });
        const dx = b.upload(dx0), dg = b.upload(dg0), db = b.upload(db0);
        b.layerNormBackward({
          dy: b.upload(DY),
          x,
          gamma: ga,
          mean,
          rstd,
          dx,
          dgamma: dg,
          dbeta: db,
          rows,
          cols,
          accumulateDx,
        });
        return await dl(b, out, mean, rstd, dx, dg, db);
      });
      compareAll(g, w, `layer norm ${rows}x${cols} acc=${accumulateDx}`, 1e-4, 2e-5);
    }
  }
});

gpuTest("embedding forward and deterministic scatter-add backward with repeated ids", async (gpu) => {
  const rows = 90, hidden = 16, vocab = 11, maxSeq = 40;
  const tokens = randomInts(rows, vocab, 41);
  tokens[5] = tokens[6] = tokens[7] = 3; // repeats
  const positions = Int32Array.from({ length: rows }, (_, i) => i % 37);
  const wte = randomFloats(vocab * hidden, 42), wpe = randomFloats(maxSeq * hidden, 43);
  const D = randomFloats(rows * hidden, 44),
    dwte0 = randomFloats(vocab * hidden, 45),
    dwpe0 = randomFloats(maxSeq * hidden, 46);
  const [g, w] = await both(gpu, async (b) => {
    const tok = b.uploadInt(tokens), pos = b.uploadInt(positions);
    const out = b.alloc(rows * hidden);
    b.embeddingForward({ wte: b.upload(wte), wpe: b.upload(wpe), tokens: tok, positions: pos, out, rows, hidden });
    const dwte = b.upload(dwte0), dwpe = b.upload(dwpe0);
    const args = { dout: b.upload(D), tokens: tok, positions: pos, dwte, dwpe, rows, hidden };
    b.embeddingBackward(args);
    b.embeddingBackward({ ...args, rows: rows - 10 }); // a prefix of the rows
    return await dl(b, out, dwte, dwpe);
  });
  compareAll(g, w, "embedding");
});

for (const headDim of [8, 6]) { // vec4 and scalar units
  gpuTest(`head-major re-layout both ways with a column offset, headDim ${headDim}`, async (gpu) => {
    const tokens = 19, heads = 3, rowStride = 3 * heads * headDim;
    const R = randomFloats(tokens * rowStride, 51), Hm = randomFloats(heads * tokens * headDim, 52);
    const [g, w] = await both(gpu, async (b) => {
      const rows = b.upload(R), head = b.alloc(heads * tokens * headDim);
      const l = { tokens, heads, headDim, rowStride, colOffset: heads * headDim };
      b.toHeadMajor(rows, head, l);
      b.fromHeadMajor(b.upload(Hm), rows, { ...l, colOffset: 2 * heads * headDim });
      return await dl(b, head, rows);
    });
    compareAll(g, w, "head layout", 0, 0);
  });
}

for (const headDim of [16, 6, 32, 64]) {
  gpuTest(`attention forward/backward over packed varlen sequences, headDim ${headDim}`, async (gpu) => {
    const heads = 3, cu = new Int32Array([0, 1, 7, 40, 45, 64]), S = 64, n = heads * S * headDim;
    const Q = randomFloats(n, 61, -2, 2), K = randomFloats(n, 62, -2, 2), V = randomFloats(n, 63);
    const DO = randomFloats(n, 64);
    const scale = 1 / Math.sqrt(headDim);
    const [g, w] = await both(gpu, async (b) => {
      const q = b.upload(Q), k = b.upload(K), v = b.upload(V), cuT = b.uploadInt(cu);
      const out = b.alloc(n), lse = b.alloc(heads * S);
      const common = { q, k, v, cuSeqlens: cuT, heads, seqLen: S, headDim, scale };
      b.attentionForward({ ...common, out, lse });
      const dq = b.alloc(n), dk = b.alloc(n), dv = b.alloc(n);
      b.attentionBackward({ ...common, out, lse, dout: b.upload(DO), dq, dk, dv });
      return await dl(b, out, lse, dq, dk, dv);
    });
    compareAll(g, w, `attention d=${headDim}`, 1e-4, 2e-5);
  });
}

gpuTest("cross-entropy forward and backward with ignored rows and an odd vocabulary", async (gpu) => {
  const rows = 41, vocab = 53;
  const L = randomFloats(rows * vocab, 71, -4, 4);
  const targets = randomInts(rows, vocab, 72);
  targets[0] = -1;
  targets[17] = -1;
  targets[40] = vocab - 1;
  const [g, w] = await both(gpu, async (b) => {
    const logits = b.upload(L), tg = b.uploadInt(targets), losses = b.alloc(rows), dl2 = b.alloc(rows * vocab);
    b.crossEntropyForward({ logits, targets: tg, losses, rows, vocab });
    b.crossEntropyBackward({ logits, targets: tg, dlogits: dl2, rows, vocab, scale: 1 / 39 });
    return await dl(b, losses, dl2);
  });
  compareAll(g, w, "cross-entropy");
});

gpuTest("AdamW: several steps with weight decay and a clipping scale; sumSquares", async (gpu) => {
  const n = 1001; // scalar kernel; the chunked test above runs the vec4 one
  const P = randomFloats(n, 81), grads = [82, 83, 84].map((s) => randomFloats(n, s));
  const [g, w] = await both(gpu, async (b) => {
    const p = b.upload(P), m = b.alloc(n), v = b.alloc(n), gr = b.alloc(n);
    const norms: number[] = [];
    for (let step = 1; step <= 3; step++) {
      b.write(gr, grads[step - 1]);
      norms.push(await b.sumSquares(gr));
      b.adamw(p, gr, m, v, {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weightDecay: 0.1,
        step,
        gradScale: step === 2 ? 0.5 : 1,
      });
    }
    return [...await dl(b, p, m, v), Float32Array.from(norms)];
  });
  compareAll(g, w, "adamw", 1e-4, 1e-6);
});

gpuTest("sumSquares of a large vector matches float64 to 1e-5 relative", async (gpu) => {
  const n = 300_001;
  const X = randomFloats(n, 91);
  let want = 0;
  for (const x of X) want += x * x;
  const t = gpu.upload(X);
  const got = await gpu.sumSquares(t);
  assert(Math.abs(got - want) <= 1e-5 * want, `sumSquares ${got} vs ${want}`);
});
