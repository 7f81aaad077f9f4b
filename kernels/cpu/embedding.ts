// CPU embedding gather (token + position) and its scatter-add backward (float64 accumulation per call).

import type { FArray } from "./matmul.ts";

/** `out[i, :] = wte[tokens[i], :] + wpe[positions[i], :]`. */
export function embeddingForward(
  wte: FArray,
  wpe: FArray,
  tokens: Int32Array,
  positions: Int32Array,
  out: FArray,
  rows: number,
  hidden: number,
): void {
  const V = wte.length / hidden, P = wpe.length / hidden;
  for (let i = 0; i < rows; i++) {
    const t = tokens[i], p = positions[i];
    if (!(t >= 0 && t < V)) throw new Error(`embedding: token id ${t} at row ${i} is outside [0, ${V})`);
    if (!(p >= 0 && p < P)) throw new Error(`embedding: position ${p} at row ${i} is outside [0, ${P})`);
    const to = t * hidden, po = p * hidden, o = i * hidden;
    for (let c = 0; c < hidden; c++) out[o + c] = wte[to + c] + wpe[po + c];
  }
}

/** Scatter-add: `dwte[tokens[i], :] += dout[i, :]`, `dwpe[positions[i], :] += dout[i, :]`, rows in order. */
export function embeddingBackward(
  dout: FArray,
  tokens: Int32Array,
  positions: Int32Array,
  dwte: FArray,
  dwpe: FArray,
  rows: number,
  hidden: number,
): void {
  scatter(dout, tokens, dwte, rows, hidden);
  scatter(dout, positions, dwpe, rows, hidden);
}

function scatter(dout: FArray, ids: Int32Array, dst: FArray, rows: number, hidden: number): void {
  const n = dst.length / hidden;
  const acc = new Float64Array(dst.length);
  const touched = new Uint8Array(n);
  for (let i = 0; i < rows; i++) {
    const id = ids[i];
    if (!(id >= 0 && id < n)) throw new Error(`embedding backward: id ${id} at row ${i} is outside [0, ${n})`);
    touched[id] = 1;
    const o = i * hidden, to = id * hidden;
    for (let c = 0; c < hidden; c++) acc[to + c] += dout[o + c];
  }
  for (let id = 0; id < n; id++) {
    if (!touched[id]) continue;
    const to = id * hidden;
    for (let c = 0; c < hidden; c++) dst[to + c] += acc[to + c];
  }
}
