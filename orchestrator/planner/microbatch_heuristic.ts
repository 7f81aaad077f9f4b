// The fast combinatorial planner for one micro-batch: binary search on the makespan, each sequence (longest
// first) into the least-loaded feasible group of the smallest degree, opening aligned blocks on demand.

import type { Block } from "./placement.ts";
import type { PlanContext } from "./context.ts";
import type { GroupPlan, MicroBatchPlan } from "./plan_types.ts";
import { MinHeap } from "./min_heap.ts";

interface OpenGroup {
  block: Block;
  /** ms including β1. */
  load: number;
  tokens: number;
  seqs: number[];
}

/** Variants of the greedy; the binary search runs each and keeps the best. */
export type PackOrder = "smallest-degree-first" | "existing-groups-first";

/** Packs sequence indices (any order) with a makespan target; returns groups or undefined if infeasible. */
export function packAtTarget(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  target: number,
  order: PackOrder,
  floor = 1,
): OpenGroup[] | undefined {
  const { cost, degrees } = ctx;
  const alloc = ctx.newAllocator();
  const heaps = new Map<number, MinHeap<OpenGroup>>(degrees.map((d) => [d, new MinHeap<OpenGroup>((g) => g.load)]));
  const groups: OpenGroup[] = [];
  const sorted = [...seqs].sort((a, b) => lengths[b] - lengths[a] || a - b);

  const tryExisting = (k: number, d: number): boolean => {
    const heap = heaps.get(d)!;
    if (heap.size === 0) return false;
    const s = lengths[k];
    const fits = (g: OpenGroup) =>
      g.load + cost.seqMs(s, d, g.block.spans, g.block.speed) <= target && g.tokens + s <= d * g.block.capacity;
    const top = heap.peek()!;
    if (fits(top)) {
      add(top, k);
      heap.fixTop();
      return true;
    }
    // The least-loaded group lacks memory: look for any group that fits (rare).
    const all = heap.values();
    for (let i = 0; i < all.length; i++) {
      if (fits(all[i])) {
        add(all[i], k);
        heap.fixAt(i);
        return true;
      }
    }
    return false;
  };
  const add = (g: OpenGroup, k: number) => {
    g.load += cost.seqMs(lengths[k], g.block.degree, g.block.spans, g.block.speed);
    g.tokens += lengths[k];
    g.seqs.push(k);
  };
  const tryOpen = (k: number, d: number): boolean => {
    const s = lengths[k];
    if (alloc.freeRanks < d) return false;
    const block = alloc.peek(d, Math.ceil(s / d));
    if (!block) return false;
    const load = cost.groupFixedMs(d, block.speed) + cost.seqMs(s, d, block.spans, block.speed);
    if (load > target) return false;
    alloc.take(block);
    const g: OpenGroup = { block, load, tokens: s, seqs: [k] };
    groups.push(g);
    heaps.get(d)!.push(g);
    return true;
  };

  for (const k of sorted) {
    const dMin = ctx.minDegreeOf(lengths[k]);
    if (!Number.isFinite(dMin)) return undefined;
    const usable = degrees.filter((d) => d >= dMin);
    // New groups are at least `floor` wide: larger groups waste less memory on big sequences.
    const openable = usable.filter((d) => d >= floor);
    let placed = false;
    if (order === "smallest-degree-first") {
      for (const d of usable) {
        if ((placed = tryExisting(k, d) || (d >= floor && tryOpen(k, d)))) break;
      }
    } else {
      for (const d of usable) if ((placed = tryExisting(k, d))) break;
      if (!placed) { for (const d of openable) if ((placed = tryOpen(k, d))) break; }
    }
    if (!placed && openable.length === 0) {
      // The floor is wider than any block: fall back to the widest allowed degree.
      placed = tryOpen(k, usable[usable.length - 1]);
    }
    if (!placed) return undefined;
  }
  return groups;
}

/** Lower bound on a micro-batch's makespan: the slowest sequence at its best degree, and work over devices. */
export function microBatchLowerBound(ctx: PlanContext, lengths: readonly number[], seqs: readonly number[]): number {
  if (seqs.length === 0) return 0;
  let longest = 0;
  let work = 0;
  let speedWork = 0;
  let tokens = 0;
  for (const k of seqs) {
    longest = Math.max(longest, ctx.bestSeqMs(lengths[k]));
    work += ctx.minWork(lengths[k]);
    speedWork += ctx.speedWork(lengths[k]);
    tokens += lengths[k];
  }
  const beta = ctx.cost.minGroupFixedMs(ctx.maxSpeed);
  return Math.max(beta + Math.max(longest, work / ctx.topo.devices), ctx.weightedBound(tokens, speedWork, 1));
}

/** Turns open groups into a micro-batch plan, covering idle ranks with empty groups. */
export function toMicroBatch(
  ctx: PlanContext,
  lengths: readonly number[],
  groups: readonly { block: Block; seqs: number[] }[],
): MicroBatchPlan {
  const used = ctx.newAllocator();
  const out: GroupPlan[] = [];
  for (const g of groups) {
    used.take(g.block);
    const ls = g.seqs.map((k) => lengths[k]);
    out.push({
      degree: g.block.degree,
      ranks: Array.from({ length: g.block.degree }, (_, i) => g.block.start + i),
      sequences: [...g.seqs],
      lengths: ls,
      predictedMs: ctx.cost.groupMs(ls, g.block.degree, g.block.spans, g.block.speed),
      spansNodes: g.block.spans,
    });
  }
  for (const b of used.remainder()) {
    out.push({
      degree: b.degree,
      ranks: Array.from({ length: b.degree }, (_, i) => b.start + i),
      sequences: [],
      lengths: [],
      predictedMs: 0,
      spansNodes: b.spans,
    });
  }
  out.sort((a, b) => a.ranks[0] - b.ranks[0]);
  return { groups: out, predictedMs: out.reduce((m, g) => Math.max(m, g.predictedMs), 0) };
}

/** Best combinatorial plan of one micro-batch, or undefined when some sequence fits no group. */
export function planMicroBatch(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  relTol = 1e-4,
): MicroBatchPlan | undefined {
  if (seqs.length === 0) return toMicroBatch(ctx, lengths, []);
  let tokens = 0;
  for (const k of seqs) tokens += lengths[k];
  if (tokens > ctx.capacity.reduce((a, b) => a + b, 0)) return undefined;
  const lb = microBatchLowerBound(ctx, lengths, seqs);
  let best: MicroBatchPlan | undefined;
  for (const floor of ctx.degrees) {
    for (const order of ["smallest-degree-first", "existing-groups-first"] as PackOrder[]) {
      // A target worse than the best so far is not worth bisecting.
      const cap = best ? best.predictedMs : Infinity;
      // Find a feasible target by growing from the bound, then bisect.
      let lo = lb * (1 - 1e-9);
      let hi = lb;
      let found: OpenGroup[] | undefined;
      for (let i = 0; i < 60 && !found && lo < cap; i++) {
        found = packAtTarget(ctx, lengths, seqs, Math.min(hi, cap), order, floor);
        if (!found) [lo, hi] = [Math.min(hi, cap), hi * 1.5];
        else hi = Math.min(hi, cap);
      }
      if (!found) continue;
      while (hi - lo > relTol * hi) {
        const mid = (lo + hi) / 2;
        const r = packAtTarget(ctx, lengths, seqs, mid, order, floor);
        if (r) [hi, found] = [mid, r];
        else lo = mid;
      }
      const mb = toMicroBatch(ctx, lengths, found);
      if (!best || mb.predictedMs < best.predictedMs) best = mb;
    }
  }
  return best;
}
