// Gradient checks of every CPU backend op against float64 central differences (on the float64 build of the same
// kernels), forward checks against naive float64 references, and float32-vs-float64 agreement.

import { CpuBackend } from "../../kernels/cpu/backend.ts";
import type { Tensor } from "../../kernels/backend.ts";
import { Prng } from "../../kernels/model.ts";
import { assert, assertArrayClose, assertEquals } from "../assert.ts";
import { refAttentionHead, refGelu, refLayerNorm } from "./reference.ts";

const f64 = new CpuBackend({ precision: "f64" });
const f32 = new CpuBackend();
const rng = new Prng(42);
const rand = (n: number, s = 1) => Float64Array.from({ length: n }, () => rng.normal() * s);
const up = (x: Float64Array) => f64.uploadF64(x);
const dn = (t: Tensor) => f64.downloadF64(t);

/**
 * Checks analytic gradients of L = Σ w ⊙ forward(xs) against central differences in float64 on up to `samples`
 * coordinates of each input. `forward` runs the op on fresh float64 tensors; `backward` returns dL/dx for each x.
 */
function gradCheck(
  name: string,
  xs: Float64Array[],
  forward: (xs: Float64Array[]) => Float64Array,
  backward: (xs: Float64Array[], w: Float64Array) => Float64Array[],
  samples = 24,
): void {
  const out0 = forward(xs);
  const w = rand(out0.length);
  const loss = (v: Float64Array[]) => forward(v).reduce((a, y, i) => a + y * w[i], 0);
  const grads = backward(xs, w);
  assertEquals(grads.length, xs.length, `${name}: gradient count`);
  const h = 1e-6;
  xs.forEach((x, xi) => {
    const idx = x.length <= samples ? [...x.keys()] : Array.from({ length: samples }, () => rng.int(x.length));
    for (const i of idx) {
      const keep = x[i];
      x[i] = keep + h;
      const lp = loss(xs);
      x[i] = keep - h;
      const lm = loss(xs);
      x[i] = keep;
      const num = (lp - lm) / (2 * h);
      const ana = grads[xi][i];
      if (!(Math.abs(num - ana) <= 1e-6 + 1e-5 * Math.abs(num))) {
        throw new Error(`${name}: d/dx${xi}[${i}] analytic ${ana} vs numeric ${num}`);
      }
    }
  });
}

function naiveMatmul(a: Float64Array, b: Float64Array, m: number, n: number, k: number, ta: boolean, tb: boolean) {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  }
  return c;
}

Deno.test("matmul: all transpose cases and accumulate match naive float64 (f64 and f32 storage)", () => {
  for (const [m, n, k] of [[1, 1, 1], [7, 9, 5], [13, 6, 300], [33, 17, 520]]) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = rand(m * k), b = rand(k * n), c0 = rand(m * n);
        const want = naiveMatmul(a, b, m, n, k, ta, tb);
        for (const be of [f64, f32]) {
          const A = be.uploadF64(a), B = be.uploadF64(b), C = be.uploadF64(c0);
          be.matmul(A, B, C, m, n, k, { transA: ta, transB: tb });
          const tol = be === f64 ? 1e-12 : 2e-5 * Math.sqrt(k);
          assertArrayClose(be.downloadF64(C), want, tol, tol, `matmul ${m}x${n}x${k} ${ta}/${tb} ${be.precision}`);
          be.matmul(A, B, C, m, n, k, { transA: ta, transB: tb, accumulate: true });
          assertArrayClose(
            be.downloadF64(C),
            want.map((x) => 2 * x),
            2 * tol,
            tol,
            `matmul accumulate ${be.precision}`,
          );
        }
      }
    }
  }
});

Deno.test("matmul: gradient check of C = A·B, A·Bᵀ, Aᵀ·B through the backward products the model uses", () => {
  const [m, n, k] = [5, 7, 6];
  for (const [ta, tb] of [[false, false], [false, true], [true, false]]) {
    gradCheck(
      `matmul ${ta}/${tb}`,
      [rand(m * k), rand(k * n)],
      ([a, b]) => {
        const C = f64.alloc(m * n);
        f64.matmul(up(a), up(b), C, m, n, k, { transA: ta, transB: tb });
        return dn(C);
      },
      ([a, b], w) => {
        const dA = f64.alloc(m * k), dB = f64.alloc(k * n), W = up(w), A = up(a), B = up(b);
        // dop(A) = W·op(B)ᵀ, dop(B) = op(A)ᵀ·W, mapped back through the storage transposes.
        if (!ta) f64.matmul(W, B, dA, m, k, n, { transB: !tb });
        else f64.matmul(B, W, dA, k, m, n, { transA: tb, transB: true });
        if (!tb) f64.matmul(A, W, dB, k, n, m, { transA: !ta });
        else f64.matmul(W, A, dB, n, k, m, { transA: true, transB: ta });
        return [dn(dA), dn(dB)];
      },
    );
  }
});

