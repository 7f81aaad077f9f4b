// CPU causal attention over packed variable-length sequences in head-major layout [heads, S, headDim]:
// forward saves the per-row log-sum-exp; backward recomputes probabilities from it (FlashAttention-style).
// Query rows go in blocks of 4 and keys in blocks of 4, so the score, P·V and gradient products run as small
// register-blocked matrix products with float64 accumulators.

import type { FArray } from "./matmul.ts";

let pool = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (pool.length < n) pool = new Float64Array(Math.max(n, 2 * pool.length));
  return pool;
}

/** Shapes of one attention call (see `AttentionArgs` in `../backend.ts`). */
export interface AttnDims {
  heads: number;
  seqLen: number;
  headDim: number;
  scale: number;
}

/** Throws unless `cu` is a valid cumulative-lengths array ending at `seqLen`; returns the longest segment. */
export function checkCuSeqlens(cu: Int32Array, seqLen: number): number {
  if (cu.length < 2 || cu[0] !== 0 || cu[cu.length - 1] !== seqLen) {
    throw new Error(`attention: cuSeqlens must run from 0 to seqLen ${seqLen}`);
  }
  let max = 0;
  for (let s = 1; s < cu.length; s++) {
    if (cu[s] <= cu[s - 1]) throw new Error("attention: cuSeqlens must be strictly increasing");
    max = Math.max(max, cu[s] - cu[s - 1]);
  }
  return max;
}

// out[r·st + j] = Σ_e A[ao_r + e] · B[bb + j·D + e] for r < 4, j < cnt (rows of A at ao0..ao3, rows of B from bb).
function rowsDotRows(
  A: FArray,
  ao0: number,
  ao1: number,
  ao2: number,
  ao3: number,
  B: FArray,
  bb: number,
  D: number,
  cnt: number,
  out: Float64Array,
  st: number,
): void {
  const cnt4 = cnt - (cnt % 4);
  for (let j = 0; j < cnt4; j += 4) {
    const b0 = bb + j * D, b1 = b0 + D, b2 = b1 + D, b3 = b2 + D;
    let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
    let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
    for (let e = 0; e < D; e++) {
      const x0 = A[ao0 + e], x1 = A[ao1 + e], x2 = A[ao2 + e], x3 = A[ao3 + e];
      const y0 = B[b0 + e], y1 = B[b1 + e], y2 = B[b2 + e], y3 = B[b3 + e];
      c00 += x0 * y0;
      c01 += x0 * y1;
      c02 += x0 * y2;
      c03 += x0 * y3;
      c10 += x1 * y0;
      c11 += x1 * y1;
      c12 += x1 * y2;
      c13 += x1 * y3;
      c20 += x2 * y0;
      c21 += x2 * y1;
      c22 += x2 * y2;
      c23 += x2 * y3;
      c30 += x3 * y0;
      c31 += x3 * y1;
      c32 += x3 * y2;
      c33 += x3 * y3;
    }
    out[j] = c00, out[j + 1] = c01, out[j + 2] = c02, out[j + 3] = c03;
    out[st + j] = c10, out[st + j + 1] = c11, out[st + j + 2] = c12, out[st + j + 3] = c13;
    out[2 * st + j] = c20, out[2 * st + j + 1] = c21, out[2 * st + j + 2] = c22, out[2 * st + j + 3] = c23;
    out[3 * st + j] = c30, out[3 * st + j + 1] = c31, out[3 * st + j + 2] = c32, out[3 * st + j + 3] = c33;
  }
  for (let j = cnt4; j < cnt; j++) {
    const b0 = bb + j * D;
    let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (let e = 0; e < D; e++) {
      const y = B[b0 + e];
      c0 += A[ao0 + e] * y, c1 += A[ao1 + e] * y, c2 += A[ao2 + e] * y, c3 += A[ao3 + e] * y;
    }
    out[j] = c0, out[st + j] = c1, out[2 * st + j] = c2, out[3 * st + j] = c3;
  }
}

