// planStep: the whole-step planner. Lengths + cluster + cost model in, a validated-shape Plan out. No I/O.

import { UserError } from "../errors.ts";
import type { CostModel } from "./cost_model.ts";
import { PlanContext, type PlannerOptions } from "./context.ts";
import type { MicroBatchPlan, Plan, Strategy } from "./plan_types.ts";
import type { Topology } from "./topology.ts";
import { batchAdaPlan, staticPlan, totalMs } from "./baselines.ts";
import { minMicroBatches, stepLowerBound } from "./bounds.ts";
import { chunk, dealChunks } from "./blaster.ts";
import { microBatchLowerBound, planMicroBatch } from "./microbatch_heuristic.ts";
import { improveAcrossMicroBatches } from "./rebalance.ts";
import { improveWithMilp } from "./milp_improve.ts";

/** Options of one planning call. */
export interface PlanStepOptions extends Partial<PlannerOptions> {
  strategy?: Strategy;
  /**
   * When the request was made (epoch ms: `performance.timeOrigin + performance.now()`); the time limit and
   * `solveMs` count from it, so a worker's queueing and transfer are inside the budget. Default: now.
   */
  startedAt?: number;
  /** Sees each complete plan found before the final one (a worker forwards them as deadline fallbacks). */
  onIncumbent?: (plan: Plan) => void;
}

/** Now as epoch ms, comparable across threads (each thread's `performance.now()` has its own origin). */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Splits sequences into those some group can hold and the rest (error or drop, per options). */
function admit(ctx: PlanContext, lengths: readonly number[]): { seqs: number[]; dropped: number[] } {
  const seqs: number[] = [];
  const dropped: number[] = [];
  lengths.forEach((s, k) => {
    if (!Number.isInteger(s) || s < 1) {
      throw new UserError(`sequence ${k}: length must be a positive integer, got ${s}`);
    }
    (Number.isFinite(ctx.minDegreeOf(s)) ? seqs : dropped).push(k);
  });
  if (dropped.length > 0 && ctx.options.overflow === "error") {
    const k = dropped[0];
    throw new UserError(
      `sequence ${k} has ${lengths[k]} tokens but the largest group of this cluster holds ${ctx.maxSequence} ` +
        `(${ctx.maxDegree} devices x ${ctx.blockCapacity(ctx.maxDegree)} tokens); ${dropped.length} sequence(s) ` +
        `too long. Add devices or memory, use activation checkpointing (model.checkpointing: full), shorten ` +
        `the data, or set planner.overflow: drop`,
    );
  }
  return { seqs, dropped };
}

