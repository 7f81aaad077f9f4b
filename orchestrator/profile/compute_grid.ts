// The grids the profiler measures: packed batches (sequence count x length) for the compute fit, with held-out
// points between the fitted lengths; message sizes for the all-to-all; lengths for the per-degree validation.

import type { GridPoint } from "../config/profile_doc.ts";

/** Size presets of a profile run. */
export type GridSize = "quick" | "default" | "large";

/** Everything that sets how much a profile measures. */
export interface GridOptions {
  /** Compute grid lengths (tokens per sequence). */
  lengths: number[];
  /** Sequence counts per packed batch. */
  counts: number[];
  /** Largest packed batch (tokens). */
  maxTokens: number;
  /** Timed repeats of every point. */
  repeats: number;
  /** Untimed runs before timing. */
  warmup: number;
  /** All-to-all message sizes (bytes per rank per call). */
  alltoallSizes: number[];
  alltoallIters: number;
  /** Point-to-point sizes: [latency probe, bandwidth probe] (bytes). */
  p2pSizes: [number, number];
  p2pIters: number;
  /** Lengths of the per-degree validation (empty: skip it). */
  validateLengths: number[];
  validateRepeats: number;
}

/** Rounds to a multiple of 8, at least 8. */
const r8 = (x: number) => Math.max(8, Math.round(x / 8) * 8);

/** Default grid options for a model context `maxSeq` and a preset size. */
export function defaultGrid(maxSeq: number, size: GridSize): GridOptions {
  const maxTokens = maxSeq;
  const steps = size === "quick" ? 3 : size === "default" ? 5 : 7;
  const lengths: number[] = [];
  for (let k = steps - 1; k >= 0; k--) lengths.push(r8(maxTokens / 2 ** k));
  const counts = size === "quick" ? [1, 2] : size === "default" ? [1, 2, 4] : [1, 2, 4, 8];
  return {
    lengths: [...new Set(lengths)],
    counts,
    maxTokens,
    repeats: size === "quick" ? 2 : size === "default" ? 3 : 5,
    warmup: size === "quick" ? 1 : 2,
    alltoallSizes: size === "quick"
      ? [16 << 10, 128 << 10, 1 << 20]
      : size === "default"
      ? [8 << 10, 32 << 10, 128 << 10, 512 << 10, 2 << 20]
      : [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20],
    alltoallIters: size === "quick" ? 4 : size === "default" ? 8 : 20,
    // Large enough that a token-bucket burst (or a TCP window) does not hide the link's rate.
    p2pSizes: [64, size === "large" ? 16 << 20 : 4 << 20],
    p2pIters: size === "quick" ? 4 : 8,
    validateLengths: size === "quick"
      ? [r8(maxSeq / 2), maxSeq]
      : [r8(maxSeq / 8), r8(maxSeq / 4), r8(maxSeq / 2), maxSeq],
    validateRepeats: size === "quick" ? 1 : 2,
  };
}

/**
 * The compute grid: every (count, length) of `opts` whose packed size fits `maxTokens`, then held-out points
 * between them (3/4, 3/8 of the longest length alone, 2 x 3/16 and 3 x 5/16 of it) that the fit never sees.
 */
export function computeGrid(opts: GridOptions): GridPoint[] {
  const out: GridPoint[] = [];
  const seen = new Set<string>();
  const add = (count: number, length: number, heldOut: boolean) => {
    const key = `${count}x${length}`;
    if (length < 8 || count * length > opts.maxTokens || seen.has(key)) return;
    seen.add(key);
    out.push({ count, length, heldOut });
  };
  for (const length of [...opts.lengths].sort((a, b) => a - b)) {
    for (const count of [...opts.counts].sort((a, b) => a - b)) add(count, length, false);
  }
  const top = Math.max(...opts.lengths);
  for (const [count, frac] of [[1, 3 / 4], [1, 3 / 8], [2, 3 / 16], [3, 5 / 16]]) add(count, r8(top * frac), true);
  return out;
}

/** A deterministic shuffle (mulberry32-seeded Fisher-Yates). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Parses a comma-separated list of positive integers (flag values). */
export function parseIntList(name: string, text: string): number[] {
  const out = text.split(",").map((t) => Number(t.trim()));
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`--${name}: expected comma-separated positive integers, got "${text}"`);
  }
  return out;
}
