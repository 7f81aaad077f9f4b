// Cross-micro-batch improvement: move a sequence from one micro-batch to another when the re-planned pair is
// faster in total. The Blaster's chunking balances tokens, which packs mid-length sequences into
// memory-tight micro-batches that need wide (inter-node) groups; moving some of them next to short
// sequences lets both micro-batches use narrower groups.

import type { PlanContext } from "./context.ts";
import type { MicroBatchPlan } from "./plan_types.ts";
import { microBatchLowerBound, planMicroBatch } from "./microbatch_heuristic.ts";

/** Sequences of a micro-batch. */
function members(mb: MicroBatchPlan): number[] {
  return mb.groups.flatMap((g) => g.sequences);
}

/** Longest sequences of a micro-batch first (moving one of those changes the most). */
function candidates(lengths: readonly number[], seqs: number[], limit: number): number[] {
  return [...seqs].sort((a, b) => lengths[b] - lengths[a] || a - b).slice(0, limit);
}

/** Limits of {@link improveAcrossMicroBatches}. */
export interface RebalanceOptions {
  /** `performance.now()` time by which to stop. */
  deadline: number;
  /** Rounds of moves at most (default 200). */
  maxRounds?: number;
  /** Candidate sequences tried per source micro-batch (default 6). */
  movesPerSource?: number;
  /** Also try swapping two sequences when no single move helps (default false). */
  swaps?: boolean;
  /** Called with the micro-batches after each improving move (deadline incumbents). */
  onMove?: (microBatches: MicroBatchPlan[]) => void;
}

/**
 * Improves a step plan by moving single sequences between micro-batches (first improvement, from the
 * micro-batch furthest above its own lower bound). Stops at a local optimum, after `maxRounds`, or at the
 * deadline. Deterministic given the same deadline behaviour (Infinity in deterministic mode).
 */
export function improveAcrossMicroBatches(
  ctx: PlanContext,
  lengths: readonly number[],
  microBatches: MicroBatchPlan[],
  opts: RebalanceOptions,
): MicroBatchPlan[] {
  const { deadline, maxRounds = 200, movesPerSource = 6, swaps = false, onMove } = opts;
  const mbs = microBatches.map((mb) => ({ plan: mb, seqs: members(mb) }));
  if (mbs.length < 2) return microBatches;
  const excess = (i: number) => mbs[i].plan.predictedMs - microBatchLowerBound(ctx, lengths, mbs[i].seqs);
  for (let round = 0; round < maxRounds && performance.now() < deadline; round++) {
    const sources = mbs.map((_, i) => i).sort((a, b) => excess(b) - excess(a));
    let moved = false;
    for (const i of sources.slice(0, 3)) {
      const a = mbs[i];
      for (const k of candidates(lengths, a.seqs, movesPerSource)) {
        if (performance.now() >= deadline) break;
        const restA = a.seqs.filter((x) => x !== k);
        const newA = restA.length > 0 ? planMicroBatch(ctx, lengths, restA, 1e-3) : undefined;
        if (restA.length > 0 && !newA) continue;
        const tA = newA?.predictedMs ?? 0;
        let best: { j: number; plan: MicroBatchPlan; gain: number } | undefined;
        for (let j = 0; j < mbs.length; j++) {
          if (j === i) continue;
          const b = mbs[j];
          // Quick reject: even a perfect B cannot absorb k if the bound says it gets slower than the gain.
          const lbB = microBatchLowerBound(ctx, lengths, [...b.seqs, k]);
          if (tA + lbB >= a.plan.predictedMs + b.plan.predictedMs) continue;
          const newB = planMicroBatch(ctx, lengths, [...b.seqs, k], 1e-3);
          if (!newB) continue;
          const gain = a.plan.predictedMs + b.plan.predictedMs - tA - newB.predictedMs;
          if (gain > 1e-6 * (a.plan.predictedMs + b.plan.predictedMs) && (!best || gain > best.gain)) {
            best = { j, plan: newB, gain };
          }
        }
        if (best) {
          mbs[best.j] = { plan: best.plan, seqs: [...mbs[best.j].seqs, k] };
          mbs[i] = { plan: newA ?? { groups: [], predictedMs: 0 }, seqs: restA };
          moved = true;
          break;
        }
      }
      if (moved) break;
    }
    if (!moved && swaps && performance.now() < deadline) moved = trySwap(ctx, lengths, mbs, deadline, movesPerSource);
    if (!moved) break;
    onMove?.(mbs.filter((m) => m.seqs.length > 0).map((m) => m.plan));
  }
  return mbs.filter((m) => m.seqs.length > 0).map((m) => m.plan);
}

/**
 * Exchanges one sequence between two micro-batches when that is faster in total (first improvement over
 * micro-batch pairs ordered by their time, long sequences first). Returns whether a swap was made.
 */
function trySwap(
  ctx: PlanContext,
  lengths: readonly number[],
  mbs: { plan: MicroBatchPlan; seqs: number[] }[],
  deadline: number,
  perSide: number,
): boolean {
  const order = mbs.map((_, i) => i).sort((a, b) => mbs[b].plan.predictedMs - mbs[a].plan.predictedMs);
  for (let x = 0; x < order.length; x++) {
    for (let y = x + 1; y < order.length; y++) {
      const [i, j] = [order[x], order[y]];
      const a = mbs[i];
      const b = mbs[j];
      const before = a.plan.predictedMs + b.plan.predictedMs;
      for (const k of candidates(lengths, a.seqs, perSide)) {
        for (const k2 of candidates(lengths, b.seqs, perSide)) {
          if (performance.now() >= deadline) return false;
          if (lengths[k] === lengths[k2]) continue;
          const newSeqsA = [...a.seqs.filter((q) => q !== k), k2];
          const newSeqsB = [...b.seqs.filter((q) => q !== k2), k];
          const lbA = microBatchLowerBound(ctx, lengths, newSeqsA);
          const lbB = microBatchLowerBound(ctx, lengths, newSeqsB);
          if (lbA + lbB >= before) continue;
          const pa = planMicroBatch(ctx, lengths, newSeqsA, 1e-3);
          if (!pa || pa.predictedMs + lbB >= before) continue;
          const pb = planMicroBatch(ctx, lengths, newSeqsB, 1e-3);
          if (!pb || pa.predictedMs + pb.predictedMs >= before * (1 - 1e-6)) continue;
          mbs[i] = { plan: pa, seqs: newSeqsA };
          mbs[j] = { plan: pb, seqs: newSeqsB };
          return true;
        }
      }
    }
  }
  return false;
}
