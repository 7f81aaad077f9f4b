// Per-micro-batch MILP improvement of the combinatorial plan (paper §3.2, bucketed formulation): micro-batches
// furthest above their lower bound are re-solved first, the remaining time split among them by that excess;
// each keeps whichever of its two plans is faster. Deterministic mode (deadline Infinity) uses node limits.

import type { PlanContext } from "./context.ts";
import type { MicroBatchPlan } from "./plan_types.ts";
import { microBatchLowerBound } from "./microbatch_heuristic.ts";
import { loadMilpBackend, type MilpBackend } from "./milp_backends.ts";
import { type MicroBatchMilpOptions, type MicroBatchMilpResult, solveMicroBatchMilp } from "./microbatch_milp.ts";

/** Branch-and-bound nodes per micro-batch in deterministic mode (HiGHS). */
export const DETERMINISTIC_NODE_LIMIT = 100;
/** Largest model (integer variables) solved in deterministic mode: root processing is not node-limited. */
export const DETERMINISTIC_MAX_INTEGERS = 300;
/**
 * glpk has no node limit: in deterministic mode it solves only models this small (integer variables), with
 * no time limit but a safety cap (`GLPK_DETERMINISTIC_CAP_S`) whose hit discards the result.
 */
export const GLPK_DETERMINISTIC_MAX_INTEGERS = 150;
/** Safety wall-clock cap of a deterministic glpk solve (s); a solve that hits it is not used. */
export const GLPK_DETERMINISTIC_CAP_S = 20;
/** Micro-batches within this fraction of their lower bound are left alone. */
const MIN_REL_EXCESS = 1e-4;
/** A solve shorter than this (ms) is not worth starting. */
const MIN_SOLVE_MS = 25;
/** Time kept back before the deadline for expanding the last solution (building is charged to each solve). */
const OVERHEAD_MS = 15;
/** Buckets beyond the reference's rule: rounding may inflate the incumbent by this share of its gap. */
const BUCKET_SLACK = 0.1;

/** Details of the MILP pass, flat for the plan's `details`. */
export type MilpDetails = Record<string, string | number | boolean>;

/**
 * Re-solves micro-batches with the MILP backend while time remains; keeps whichever plan is faster.
 * `onSolve` sees every solve (micro-batch index, its plan before, the result), for benchmarks and reports.
 */
export async function improveWithMilp(
  ctx: PlanContext,
  lengths: readonly number[],
  microBatches: MicroBatchPlan[],
  deadline: number,
  onSolve?: (index: number, before: MicroBatchPlan, result: MicroBatchMilpResult) => void,
): Promise<{ microBatches: MicroBatchPlan[]; details: MilpDetails }> {
  const name = ctx.options.milp;
  if (name === "none") return { microBatches, details: {} };
  const t0 = performance.now();
  const details: MilpDetails = { milpBackend: name };
  let backend: MilpBackend;
  try {
    backend = await loadMilpBackend(name);
  } catch (e) {
    details.milpStatus = `load failed: ${e instanceof Error ? e.message : String(e)}`;
    return { microBatches, details };
  }
  const deterministic = !Number.isFinite(deadline);
  const out = [...microBatches];
  const todo = microBatches.map((mb, i) => {
    const seqs = mb.groups.flatMap((g) => g.sequences);
    return { i, seqs, excess: mb.predictedMs - microBatchLowerBound(ctx, lengths, seqs) };
  }).filter((x) => x.seqs.length > 0 && x.excess > MIN_REL_EXCESS * microBatches[x.i].predictedMs)
    .sort((a, b) => b.excess - a.excess || a.i - b.i);

  const status = new Map<number, string>();
  let solved = 0;
  let improved = 0;
  let gain = 0;
  let worstGap = 0;
  const pass = (list: typeof todo) => {
    for (let j = 0; j < list.length; j++) {
      const { i, seqs } = list[j];
      const options: MicroBatchMilpOptions = { incumbent: out[i], bucketSlack: BUCKET_SLACK };
      if (deterministic) {
        const small = backend.nodeLimits ? DETERMINISTIC_MAX_INTEGERS : GLPK_DETERMINISTIC_MAX_INTEGERS;
        options.maxIntegers = small;
        options.skipAboveIntegers = small;
        if (backend.nodeLimits) options.nodeLimit = DETERMINISTIC_NODE_LIMIT;
        else options.timeLimitS = GLPK_DETERMINISTIC_CAP_S;
      } else {
        // Split what is left by excess over the bound: the furthest micro-batch gets the largest share.
        const left = deadline - performance.now() - OVERHEAD_MS;
        if (left < MIN_SOLVE_MS) {
          for (let x = j; x < list.length; x++) if (!status.has(list[x].i)) status.set(list[x].i, "deadline");
          return;
        }
        let rest = 0;
        for (let x = j; x < list.length; x++) rest += list[x].excess;
        options.timeLimitS = Math.max((left * list[j].excess) / rest, MIN_SOLVE_MS) / 1000;
      }
      const r = solveMicroBatchMilp(ctx, lengths, seqs, backend, options);
      onSolve?.(i, out[i], r);
      status.set(i, r.status);
      if (r.status !== "skipped") solved++;
      if (r.gap !== undefined) worstGap = Math.max(worstGap, r.gap);
      // A deterministic glpk solve that hit its safety cap depends on the machine's speed: not used.
      const capped = deterministic && !backend.nodeLimits && r.status === "time-limit";
      if (!capped && r.plan && r.plan.predictedMs < out[i].predictedMs * (1 - 1e-12)) {
        gain += out[i].predictedMs - r.plan.predictedMs;
        out[i] = r.plan;
        improved++;
      }
    }
  };
  pass(todo);
  // Time left over (some micro-batches finished early): one more pass over those stopped by the time limit.
  if (!deterministic) {
    const again = todo.filter((x) => status.get(x.i) === "time-limit");
    if (again.length > 0 && deadline - performance.now() - OVERHEAD_MS >= 4 * MIN_SOLVE_MS * again.length) {
      for (const x of again) x.excess = out[x.i].predictedMs - microBatchLowerBound(ctx, lengths, x.seqs);
      pass(again);
    }
  }
  const counts = new Map<string, number>();
  for (const s of status.values()) counts.set(s, (counts.get(s) ?? 0) + 1);
  details.milpSolved = solved;
  details.milpImproved = improved;
  details.milpGainMs = Math.round(gain * 1000) / 1000;
  details.milpStatus = [...counts].map(([s, c]) => `${s}:${c}`).join(",") || "none";
  if (worstGap > 0) details.milpWorstGap = Math.round(worstGap * 1e6) / 1e6;
  details.milpMs = Math.round((performance.now() - t0) * 1000) / 1000;
  return { microBatches: out, details };
}
