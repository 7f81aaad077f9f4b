// Model FLOPs of a training step from the model shape and the sequence lengths (Megatron-LM's accounting, Narayanan
// et al. 2021, without activation recompute: "model FLOPs", not hardware FLOPs), and the MFU they give against the
// devices' peaks.
//
// Per token and layer the forward pass does 24·h² FLOPs of matmuls (QKV 6h², output projection 2h², MLP 16h²) and
// 4·s·h of attention (QKᵀ and AV over the sequence's s tokens; Megatron counts the full s×s, not the causal half);
// the LM head adds 2·h·V per token. Backward costs twice the forward: per sequence of s tokens,
// 72·L·h²·s + 12·L·h·s² + 6·h·V·s.

import type { ModelShape } from "../../../core/model_shape.ts";

/** Training FLOPs (forward + backward) of one sequence of `s` tokens. */
export function sequenceFlops(m: ModelShape, s: number): number {
  const { layers: L, hidden: h, vocab: V } = m;
  return 72 * L * h * h * s + 12 * L * h * s * s + 6 * h * V * s;
}

/** Training FLOPs of a step: the sum over its sequences (lengths in tokens). */
export function stepFlops(m: ModelShape, lengths: Iterable<number>): number {
  let f = 0;
  for (const s of lengths) f += sequenceFlops(m, s);
  return f;
}

/** Throughput of a step: TFLOP/s per device and MFU (null when a device's peak is unknown). */
export interface StepThroughput {
  /** Model TFLOP/s per device (the step's FLOPs over its wall time, divided by the devices). */
  tflopsPerDevice: number;
  /** Model FLOPs utilisation: achieved FLOP/s over the sum of the devices' peaks; null where a peak is unknown. */
  mfu: number | null;
}

/** TFLOP/s per device and MFU of a step that did `flops` in `ms` on devices with these peaks (TFLOP/s; null unknown). */
export function stepThroughput(flops: number, ms: number, peaks: (number | null)[]): StepThroughput {
  const perS = flops / Math.max(1e-9, ms / 1000);
  const n = Math.max(1, peaks.length);
  const known = peaks.length > 0 && peaks.every((p) => p !== null && p > 0);
  const sum = known ? (peaks as number[]).reduce((a, b) => a + b, 0) : 0;
  return { tflopsPerDevice: perS / n / 1e12, mfu: known ? perS / (sum * 1e12) : null };
}
