// Real training steps for proving the fit: planner plans (or synthetic per-degree plans) turned into executor step
// plans on synthetic tokens, run on the profiling executors with learning rate 0 (parameters stay as they are), and
// measured the way `launch` measures them: a group's time is the slowest of its ranks' micro-batch times, a step's
// the slowest rank's step time. Plans are converted and recorded by launch's own code (orchestrator/ledger/).

import type { ExecutorStepPlan } from "../../core/protocol.ts";
import type { Batch } from "../data/sampler.ts";
import type { LedgerRecord } from "../ledger/ledger.ts";
import { type StepDone, stepRecord, toExecutorPlan } from "../ledger/step_record.ts";
import type { Plan } from "../planner/plan_types.ts";
import { blockSpeed, spansNodes, type Topology } from "../planner/topology.ts";
import type { CostModel } from "../planner/cost_model.ts";
import type { ExecutorPool } from "../cluster/executor_pool.ts";
import { onAll } from "./pool_calls.ts";
import { median } from "./fit.ts";
import type { ValidationSection } from "../config/profile_doc.ts";

/** Measured ms per rank: per micro-batch and for the whole step. */
export interface StepMeasurement {
  mb: Map<number, number[]>;
  stepMs: Map<number, number>;
  lossSum: number;
  tokens: number;
  /** Every rank's `step_done`, indexed by rank. */
  done: StepDone[];
}

/** Sends one step plan to every rank and collects the measurements. */
export async function runStep(
  pool: ExecutorPool,
  plan: ExecutorStepPlan,
  timeoutMs: number,
  what: string,
): Promise<StepMeasurement> {
  const done = await onAll(pool, { cmd: { type: "step", plan }, type: "step_done", timeoutMs, what });
  const mb = new Map<number, number[]>();
  const stepMs = new Map<number, number>();
  let lossSum = 0, tokens = 0;
  for (const [rank, ev] of done) {
    mb.set(rank, ev.microBatches.map((m) => m.ms));
    stepMs.set(rank, ev.ms);
    for (const m of ev.microBatches) {
      lossSum += m.lossSum;
      tokens += m.tokens;
    }
  }
  return { mb, stepMs, lossSum, tokens, done: [...done.values()] };
}

/** Slowest rank of `ranks` in micro-batch `i`. */
function groupMs(m: StepMeasurement, ranks: number[], i: number): number {
  return Math.max(...ranks.map((r) => m.mb.get(r)![i]));
}

/** Ids of synthetic sequences: unique per step and position, so every rank reads the same tokens. */
const seqId = (step: number, k: number) => step * 100_000 + k;

/** A synthetic batch for a plan of `lengths`: ids unique per step and position, every sequence read from offset 0. */
export function syntheticBatch(step: number, lengths: readonly number[]): Batch {
  return { ids: lengths.map((_, k) => seqId(step, k)), offsets: lengths.map(() => 0), lengths: [...lengths], epoch: 0 };
}

/**
 * Runs a planner plan the way `launch` does (its plan conversion, learning rate 0) and returns launch's ledger
 * record of it (predicted and measured per group, micro-batch and step).
 */
export async function runPlannedStep(
  pool: ExecutorPool,
  step: number,
  plan: Plan,
  lengths: readonly number[],
  timeoutMs: number,
): Promise<LedgerRecord> {
  const batch = syntheticBatch(step, lengths);
  const t0 = performance.now();
  const m = await runStep(pool, toExecutorPlan(step, plan, batch, 0, pool.worldSize), timeoutMs, `step ${step}`);
  const wallMs = performance.now() - t0;
  return stepRecord(step, plan, batch, 0, m.done, {
    wallMs,
    dispatchMs: 0,
    solveMs: plan.solveMs,
    planWaitMs: 0,
    solveHidden: false,
    planSource: "solved",
  });
}

/** Aligned blocks of `degree` ranks covering as many ranks as fit. */
export function alignedGroups(devices: number, degree: number): number[][] {
  return Array.from(
    { length: Math.floor(devices / degree) },
    (_, k) => Array.from({ length: degree }, (_, j) => k * degree + j),
  );
}

/** A measured validation point: the median time of the groups of one degree and placement at one length. */
export interface MeasuredPoint {
  degree: number;
  spans: boolean;
  length: number;
  measuredMs: number;
  /** First rank of each measured group (for the group's speed). */
  starts: number[];
}

