// Baselines: static SP (what DeepSpeed-Ulysses and Megatron CP users run: one degree, every data-parallel group of it
// gets its share of every micro-batch; the micro-batch count from the paper §4.5 `fix_sp_bfd` packing) and BatchAda
// (the best homogeneous degree per batch, `adaptive_bfd`).

import type { PlanContext } from "./context.ts";
import type { Block } from "./placement.ts";
import type { MicroBatchPlan } from "./plan_types.ts";
import { toMicroBatch } from "./microbatch_heuristic.ts";
import { sortedByLength } from "./blaster.ts";

/**
 * Micro-batches of a static degree-d plan, or undefined if some sequence does not fit a degree-d group. As
 * DeepSpeed-Ulysses and Megatron CP run a fixed degree: the cluster is `N/d` data-parallel groups of degree d and
 * every micro-batch gives each group its share of the batch (static SP=1 is plain data parallelism). The
 * micro-batch count is what the memory needs: a best-fit-decreasing packing into bins of 90% of a group's memory
 * (the reference's `fix_sp_bfd`), spread over the groups; the sequences are then dealt most expensive first to the
 * (micro-batch, group) slot that finishes earliest, within the same memory, so the groups share every micro-batch's
 * work by cost. When that dealing does not fit the memory, the packed bins themselves are dealt, heaviest first.
 */
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
  const groups = blocks.length;
  const m = Math.ceil(bins.length / groups);
  const slots = dealByCost(ctx, lengths, order, blocks, m, binCap) ?? dealBins(ctx, lengths, bins, blocks, m);
  return slots.map((mb) => toMicroBatch(ctx, lengths, mb.map((s, i) => ({ block: blocks[i], seqs: s }))));
}

/** A sequence's time on a block (without the group's fixed cost). */
function seqOn(ctx: PlanContext, s: number, b: Block): number {
  return ctx.cost.seqMs(s, b.degree, b.spans, b.speed);
}

/**
 * Deals sequences (most expensive first) to the slot of `m` micro-batches x the blocks whose load after it is
 * least, each slot within `binCap` tokens; undefined when some sequence finds no room.
 */
function dealByCost(
  ctx: PlanContext,
  lengths: readonly number[],
  order: readonly number[],
  blocks: readonly Block[],
  m: number,
  binCap: number,
): number[][][] | undefined {
  const slots = Array.from({ length: m }, () => blocks.map(() => ({ tokens: 0, load: 0, seqs: [] as number[] })));
  const byCost = [...order].sort((a, b) =>
    seqOn(ctx, lengths[b], blocks[0]) - seqOn(ctx, lengths[a], blocks[0]) || a - b
  );
  for (const k of byCost) {
    const s = lengths[k];
    let pick: { tokens: number; load: number; seqs: number[] } | undefined;
    let pickLoad = Infinity;
    for (const mb of slots) {
      mb.forEach((slot, i) => {
        if (slot.tokens + s > binCap) return;
        const load = slot.load + seqOn(ctx, s, blocks[i]) + (slot.seqs.length ? 0 : ctx.cost.beta1 / blocks[i].speed);
        if (load < pickLoad) [pick, pickLoad] = [slot, load];
      });
    }
    if (!pick) return undefined;
    pick.tokens += s;
    pick.load = pickLoad;
    pick.seqs.push(k);
  }
  return slots.map((mb) => mb.map((slot) => slot.seqs));
}

/** The packed bins, heaviest first, `blocks.length` to a micro-batch (the fastest block gets the heaviest). */
function dealBins(
  ctx: PlanContext,
  lengths: readonly number[],
  bins: readonly { seqs: number[] }[],
  blocks: readonly Block[],
  m: number,
): number[][][] {
  const work = (b: { seqs: number[] }) => b.seqs.reduce((t, k) => t + seqOn(ctx, lengths[k], blocks[0]), 0);
  const sorted = [...bins].sort((a, b) => work(b) - work(a));
  return Array.from({ length: m }, (_, i) => blocks.map((_, j) => sorted[i * blocks.length + j]?.seqs ?? []));
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