// acc[r·D + e] = Σ_{j < cnt} P[r·st + j] · B[bb + j·D + e] for r < 4, e < D.
function probsTimesRows(
  P: Float64Array,
  st: number,
  B: FArray,
  bb: number,
  D: number,
  cnt: number,
  acc: Float64Array,
): void {
  const D4 = D - (D % 4);
  for (let e = 0; e < D4; e += 4) {
    let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
    let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
    let bo = bb + e;
    for (let j = 0; j < cnt; j++) {
      const p0 = P[j], p1 = P[st + j], p2 = P[2 * st + j], p3 = P[3 * st + j];
      const y0 = B[bo], y1 = B[bo + 1], y2 = B[bo + 2], y3 = B[bo + 3];
      c00 += p0 * y0;
      c01 += p0 * y1;
      c02 += p0 * y2;
      c03 += p0 * y3;
      c10 += p1 * y0;
      c11 += p1 * y1;
      c12 += p1 * y2;
      c13 += p1 * y3;
      c20 += p2 * y0;
      c21 += p2 * y1;
      c22 += p2 * y2;
      c23 += p2 * y3;
      c30 += p3 * y0;
      c31 += p3 * y1;
      c32 += p3 * y2;
      c33 += p3 * y3;
      bo += D;
    }
    acc[e] = c00, acc[e + 1] = c01, acc[e + 2] = c02, acc[e + 3] = c03;
    acc[D + e] = c10, acc[D + e + 1] = c11, acc[D + e + 2] = c12, acc[D + e + 3] = c13;
    acc[2 * D + e] = c20, acc[2 * D + e + 1] = c21, acc[2 * D + e + 2] = c22, acc[2 * D + e + 3] = c23;
    acc[3 * D + e] = c30, acc[3 * D + e + 1] = c31, acc[3 * D + e + 2] = c32, acc[3 * D + e + 3] = c33;
  }
  for (let e = D4; e < D; e++) {
    let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (let j = 0; j < cnt; j++) {
      const y = B[bb + j * D + e];
      c0 += P[j] * y, c1 += P[st + j] * y, c2 += P[2 * st + j] * y, c3 += P[3 * st + j] * y;
    }
    acc[e] = c0, acc[D + e] = c1, acc[2 * D + e] = c2, acc[3 * D + e] = c3;
  }
}

// G[j·D + e] += Σ_r W[r·st + j] · X[xo_r + e] for j < cnt, e < D (rank-4 update of a float64 [len, D] panel);
// the 4x4 block of X for one e-block stays in locals while j streams.
function rank4Update(
  W: Float64Array,
  st: number,
  X: FArray,
  xo0: number,
  xo1: number,
  xo2: number,
  xo3: number,
  D: number,
  cnt: number,
  G: Float64Array,
): void {
  const D4 = D - (D % 4);
  for (let e = 0; e < D4; e += 4) {
    const x00 = X[xo0 + e], x01 = X[xo0 + e + 1], x02 = X[xo0 + e + 2], x03 = X[xo0 + e + 3];
    const x10 = X[xo1 + e], x11 = X[xo1 + e + 1], x12 = X[xo1 + e + 2], x13 = X[xo1 + e + 3];
    const x20 = X[xo2 + e], x21 = X[xo2 + e + 1], x22 = X[xo2 + e + 2], x23 = X[xo2 + e + 3];
    const x30 = X[xo3 + e], x31 = X[xo3 + e + 1], x32 = X[xo3 + e + 2], x33 = X[xo3 + e + 3];
    let go = e;
    for (let j = 0; j < cnt; j++) {
      const w0 = W[j], w1 = W[st + j], w2 = W[2 * st + j], w3 = W[3 * st + j];
      G[go] += w0 * x00 + w1 * x10 + w2 * x20 + w3 * x30;
      G[go + 1] += w0 * x01 + w1 * x11 + w2 * x21 + w3 * x31;
      G[go + 2] += w0 * x02 + w1 * x12 + w2 * x22 + w3 * x32;
      G[go + 3] += w0 * x03 + w1 * x13 + w2 * x23 + w3 * x33;
      go += D;
    }
  }
  for (let e = D4; e < D; e++) {
    const x0 = X[xo0 + e], x1 = X[xo1 + e], x2 = X[xo2 + e], x3 = X[xo3 + e];
    for (let j = 0; j < cnt; j++) G[j * D + e] += W[j] * x0 + W[st + j] * x1 + W[2 * st + j] * x2 + W[3 * st + j] * x3;
  }
}