Deno.test("bias add and bias gradient", () => {
  const [r, c] = [6, 5];
  gradCheck(
    "addBias",
    [rand(r * c), rand(c)],
    ([x, b]) => {
      const X = up(x);
      f64.addBias(X, up(b), r, c);
      return dn(X);
    },
    (_xs, w) => {
      const db = up(rand(c)), before = dn(db);
      f64.biasGrad(up(w), db, r, c);
      return [w.slice(), dn(db).map((v, i) => v - before[i])]; // biasGrad accumulates
    },
  );
});

Deno.test("residual add, zero, copy, views and write", () => {
  const a = rand(128), b = rand(128);
  const out = f64.alloc(128);
  f64.add(up(a), up(b), out);
  assertArrayClose(dn(out), a.map((x, i) => x + b[i]), 0, 0, "add");
  const parent = f32.alloc(256);
  const v = f32.view(parent, 64, 64);
  f32.write(v, new Float32Array(64).fill(3));
  f32.copy(f32.upload(new Float32Array(10).fill(7)), v);
  const p = f32.downloadF64(parent);
  assertEquals(p[63], 0);
  assertEquals(p[64], 7);
  assertEquals(p[74], 3);
  assertEquals(p[128], 0);
  f32.zero(v);
  assertEquals(f32.downloadF64(parent)[74], 0);
  let threw = false;
  try {
    f32.view(parent, 10, 4);
  } catch {
    threw = true;
  }
  assert(threw, "unaligned view must throw");
});

Deno.test("layer norm: forward matches naive, gradient check of x, gamma, beta, accumulateDx", () => {
  const [r, c] = [5, 12];
  const x0 = rand(r * c, 2), g0 = rand(c), b0 = rand(c);
  for (const be of [f64, f32]) {
    const out = be.alloc(r * c), mean = be.alloc(r), rstd = be.alloc(r);
    be.layerNormForward({
      x: be.uploadF64(x0),
      gamma: be.uploadF64(g0),
      beta: be.uploadF64(b0),
      out,
      mean,
      rstd,
      rows: r,
      cols: c,
      eps: 1e-5,
    });
    const tol = be === f64 ? 1e-12 : 1e-5;
    assertArrayClose(be.downloadF64(out), refLayerNorm(x0, g0, b0, c), tol, tol, `layernorm ${be.precision}`);
  }
  const fwd = ([x, g, b]: Float64Array[]) => {
    const out = f64.alloc(r * c);
    f64.layerNormForward({
      x: up(x),
      gamma: up(g),
      beta: up(b),
      out,
      mean: f64.alloc(r),
      rstd: f64.alloc(r),
      rows: r,
      cols: c,
      eps: 1e-5,
    });
    return dn(out);
  };
  gradCheck("layerNorm", [x0, g0, b0], fwd, ([x, g, b], w) => {
    const out = f64.alloc(r * c), mean = f64.alloc(r), rstd = f64.alloc(r), X = up(x), G = up(g);
    f64.layerNormForward({ x: X, gamma: G, beta: up(b), out, mean, rstd, rows: r, cols: c, eps: 1e-5 });
    const prior = rand(r * c);
    const dx = up(prior), dg = f64.alloc(c), db = f64.alloc(c);
    const args = { dy: up(w), x: X, gamma: G, mean, rstd, dx, dgamma: dg, dbeta: db, rows: r, cols: c };
    f64.layerNormBackward({ ...args, accumulateDx: true });
    const acc = dn(dx).map((v, i) => v - prior[i]);
    f64.layerNormBackward({ ...args, accumulateDx: false });
    assertArrayClose(dn(dx), acc, 1e-12, 1e-9, "accumulateDx");
    return [dn(dx), dn(dg).map((v) => v / 2), dn(db).map((v) => v / 2)]; // dgamma/dbeta accumulated twice
  });
});

