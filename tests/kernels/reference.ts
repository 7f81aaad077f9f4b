// An independent float64 reference of the GPT forward for the tests: each sequence on its own, naive loops,
// no packing, no backend. Used as the oracle for the model's loss and (through finite differences) gradients.

import type { ParamLayout, ParamSlice } from "../../kernels/model.ts";
import { LN_EPS } from "../../kernels/model.ts";

function mm(x: Float64Array, rows: number, inner: number, w: Float64Array, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let s = 0;
      for (let p = 0; p < inner; p++) s += x[r * inner + p] * w[p * cols + c];
      out[r * cols + c] = s;
    }
  }
  return out;
}

function addBias(x: Float64Array, b: Float64Array, cols: number): void {
  for (let i = 0; i < x.length; i++) x[i] += b[i % cols];
}

/** Naive LayerNorm of each row. */
export function refLayerNorm(x: Float64Array, g: Float64Array, b: Float64Array, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += x[r * cols + c];
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / cols + LN_EPS);
    for (let c = 0; c < cols; c++) out[r * cols + c] = (x[r * cols + c] - mu) * rs * g[c] + b[c];
  }
  return out;
}

/** Naive tanh-GELU. */
export function refGelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Naive causal softmax attention of one sequence for one head: q, k, v `[len, D]` (strided rows). */
export function refAttentionHead(
  q: (i: number, e: number) => number,
  k: (j: number, e: number) => number,
  v: (j: number, e: number) => number,
  len: number,
  D: number,
  scale: number,
): { out: Float64Array; lse: Float64Array } {
  const out = new Float64Array(len * D), lse = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const s: number[] = [];
    for (let j = 0; j <= i; j++) {
      let d = 0;
      for (let e = 0; e < D; e++) d += q(i, e) * k(j, e);
      s.push(d * scale);
    }
    const m = Math.max(...s);
    const z = s.reduce((a, x) => a + Math.exp(x - m), 0);
    lse[i] = m + Math.log(z);
    for (let j = 0; j <= i; j++) {
      const p = Math.exp(s[j] - lse[i]);
      for (let e = 0; e < D; e++) out[i * D + e] += p * v(j, e);
    }
  }
  return { out, lse };
}

/** Σ over sequences of the next-token cross-entropy of the GPT with flat float64 `params` (layout `layout`). */
export function refGptLoss(layout: ParamLayout, params: Float64Array, sequences: Int32Array[]): number {
  const { hidden: H, heads: NH, vocab: V } = layout.shape;
  const D = H / NH;
  const P = (s: ParamSlice) => params.subarray(s.offset, s.offset + s.length);
  let total = 0;
  for (const seq of sequences) {
    const T = seq.length;
    let x = new Float64Array(T * H);
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < H; c++) x[t * H + c] = P(layout.wte)[seq[t] * H + c] + P(layout.wpe)[t * H + c];
    }
    for (const l of layout.layers) {
      const a = refLayerNorm(x, P(l.ln1g), P(l.ln1b), H);
      const qkv = mm(a, T, H, P(l.wqkv), 3 * H);
      addBias(qkv, P(l.bqkv), 3 * H);
      const y = new Float64Array(T * H);
      for (let h = 0; h < NH; h++) {
        const col = (part: number) => (t: number, e: number) => qkv[t * 3 * H + part * H + h * D + e];
        const { out } = refAttentionHead(col(0), col(1), col(2), T, D, 1 / Math.sqrt(D));
        for (let t = 0; t < T; t++) for (let e = 0; e < D; e++) y[t * H + h * D + e] = out[t * D + e];
      }
      const z = mm(y, T, H, P(l.wo), H);
      addBias(z, P(l.bo), H);
      const hres = x.map((v, i) => v + z[i]);
      const b = refLayerNorm(hres, P(l.ln2g), P(l.ln2b), H);
      const u = mm(b, T, H, P(l.wfc), 4 * H);
      addBias(u, P(l.bfc), 4 * H);
      const g = u.map(refGelu);
      const m = mm(g, T, 4 * H, P(l.wproj), H);
      addBias(m, P(l.bproj), H);
      x = hres.map((v, i) => v + m[i]);
    }
    const f = refLayerNorm(x, P(layout.lnfg), P(layout.lnfb), H);
    const wte = P(layout.wte);
    for (let t = 0; t + 1 < T; t++) {
      const logits: number[] = [];
      for (let vv = 0; vv < V; vv++) {
        let s = 0;
        for (let c = 0; c < H; c++) s += f[t * H + c] * wte[vv * H + c];
        logits.push(s);
      }
      const m = Math.max(...logits);
      const lse = m + Math.log(logits.reduce((acc, z) => acc + Math.exp(z - m), 0));
      total += lse - logits[seq[t + 1]];
    }
  }
  return total;
}