/** Forward: `out`, `lse` from `q`, `k`, `v` (all head-major). */
export function attentionForward(
  q: FArray,
  k: FArray,
  v: FArray,
  out: FArray,
  lse: FArray,
  cu: Int32Array,
  d: AttnDims,
): void {
  const { heads, seqLen: S, headDim: D, scale } = d;
  const maxLen = checkCuSeqlens(cu, S);
  const st = maxLen + 4;
  const buf = scratch(4 * st + 4 * D);
  const sc = buf.subarray(0, 4 * st), acc = buf.subarray(4 * st, 4 * st + 4 * D);
  const o = [0, 0, 0, 0];
  for (let h = 0; h < heads; h++) {
    const base = h * S * D;
    for (let s = 0; s + 1 < cu.length; s++) {
      const s0 = cu[s], len = cu[s + 1] - s0, kb = base + s0 * D;
      for (let i0 = 0; i0 < len; i0 += 4) {
        const nr = Math.min(4, len - i0), cnt = i0 + nr;
        for (let r = 0; r < 4; r++) o[r] = kb + (i0 + Math.min(r, nr - 1)) * D;
        rowsDotRows(q, o[0], o[1], o[2], o[3], k, kb, D, cnt, sc, st);
        for (let r = 0; r < 4; r++) {
          const ro = r * st, last = i0 + r; // keys 0..last are visible to row i0 + r
          if (r >= nr) {
            sc.fill(0, ro, ro + cnt);
            continue;
          }
          let max = -Infinity;
          for (let j = 0; j <= last; j++) {
            const x = sc[ro + j] * scale;
            sc[ro + j] = x;
            if (x > max) max = x;
          }
          let sum = 0;
          for (let j = 0; j <= last; j++) {
            const p = Math.exp(sc[ro + j] - max);
            sc[ro + j] = p;
            sum += p;
          }
          const inv = 1 / sum;
          for (let j = 0; j <= last; j++) sc[ro + j] *= inv;
          for (let j = last + 1; j < cnt; j++) sc[ro + j] = 0;
          lse[h * S + s0 + last] = max + Math.log(sum);
        }
        probsTimesRows(sc, st, v, kb, D, cnt, acc);
        for (let r = 0; r < nr; r++) {
          const oo = kb + (i0 + r) * D;
          for (let e = 0; e < D; e++) out[oo + e] = acc[r * D + e];
        }
      }
    }
  }
}

/** Backward: `dq`, `dk`, `dv` (overwritten) from the forward's tensors and `dout`. */
export function attentionBackward(
  q: FArray,
  k: FArray,
  v: FArray,
  out: FArray,
  dout: FArray,
  lse: FArray,
  dq: FArray,
  dk: FArray,
  dv: FArray,
  cu: Int32Array,
  d: AttnDims,
): void {
  const { heads, seqLen: S, headDim: D, scale } = d;
  const maxLen = checkCuSeqlens(cu, S);
  const st = maxLen + 4, P = maxLen * D;
  const buf = scratch(8 * st + 4 * D + 2 * P);
  const pr = buf.subarray(0, 4 * st), ds = buf.subarray(4 * st, 8 * st);
  const acc = buf.subarray(8 * st, 8 * st + 4 * D);
  const dK = buf.subarray(8 * st + 4 * D, 8 * st + 4 * D + P),
    dV = buf.subarray(8 * st + 4 * D + P, 8 * st + 4 * D + 2 * P);
  const o = [0, 0, 0, 0];
  for (let h = 0; h < heads; h++) {
    const base = h * S * D;
    for (let s = 0; s + 1 < cu.length; s++) {
      const s0 = cu[s], len = cu[s + 1] - s0, kb = base + s0 * D;
      dK.fill(0, 0, len * D);
      dV.fill(0, 0, len * D);
      for (let i0 = 0; i0 < len; i0 += 4) {
        const nr = Math.min(4, len - i0), cnt = i0 + nr;
        for (let r = 0; r < 4; r++) o[r] = kb + (i0 + Math.min(r, nr - 1)) * D;
        rowsDotRows(q, o[0], o[1], o[2], o[3], k, kb, D, cnt, pr, st); // raw scores
        rowsDotRows(dout, o[0], o[1], o[2], o[3], v, kb, D, cnt, ds, st); // dp_ij = dout_i · v_j
        for (let r = 0; r < 4; r++) {
          const ro = r * st, last = i0 + r;
          if (r >= nr) {
            pr.fill(0, ro, ro + cnt);
            ds.fill(0, ro, ro + cnt);
            continue;
          }
          const qo = o[r];
          let di = 0;
          for (let e = 0; e < D; e++) di += dout[qo + e] * out[qo + e];
          const l = lse[h * S + s0 + last];
          for (let j = 0; j <= last; j++) {
            const p = Math.exp(pr[ro + j] * scale - l);
            pr[ro + j] = p;
            ds[ro + j] = p * (ds[ro + j] - di) * scale;
          }
          for (let j = last + 1; j < cnt; j++) pr[ro + j] = 0, ds[ro + j] = 0;
        }
        probsTimesRows(ds, st, k, kb, D, cnt, acc); // dq_i = Σ_j ds_ij k_j
        for (let r = 0; r < nr; r++) {
          const qo = kb + (i0 + r) * D;
          for (let e = 0; e < D; e++) dq[qo + e] = acc[r * D + e];
        }
        rank4Update(ds, st, q, o[0], o[1], o[2], o[3], D, cnt, dK); // dk_j += Σ_i ds_ij q_i
        rank4Update(pr, st, dout, o[0], o[1], o[2], o[3], D, cnt, dV); // dv_j += Σ_i p_ij dout_i
      }
      for (let x = 0; x < len * D; x++) dk[kb + x] = dK[x], dv[kb + x] = dV[x];
    }
  }
}
