// CPU AdamW update (decoupled weight decay, PyTorch semantics) and the sum of squares for gradient clipping.

import type { AdamWOptions } from "../backend.ts";
import type { FArray } from "./matmul.ts";

/** In place update of `p`, `m`, `v` from `g`. */
export function adamw(p: FArray, g: FArray, m: FArray, v: FArray, n: number, o: AdamWOptions): void {
  const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, step, gradScale } = o;
  if (!(step >= 1)) throw new Error(`adamw: step must be >= 1, got ${step}`);
  const bc1 = 1 - Math.pow(b1, step), bc2 = 1 - Math.pow(b2, step);
  const decay = 1 - lr * wd;
  for (let i = 0; i < n; i++) {
    const gi = g[i] * gradScale;
    const mi = b1 * m[i] + (1 - b1) * gi;
    const vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - lr * (mi / bc1) / (Math.sqrt(vi / bc2) + eps);
  }
}

/** `Σ x²` in float64. */
export function sumSquares(x: FArray, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * x[i];
  return s;
}