Deno.test("GELU: forward matches naive, gradient check", () => {
  const x0 = rand(40, 2);
  const y = f64.alloc(40);
  f64.geluForward(up(x0), y);
  assertArrayClose(dn(y), x0.map(refGelu), 1e-14, 1e-12, "gelu");
  gradCheck("gelu", [x0], ([x]) => {
    const o = f64.alloc(x.length);
    f64.geluForward(up(x), o);
    return dn(o);
  }, ([x], w) => {
    const dx = f64.alloc(x.length);
    f64.geluBackward(up(x), up(w), dx);
    return [dn(dx)];
  });
});

Deno.test("embedding: gather forward and scatter-add backward (repeated ids)", () => {
  const [V, P, H, rows] = [5, 6, 4, 9];
  const tokens = f64.uploadInt(Int32Array.from([1, 3, 1, 0, 4, 1, 2, 3, 3]));
  const positions = f64.uploadInt(Int32Array.from([0, 1, 2, 0, 1, 2, 3, 4, 5]));
  gradCheck("embedding", [rand(V * H), rand(P * H)], ([wte, wpe]) => {
    const out = f64.alloc(rows * H);
    f64.embeddingForward({ wte: up(wte), wpe: up(wpe), tokens, positions, out, rows, hidden: H });
    return dn(out);
  }, (_xs, w) => {
    const dwte = f64.alloc(V * H), dwpe = f64.alloc(P * H);
    f64.embeddingBackward({ dout: up(w), tokens, positions, dwte, dwpe, rows, hidden: H });
    return [dn(dwte), dn(dwpe)];
  });
});

Deno.test("head layout: toHeadMajor / fromHeadMajor permute exactly", () => {
  const [T, NH, D] = [3, 2, 4], stride = 3 * NH * D;
  const rows = rand(T * stride);
  const head = f64.alloc(NH * T * D);
  f64.toHeadMajor(up(rows), head, { tokens: T, heads: NH, headDim: D, rowStride: stride, colOffset: NH * D });
  const hm = dn(head);
  for (let h = 0; h < NH; h++) {
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < D; e++) assertEquals(hm[(h * T + t) * D + e], rows[t * stride + NH * D + h * D + e]);
    }
  }
  const back = up(new Float64Array(T * stride));
  f64.fromHeadMajor(head, back, { tokens: T, heads: NH, headDim: D, rowStride: stride, colOffset: NH * D });
  const b = dn(back);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < stride; c++) {
      const inside = c >= NH * D && c < 2 * NH * D;
      assertEquals(b[t * stride + c], inside ? rows[t * stride + c] : 0);
    }
  }
});

function attnCase(cu: number[], heads: number, D: number) {
  const S = cu[cu.length - 1];
  return { cu: Int32Array.from(cu), S, heads, D, n: heads * S * D, scale: 1 / Math.sqrt(D) };
}

Deno.test("attention: varlen causal forward (out, lse) matches naive per-sequence softmax", () => {
  for (const c of [attnCase([0, 1, 6, 15, 16], 2, 5), attnCase([0, 37], 1, 8), attnCase([0, 4, 8], 3, 4)]) {
    const q = rand(c.n), k = rand(c.n), v = rand(c.n);
    for (const be of [f64, f32]) {
      const out = be.alloc(c.n), lse = be.alloc(c.heads * c.S);
      be.attentionForward({
        q: be.uploadF64(q),
        k: be.uploadF64(k),
        v: be.uploadF64(v),
        out,
        lse,
        cuSeqlens: be.uploadInt(c.cu),
        heads: c.heads,
        seqLen: c.S,
        headDim: c.D,
        scale: c.scale,
      });
      const o = be.downloadF64(out), l = be.downloadF64(lse);
      const tol = be === f64 ? 1e-12 : 3e-6;
      for (let h = 0; h < c.heads; h++) {
        for (let s = 0; s + 1 < c.cu.length; s++) {
          const s0 = c.cu[s],
            len = c.cu[s + 1] - s0,
            at = (x: Float64Array) => (i: number, e: number) => x[(h * c.S + s0 + i) * c.D + e];
          const ref = refAttentionHead(at(q), at(k), at(v), len, c.D, c.scale);
          const base = (h * c.S + s0) * c.D;
          assertArrayClose(o.subarray(base, base + len * c.D), ref.out, tol, tol, `attention out ${be.precision}`);
          assertArrayClose(
            l.subarray(h * c.S + s0, h * c.S + s0 + len),
            ref.lse,
            tol,
            tol,
            `attention lse ${be.precision}`,
          );
        }
      }
    }
  }
});