/** What {@link validateDegrees} measures. */
export interface ValidateOptions {
  degrees: number[];
  /** Validation lengths (tokens); every aligned group gets one sequence of each per repeat. */
  lengths: number[];
  repeats: number;
  timeoutMs: number;
  /** Called as each degree starts. */
  onDegree?: (d: number) => void;
  /** Step number of the first validation step (default 1 000 000, apart from training steps). */
  firstStep?: number;
}

/**
 * Per-degree validation: for each degree, one step whose micro-batches each give every aligned group one sequence
 * of a validation length (a first, untimed micro-batch warms up). Returns measured group times (the slowest rank of
 * each group, median over groups and repeats).
 */
export async function validateDegrees(
  pool: ExecutorPool,
  topo: Topology,
  o: ValidateOptions,
): Promise<{ points: MeasuredPoint[]; stepOverheadMs: number[] }> {
  const { degrees, lengths, repeats, timeoutMs, onDegree = () => {}, firstStep = 1_000_000 } = o;
  const points: MeasuredPoint[] = [];
  const stepOverheadMs: number[] = [];
  let step = firstStep;
  for (const d of degrees) {
    onDegree(d);
    const groups = alignedGroups(topo.devices, d);
    const covered = groups.length * d;
    const order = [lengths[0], ...Array.from({ length: repeats }, () => lengths).flat()];
    let targets = 0;
    const microBatches = order.map((len, i) => ({
      groups: [
        ...groups.map((ranks, gi) => {
          targets += len - 1;
          return { degree: d, ranks, sequences: [{ id: seqId(step, i * 1000 + gi), offset: 0, length: len }] };
        }),
        ...Array.from({ length: topo.devices - covered }, (_, j) => {
          targets += 1;
          return { degree: 1, ranks: [covered + j], sequences: [{ id: seqId(step, 999), offset: 0, length: 2 }] };
        }),
      ],
    }));
    // A last micro-batch of 2 tokens on every rank: the gradient all-reduce, which DDP runs inside the last micro-batch's
    // backward, lands there rather than in a timed one (over a slow link between nodes it is most of the step's fixed
    // cost), and the step overhead below counts it.
    microBatches.push({
      groups: Array.from({ length: topo.devices }, (_, r) => {
        targets += 1;
        return {
          degree: 1,
          ranks: [r],
          sequences: [{ id: seqId(step, order.length * 1000 + r), offset: 0, length: 2 }],
        };
      }),
    });
    const m = await runStep(
      pool,
      { step, microBatches, globalTokens: Math.max(1, targets), lr: 0 },
      timeoutMs,
      `validation at degree ${d}`,
    );
    step++;
    // Outside the timed micro-batches: the gradient all-reduce (in the last, 2-token one) and the optimizer. Each
    // rank's own step less its own timed micro-batches also holds its wait at the all-reduce for slower groups; the
    // rank that waited least (the last to arrive) shows the step's own cost, which a plan's step_ms adds to its
    // slowest micro-batches.
    stepOverheadMs.push(
      Math.max(
        0,
        Math.min(...[...m.stepMs].map(([r, ms]) => ms - m.mb.get(r)!.slice(0, -1).reduce((a, b) => a + b, 0))),
      ),
    );
    for (const spans of [false, true]) {
      const mine = groups.filter((g) => spansNodes(topo, g[0], d) === spans);
      if (mine.length === 0) continue;
      for (const len of lengths) {
        const measured: number[] = [];
        order.forEach((l, i) => {
          if (i === 0 || l !== len) return;
          for (const g of mine) measured.push(groupMs(m, g, i));
        });
        points.push({ degree: d, spans, length: len, measuredMs: median(measured), starts: mine.map((g) => g[0]) });
      }
    }
  }
  return { points, stepOverheadMs };
}

/** Predictions of the cost model for measured validation points, and their errors. */
export function predictValidation(points: MeasuredPoint[], topo: Topology, cost: CostModel): ValidationSection {
  const out = points.map((p) => {
    const predictedMs = median(
      p.starts.map((s) => cost.groupMs([p.length], p.degree, p.spans, blockSpeed(topo, s, p.degree))),
    );
    return {
      degree: p.degree,
      spans: p.spans,
      length: p.length,
      measuredMs: p.measuredMs,
      predictedMs,
      relErr: (predictedMs - p.measuredMs) / p.measuredMs,
    };
  });
  const errs = out.map((p) => Math.abs(p.relErr));
  return { points: out, medianRelErr: median(errs), maxRelErr: errs.length ? Math.max(...errs) : 0 };
}
