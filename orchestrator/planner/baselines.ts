// Baselines: static SP with best-fit-decreasing packing (what DeepSpeed-Ulysses users do, paper §4.5
// `fix_sp_bfd`) and BatchAda (the best homogeneous degree per batch, `adaptive_bfd`).

import type { PlanContext } from "./context.ts";
import type { Block } from "./placement.ts";
import type { MicroBatchPlan } from "./plan_types.ts";
import { toMicroBatch } from "./microbatch_heuristic.ts";
import { sortedByLength } from "./blaster.ts";

/** Micro-batches of a static degree-d plan, or undefined if some sequence does not fit a degree-d group. */
export function staticPlan(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  d: number,
): MicroBatchPlan[] | undefined {
  // The aligned degree-d blocks of the cluster, fastest first.
  const alloc = ctx.newAllocator();
  const blocks: Block[] = [];
  for (let b = alloc.peek(d); b; b = alloc.peek(d)) {
    alloc.take(b);
    blocks.push(b);
  }
  if (blocks.length === 0) return undefined;
  const cap = Math.min(...blocks.map((b) => b.capacity)) * d;
  const order = sortedByLength(lengths, seqs);
  if (order.length === 0) return [];
  if (lengths[order[0]] > cap) return undefined;
  // Best-fit decreasing into bins of 90% of the memory (at least the longest sequence), as the reference does.
  const binCap = Math.max(0.9 * cap, lengths[order[0]]);
  const bins: { tokens: number; seqs: number[] }[] = [];
  for (const k of order) {
    let best = -1;
    for (let i = 0; i < bins.length; i++) {
      const room = binCap - bins[i].tokens;
      if (room >= lengths[k] && (best < 0 || room < binCap - bins[best].tokens)) best = i;
    }
    if (best < 0) bins.push({ tokens: lengths[k], seqs: [k] });
    else {
      bins[best].tokens += lengths[k];
      bins[best].seqs.push(k);
    }
  }
  // Every `blocks.length` bins form a micro-batch; the last one steals a sequence per empty group.
  const perMb = blocks.length;
  const mbs: { tokens: number; seqs: number[] }[][] = [];
  for (let i = 0; i < bins.length; i += perMb) mbs.push(bins.slice(i, i + perMb));
  const last = mbs[mbs.length - 1];
  if (mbs.length > 1) {
    const donors = mbs.slice(0, -1).flat().filter((b) => b.seqs.length > 1);
    while (last.length < perMb && donors.length > 0) {
      const donor = donors.pop()!;
      const k = donor.seqs.pop()!;
      donor.tokens -= lengths[k];
      last.push({ tokens: lengths[k], seqs: [k] });
    }
  }
  return mbs.map((bs) => toMicroBatch(ctx, lengths, bs.map((b, i) => ({ block: blocks[i], seqs: b.seqs }))));
}

/** Total predicted time of micro-batches. */
export function totalMs(mbs: readonly MicroBatchPlan[]): number {
  return mbs.reduce((t, mb) => t + mb.predictedMs, 0);
}

/**
 * BatchAda: the static plan of the degree that is fastest for this batch. With `drop`, a degree may leave out
 * the sequences its smallest groups cannot hold (on a mixed cluster, ones only the large-memory groups hold);
 * the degree dropping fewest wins, then the fastest.
 */
export function batchAdaPlan(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  drop = false,
): { degree: number; microBatches: MicroBatchPlan[]; dropped: number[] } | undefined {
  let best: { degree: number; microBatches: MicroBatchPlan[]; dropped: number[] } | undefined;
  for (const d of ctx.degrees) {
    const limit = d * ctx.minBlockCapacity(d);
    const over = seqs.filter((k) => lengths[k] > limit);
    if (over.length > 0 && !drop) continue;
    const mbs = staticPlan(ctx, lengths, seqs.filter((k) => lengths[k] <= limit), d);
    if (!mbs) continue;
    const better = !best || over.length < best.dropped.length ||
      (over.length === best.dropped.length && totalMs(mbs) < totalMs(best.microBatches));
    if (better) best = { degree: d, microBatches: mbs, dropped: over };
  }
  return best;
}
