// CPU LayerNorm forward (saving mean and rstd) and backward (dx, dgamma, dbeta), float64 row statistics.

import type { FArray } from "./matmul.ts";

/** `out = (x - mean)·rstd·gamma + beta` per row of `x [rows, cols]`; saves `mean`, `rstd` `[rows]`. */
export function layerNormForward(
  x: FArray,
  gamma: FArray,
  beta: FArray,
  out: FArray,
  mean: FArray,
  rstd: FArray,
  rows: number,
  cols: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[o + c];
    const mu = s / cols;
    let v = 0;
    for (let c = 0; c < cols; c++) {
      const t = x[o + c] - mu;
      v += t * t;
    }
    const rs = 1 / Math.sqrt(v / cols + eps);
    mean[r] = mu;
    rstd[r] = rs;
    // Use the stored (possibly rounded) statistics so the backward sees exactly what the forward used.
    const muS = mean[r], rsS = rstd[r];
    for (let c = 0; c < cols; c++) out[o + c] = (x[o + c] - muS) * rsS * gamma[c] + beta[c];
  }
}

let scratch = new Float64Array(0);

/** Backward of {@link layerNormForward}: `dx` (overwritten or accumulated), `dgamma`, `dbeta` accumulated. */
export function layerNormBackward(
  dy: FArray,
  x: FArray,
  gamma: FArray,
  mean: FArray,
  rstd: FArray,
  dx: FArray,
  dgamma: FArray,
  dbeta: FArray,
  rows: number,
  cols: number,
  accumulateDx: boolean,
): void {
  if (scratch.length < 2 * cols) scratch = new Float64Array(2 * cols);
  const dg = scratch.subarray(0, cols), db = scratch.subarray(cols, 2 * cols);
  dg.fill(0);
  db.fill(0);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const mu = mean[r], rs = rstd[r];
    let sg = 0, sgx = 0;
    for (let c = 0; c < cols; c++) {
      const xh = (x[o + c] - mu) * rs;
      const d = dy[o + c];
      const g = d * gamma[c];
      sg += g;
      sgx += g * xh;
      dg[c] += d * xh;
      db[c] += d;
    }
    const mg = sg / cols, mgx = sgx / cols;
    for (let c = 0; c < cols; c++) {
      const xh = (x[o + c] - mu) * rs;
      const v = rs * (dy[o + c] * gamma[c] - mg - xh * mgx);
      dx[o + c] = accumulateDx ? dx[o + c] + v : v;
    }
  }
  for (let c = 0; c < cols; c++) dgamma[c] += dg[c], dbeta[c] += db[c];
}