Deno.test("attention: gradient check of q, k, v over packed sequences", () => {
  for (const c of [attnCase([0, 1, 6, 13], 2, 5), attnCase([0, 9], 1, 8)]) {
    const cuSeqlens = f64.uploadInt(c.cu);
    const dims = { cuSeqlens, heads: c.heads, seqLen: c.S, headDim: c.D, scale: c.scale };
    const fwd = ([q, k, v]: Float64Array[]) => {
      const out = f64.alloc(c.n), lse = f64.alloc(c.heads * c.S);
      f64.attentionForward({ q: up(q), k: up(k), v: up(v), out, lse, ...dims });
      return dn(out);
    };
    gradCheck("attention", [rand(c.n), rand(c.n), rand(c.n)], fwd, ([q, k, v], w) => {
      const Q = up(q), K = up(k), V = up(v), out = f64.alloc(c.n), lse = f64.alloc(c.heads * c.S);
      f64.attentionForward({ q: Q, k: K, v: V, out, lse, ...dims });
      const dq = f64.alloc(c.n), dk = f64.alloc(c.n), dv = f64.alloc(c.n);
      f64.attentionBackward({ q: Q, k: K, v: V, out, lse, dout: up(w), dq, dk, dv, ...dims });
      return [dn(dq), dn(dk), dn(dv)];
    }, 40);
  }
});

Deno.test("attention: bad cuSeqlens is a clear error", () => {
  const t = f64.alloc(8);
  let msg = "";
  try {
    f64.attentionForward({
      q: t,
      k: t,
      v: t,
      out: f64.alloc(8),
      lse: f64.alloc(4),
      cuSeqlens: f64.uploadInt(Int32Array.from([0, 3])),
      heads: 1,
      seqLen: 4,
      headDim: 2,
      scale: 1,
    });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/cuSeqlens/.test(msg), `got "${msg}"`);
});

Deno.test("cross-entropy: forward matches naive, gradient check, ignored rows", () => {
  const [rows, V] = [5, 7];
  const targetsArr = Int32Array.from([3, -1, 0, 6, -1]);
  const targets = f64.uploadInt(targetsArr);
  const logits0 = rand(rows * V, 3);
  const losses = f64.alloc(rows);
  f64.crossEntropyForward({ logits: up(logits0), targets, losses, rows, vocab: V });
  const l = dn(losses);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(logits0.subarray(r * V, (r + 1) * V));
    const lse = Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
    assertArrayClose([l[r]], [targetsArr[r] < 0 ? 0 : lse - row[targetsArr[r]]], 1e-12, 1e-12, "ce loss");
  }
  gradCheck("crossEntropy", [logits0], ([x]) => {
    const o = f64.alloc(rows);
    f64.crossEntropyForward({ logits: up(x), targets, losses: o, rows, vocab: V });
    return dn(o);
  }, ([x], w) => {
    // dL/dlogits[r] = w[r]·(softmax - onehot); the op takes one scale, so run it per row.
    const g = new Float64Array(rows * V);
    for (let r = 0; r < rows; r++) {
      const d = f64.alloc(rows * V);
      f64.crossEntropyBackward({ logits: up(x), targets, dlogits: d, rows, vocab: V, scale: w[r] });
      g.set(dn(d).subarray(r * V, (r + 1) * V), r * V);
    }
    return [g];
  });
});

Deno.test("AdamW matches the PyTorch formula over 3 steps; sumSquares", async () => {
  const n = 100;
  const p0 = rand(n), o = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  const P = up(p0), M = f64.alloc(n), Vv = f64.alloc(n);
  const p = p0.slice(), m = new Float64Array(n), v = new Float64Array(n);
  for (let step = 1; step <= 3; step++) {
    const g = rand(n);
    f64.adamw(P, up(g), M, Vv, { ...o, step, gradScale: 0.5 });
    for (let i = 0; i < n; i++) {
      const gi = g[i] * 0.5;
      p[i] *= 1 - o.lr * o.weightDecay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
      p[i] -= o.lr * (m[i] / (1 - o.beta1 ** step)) / (Math.sqrt(v[i] / (1 - o.beta2 ** step)) + o.eps);
    }
  }
  assertArrayClose(dn(P), p, 1e-14, 1e-12, "adamw params");
  assertArrayClose(dn(M), m, 1e-15, 1e-12, "adamw m");
  const x = rand(1000);
  assertArrayClose([await f64.sumSquares(up(x))], [x.reduce((a, y) => a + y * y, 0)], 0, 1e-12, "sumSquares");
});
