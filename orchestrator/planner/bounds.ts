// Lower bounds on the step time of any valid plan (used to report the gap of a plan to optimal).

import type { PlanContext } from "./context.ts";

/** Fewest micro-batches the memory allows: total tokens over the cluster's token capacity. */
export function minMicroBatches(ctx: PlanContext, lengths: readonly number[], seqs: readonly number[]): number {
  let tokens = 0;
  for (const k of seqs) tokens += lengths[k];
  const cap = ctx.capacity.reduce((a, b) => a + b, 0);
  return Math.max(1, Math.ceil(tokens / cap));
}

/**
 * A lower bound on Σ_mb max_g time: every micro-batch pays β1; a micro-batch's makespan is at least its work
 * (device-ms at each sequence's cheapest degree) over the devices; and the micro-batch holding the longest
 * sequence lasts at least that sequence's time at the degree it runs on, while its other devices absorb at
 * most the rest of the work, and the tokens it cannot hold (beyond the cluster's memory) run in the other
 * micro-batches at no less than their least work. Minimised over the degrees the longest sequence may use. Capacities are per device
 * (a group holds d times its smallest device's), speeds optimistic (the fastest device's) except in the
 * speed-weighted work term, which holds for any mix of speeds.
 */
export function stepLowerBound(ctx: PlanContext, lengths: readonly number[], seqs: readonly number[]): number {
  if (seqs.length === 0) return 0;
  const n = ctx.topo.devices;
  const beta = ctx.cost.minGroupFixedMs(ctx.maxSpeed);
  const m = minMicroBatches(ctx, lengths, seqs);
  let longest = seqs[0];
  let work = 0;
  let speedWork = 0;
  for (const k of seqs) {
    work += ctx.minWork(lengths[k]);
    speedWork += ctx.speedWork(lengths[k]);
    if (lengths[k] > lengths[longest]) longest = k;
  }
  const s = lengths[longest];
  const rest = work - ctx.minWork(s);
  const speedRest = speedWork - ctx.speedWork(s);
  // The longest sequence's micro-batch holds at most the cluster's memory, so the others hold at least the
  // remaining tokens, and take at least the least work that many tokens can carry (fractional, cheapest
  // work per token first), over the devices (or speed-weighted, over the total speed).
  let tokens = 0;
  for (const k of seqs) tokens += lengths[k];
  const total = ctx.capacity.reduce((a, b) => a + b, 0);
  const others = seqs.filter((k) => k !== longest);
  const outside = Math.max(
    leastWork(lengths, others, tokens - total, (x) => ctx.minWork(x)) / n,
    leastWork(lengths, others, tokens - total, (x) => ctx.speedWork(x)) / ctx.speedSum,
  );
  let best = Infinity;
  for (const d of ctx.degrees) {
    if (s > d * ctx.blockCapacity(d)) continue;
    const tau = ctx.cost.seqMs(s, d, ctx.degreeSpans(d), ctx.degreeSpeed(d));
    // Speed-weighted: the longest sequence's group ties up at least its block's speeds for tau; the rest of
    // the speed-weighted work fits in what the other devices of its micro-batch and the other micro-batches do.
    const weightedRest = (ctx.minBlockSpeedSum(d) * tau + speedRest) / ctx.speedSum;
    best = Math.min(best, Math.max(tau + outside, (d * tau + rest) / n, weightedRest));
  }
  // Sequences over half the cluster's memory can share neither a group nor a micro-batch with each other:
  // each has a micro-batch of its own lasting at least its best time; other work fills their idle devices
  // or adds to the total.
  const huge = seqs.filter((k) => 2 * lengths[k] > total);
  let hugeBound = 0;
  if (huge.length > 1) {
    let taus = 0;
    for (const k of huge) taus += ctx.bestSeqMs(lengths[k]);
    hugeBound = Math.max(m, huge.length) * beta + taus + Math.max(0, work - n * taus) / n;
  }
  // On devices of different speeds, the speed-weighted work over the cluster's total speed (see speedWork).
  const weighted = ctx.weightedBound(tokens, speedWork, m);
  // Every step with a sequence pays the step's fixed cost once.
  return Math.max(m * beta + best, hugeBound, weighted) + ctx.cost.stepMs;
}

/**
 * Least total work of sequences from `seqs` holding at least `tokens` tokens, with sequences taken in part
 * (a fractional knapsack: cheapest work per token first), so no whole-sequence choice needs less. 0 if
 * `tokens` <= 0.
 */
export function leastWork(
  lengths: readonly number[],
  seqs: readonly number[],
  tokens: number,
  workOf: (s: number) => number,
): number {
  if (tokens <= 0) return 0;
  const items = seqs.map((k) => ({ s: lengths[k], w: workOf(lengths[k]) }))
    .filter((x) => Number.isFinite(x.w))
    .sort((a, b) => a.w / a.s - b.w / b.s);
  let left = tokens;
  let work = 0;
  for (const x of items) {
    if (left <= 0) break;
    const take = Math.min(1, left / x.s);
    work += take * x.w;
    left -= take * x.s;
  }
  return work;
}