/** Plans one step. `lengths[k]` is the token count of sequence k; the plan refers to sequences by k. */
export async function planStep(
  lengths: readonly number[],
  topo: Topology,
  cost: CostModel,
  options: PlanStepOptions = {},
): Promise<Plan> {
  const t0 = options.startedAt === undefined ? performance.now() : options.startedAt - performance.timeOrigin;
  const { DEFAULT_PLANNER_OPTIONS } = await import("./context.ts");
  const { startedAt: _s, onIncumbent: offered, ...rest } = options;
  const opts: PlannerOptions = { ...DEFAULT_PLANNER_OPTIONS, ...rest };
  // Incumbents serve a wall-clock deadline; deterministic mode has none.
  const onIncumbent = opts.deterministic ? undefined : offered;
  const strategy = options.strategy ?? "flexsp";
  const ctx = new PlanContext(cost, topo, cost.model.heads, opts);
  const { seqs, dropped } = admit(ctx, lengths);
  const lowerBoundMs = stepLowerBound(ctx, lengths, seqs);
  const base = { strategy, lowerBoundMs, dropped };

  if (strategy === "static") {
    // A static run must hold the model's whole context on every group (else it would fail on the first long
    // sequence that lands on a small-memory one): the smallest degree all of whose blocks do, or the widest
    // degree when none does (longer sequences are dropped).
    const need = ctx.uniformDegreeOf(cost.model.maxSeq);
    const d = opts.staticDegree ?? (Number.isFinite(need) ? need : ctx.degrees[ctx.degrees.length - 1]);
    if (!Number.isFinite(d) || !ctx.degrees.includes(d)) {
      throw new UserError(`static SP degree ${d} is not usable here (allowed: ${ctx.degrees.join(", ")})`);
    }
    // Sequences some group holds but not every degree-d group (a mixed cluster's small-memory ones) are
    // over a static run's limit too: dropped with overflow: drop, like the longer ones.
    const limit = d * ctx.minBlockCapacity(d);
    const over = seqs.filter((k) => lengths[k] > limit);
    const kept = over.length && opts.overflow === "drop" ? seqs.filter((k) => lengths[k] <= limit) : seqs;
    const mbs = staticPlan(ctx, lengths, kept, d);
    if (!mbs) {
      throw new UserError(
        `static SP degree ${d} cannot hold the longest sequence of this batch (${lengths[over[0] ?? seqs[0]]} ` +
          `tokens; its groups hold ${limit}); set planner.static_degree higher or planner.overflow: drop`,
      );
    }
    const extra = kept === seqs ? {} : {
      lowerBoundMs: stepLowerBound(ctx, lengths, kept),
      dropped: [...dropped, ...over].sort((a, b) => a - b),
    };
    return finish({ ...base, ...extra, degree: d, microBatches: mbs, details: { degree: d } }, t0, cost.stepMs);
  }
  if (strategy === "batchada") {
    const r = batchAdaPlan(ctx, lengths, seqs, opts.overflow === "drop");
    if (!r) {
      throw new UserError(
        "no homogeneous SP degree can hold this batch (some sequence fits only the large-memory groups); set " +
          "planner.overflow: drop",
      );
    }
    const kept = new Set(r.dropped);
    const extra = r.dropped.length === 0 ? {} : {
      lowerBoundMs: stepLowerBound(ctx, lengths, seqs.filter((k) => !kept.has(k))),
      dropped: [...dropped, ...r.dropped].sort((a, b) => a - b),
    };
    return finish(
      { ...base, ...extra, degree: r.degree, microBatches: r.microBatches, details: { degree: r.degree } },
      t0,
      cost.stepMs,
    );
  }

  // Stop improving a little before the budget, so the finished plan is returned within it.
  const deadline = opts.deterministic ? Infinity : t0 + 0.9 * opts.timeLimitMs;
  // Every better split is offered at once: under load the search alone can take most of the budget.
  const offer = onIncumbent &&
    ((mbs: MicroBatchPlan[], how: string) =>
      onIncumbent(
        finish({ ...base, microBatches: mbs, details: { chunking: how, incumbent: "search" } }, t0, cost.stepMs),
      ));
  const search = searchMicroBatchSplits(ctx, lengths, seqs, deadline, offer);
  if (!search) throw new UserError("no plan fits this batch in memory (even one sequence per micro-batch)");
  let { microBatches } = search;
  const details: Record<string, string | number | boolean> = { chunking: search.how };
  const before = totalMs(microBatches);
  // Incumbents for a deadline fallback: each improving move, then each micro-batch the MILP improves.
  const post = (mbs: MicroBatchPlan[], phase: string) =>
    onIncumbent?.(finish({ ...base, microBatches: mbs, details: { ...details, incumbent: phase } }, t0, cost.stepMs));
  microBatches = improveAcrossMicroBatches(ctx, lengths, microBatches, {
    deadline,
    onMove: onIncumbent && ((mbs) => post(mbs, "rebalance")),
  });
  details.rebalanceGainMs = round(before - totalMs(microBatches));
  if (opts.milp !== "none") {
    const current = [...microBatches];
    const onSolve = onIncumbent && ((i: number, _before: MicroBatchPlan, r: { plan?: MicroBatchPlan }) => {
      if (r.plan && r.plan.predictedMs < current[i].predictedMs * (1 - 1e-12)) {
        current[i] = r.plan;
        post([...current], "milp");
      }
    });
    const r = await improveWithMilp(ctx, lengths, microBatches, deadline, onSolve);
    microBatches = r.microBatches;
    Object.assign(details, r.details);
  }
  return finish({ ...base, microBatches, details }, t0, cost.stepMs);
}

