// CPU cross-entropy over logits with integer targets (-1 = ignored row): per-row losses and dlogits.

import type { FArray } from "./matmul.ts";

function rowLse(logits: FArray, o: number, vocab: number): number {
  let max = -Infinity;
  for (let c = 0; c < vocab; c++) if (logits[o + c] > max) max = logits[o + c];
  let sum = 0;
  for (let c = 0; c < vocab; c++) sum += Math.exp(logits[o + c] - max);
  return max + Math.log(sum);
}

function checkTarget(t: number, r: number, vocab: number): void {
  if (t !== -1 && !(t >= 0 && t < vocab)) {
    throw new Error(`cross-entropy: target ${t} at row ${r} outside [0, ${vocab})`);
  }
}

/** `losses[r] = logsumexp(logits[r]) - logits[r, targets[r]]`, 0 for ignored rows. */
export function crossEntropyForward(
  logits: FArray,
  targets: Int32Array,
  losses: FArray,
  rows: number,
  vocab: number,
): void {
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    checkTarget(t, r, vocab);
    if (t < 0) {
      losses[r] = 0;
      continue;
    }
    const o = r * vocab;
    losses[r] = rowLse(logits, o, vocab) - logits[o + t];
  }
}

/** `dlogits[r] = scale·(softmax(logits[r]) - onehot(targets[r]))`, 0 for ignored rows. */
export function crossEntropyBackward(
  logits: FArray,
  targets: Int32Array,
  dlogits: FArray,
  rows: number,
  vocab: number,
  scale: number,
): void {
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    checkTarget(t, r, vocab);
    const o = r * vocab;
    if (t < 0) {
      dlogits.fill(0, o, o + vocab);
      continue;
    }
    const lse = rowLse(logits, o, vocab);
    for (let c = 0; c < vocab; c++) dlogits[o + c] = scale * Math.exp(logits[o + c] - lse);
    dlogits[o + t] = scale * (Math.exp(logits[o + t] - lse) - 1);
  }
}
