// CPU elementwise and layout kernels: residual add, bias add and bias gradient, GELU (tanh form) forward and
// backward, and the token-major <-> head-major re-layouts used around attention.

import type { FArray } from "./matmul.ts";

const GELU_C = Math.sqrt(2 / Math.PI);

/** `out = a + b` over `n` elements. */
export function add(a: FArray, b: FArray, out: FArray, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/** In place `x[r, c] += bias[c]`. */
export function addBias(x: FArray, bias: FArray, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) x[o + c] += bias[c];
  }
}

let scratch = new Float64Array(0);

/** `dbias[c] += Σ_r dy[r, c]`, summed in float64. */
export function biasGrad(dy: FArray, dbias: FArray, rows: number, cols: number): void {
  if (scratch.length < cols) scratch = new Float64Array(cols);
  const s = scratch.subarray(0, cols);
  s.fill(0);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) s[c] += dy[o + c];
  }
  for (let c = 0; c < cols; c++) dbias[c] += s[c];
}

/** GELU, tanh approximation, over `n` elements. */
export function geluForward(x: FArray, out: FArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    out[i] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
  }
}

/** `dx = dy · gelu'(x)` over `n` elements. */
export function geluBackward(x: FArray, dy: FArray, dx: FArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    const t = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
    const dt = (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * v * v);
    dx[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * dt);
  }
}

/** Layout of a head re-layout call (see `HeadLayoutArgs` in `../backend.ts`). */
export interface HeadLayout {
  tokens: number;
  heads: number;
  headDim: number;
  rowStride: number;
  colOffset: number;
}

/** `head[h, t, e] = rows[t, colOffset + h·headDim + e]`. */
export function toHeadMajor(rows: FArray, head: FArray, l: HeadLayout): void {
  const { tokens: T, heads, headDim: D, rowStride, colOffset } = l;
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < T; t++) {
      const src = t * rowStride + colOffset + h * D, dst = (h * T + t) * D;
      for (let e = 0; e < D; e++) head[dst + e] = rows[src + e];
    }
  }
}

/** `rows[t, colOffset + h·headDim + e] = head[h, t, e]`. */
export function fromHeadMajor(head: FArray, rows: FArray, l: HeadLayout): void {
  const { tokens: T, heads, headDim: D, rowStride, colOffset } = l;
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < T; t++) {
      const dst = t * rowStride + colOffset + h * D, src = (h * T + t) * D;
      for (let e = 0; e < D; e++) rows[dst + e] = head[src + e];
    }
  }
}