/** Tries micro-batch counts M_min..M_min+trials-1 with token- and work-balanced chunking; keeps the best. */
export function searchMicroBatchSplits(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  deadline = Infinity,
  onBetter?: (microBatches: MicroBatchPlan[], how: string) => void,
): { microBatches: MicroBatchPlan[]; how: string } | undefined {
  if (seqs.length === 0) return { microBatches: [], how: "empty" };
  const weights: [string, (s: number) => number][] = [
    ["tokens", (s) => s],
    ["work", (s) => ctx.minWork(s)],
  ];
  let best: { microBatches: MicroBatchPlan[]; how: string } | undefined;
  let m = minMicroBatches(ctx, lengths, seqs);
  let tried = 0;
  for (; m <= seqs.length && tried < ctx.options.microBatchTrials; m++) {
    let feasibleAny = false;
    const splits: [string, number[][]][] = [];
    for (const [name, w] of weights) {
      splits.push([name, chunk(lengths, seqs, m, w)], [`dealt-${name}`, dealChunks(lengths, seqs, m, w)]);
    }
    splits.push(["bound-greedy", boundGreedyChunks(ctx, lengths, seqs, m)]);
    for (const [name, chunks] of splits) {
      if (best && performance.now() >= deadline) return best;
      // Skip a split that cannot beat the best one even if each micro-batch met its own bound.
      const bounds = chunks.map((c) => microBatchLowerBound(ctx, lengths, c));
      let rest = bounds.reduce((a, b) => a + b, 0);
      if (best && rest >= totalMs(best.microBatches)) continue;
      const mbs: MicroBatchPlan[] = [];
      let sum = 0;
      for (const [i, c] of chunks.entries()) {
        rest -= bounds[i];
        const mb = planMicroBatch(ctx, lengths, c);
        if (!mb) break;
        mbs.push(mb);
        sum += mb.predictedMs;
        if (best && sum + rest >= totalMs(best.microBatches)) break;
      }
      if (mbs.length !== chunks.length) continue;
      feasibleAny = true;
      if (!best || totalMs(mbs) < totalMs(best.microBatches)) {
        best = { microBatches: mbs, how: `${name}/M=${m}` };
        onBetter?.(best.microBatches, best.how);
      }
    }
    // Infeasible counts (a chunk over memory) do not use up a trial, as in the reference.
    if (feasibleAny || best) tried++;
  }
  return best;
}

/**
 * Deals sequences (longest first) to the micro-batch whose lower bound grows least, keeping each micro-batch
 * within 95% of the cluster's token capacity: balances time, not just tokens, and spreads the long
 * sequences so each one's micro-batch has room for shorter work beside it.
 */
export function boundGreedyChunks(
  ctx: PlanContext,
  lengths: readonly number[],
  seqs: readonly number[],
  m: number,
): number[][] {
  const n = ctx.topo.devices;
  const beta = ctx.cost.minGroupFixedMs(ctx.maxSpeed);
  const capDev = ctx.minCapacity;
  // Devices a sequence ties up: its whole minimal group if it needs more than one device, else its share.
  const demand = (s: number) => {
    const d = ctx.minDegreeOf(s);
    return d > 1 ? d : s / capDev;
  };
  const mbs = Array.from({ length: m }, () => ({ seqs: [] as number[], tau: 0, work: 0, devices: 0 }));
  const est = (tau: number, work: number) => beta + Math.max(tau, work / n);
  for (const k of [...seqs].sort((a, b) => lengths[b] - lengths[a] || a - b)) {
    const s = lengths[k];
    const tau = ctx.bestSeqMs(s);
    const w = ctx.minWork(s);
    const need = demand(s);
    let best = -1;
    let bestKey = [Infinity, Infinity];
    mbs.forEach((mb, i) => {
      const over = Math.max(0, mb.devices + need - n);
      const grow = est(Math.max(mb.tau, tau), mb.work + w) - (mb.seqs.length ? est(mb.tau, mb.work) : 0);
      const key = [over, grow];
      if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) [best, bestKey] = [i, key];
    });
    const mb = mbs[best];
    mb.seqs.push(k);
    mb.tau = Math.max(mb.tau, tau);
    mb.work += w;
    mb.devices += need;
  }
  return mbs.map((mb) => mb.seqs).filter((c) => c.length > 0);
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The plan with its step time: its micro-batches plus the step's fixed cost (`CostModel.stepMs`) when it has any. */
function finish(p: Omit<Plan, "predictedMs" | "solveMs">, t0: number, stepMs: number): Plan {
  const microBatches = p.microBatches.filter((mb) => mb.groups.some((g) => g.sequences.length > 0));
  const predictedMs = totalMs(microBatches) + (microBatches.length ? stepMs : 0);
  return { ...p, microBatches, predictedMs, solveMs: round(performance.now() - t0) };
}
