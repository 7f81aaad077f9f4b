// Real training steps for proving the fit: planner plans (or synthetic per-degree plans) turned into executor step
// plans on synthetic tokens, run on the profiling executors with learning rate 0 (parameters stay as they are), and
// measured the way `launch` measures them: a group's time is the slowest of its ranks' micro-batch times, a step's
// the slowest rank's step time. Ledger entries use launch's `ledger.jsonl` format.

import type { ExecutorStepPlan, GroupAssignment } from "../../core/protocol.ts";
import type { Plan } from "../planner/plan_types.ts";
import { blockSpeed, spansNodes, type Topology } from "../planner/topology.ts";
import type { CostModel } from "../planner/cost_model.ts";
import type { ExecutorPool } from "../cluster/executor_pool.ts";
import { onAll } from "./pool_calls.ts";
import { median } from "./fit.ts";
import type { ValidationSection } from "../config/profile_doc.ts";

/** One line of `ledger.jsonl` (the fields `profile --check` reads). */
export interface LedgerEntry {
  step: number;
  loss: number;
  tokens: number;
  predictedMs: number;
  measuredMs: number;
  /** Σ over micro-batches of their measured time (the part the plan models: no all-reduce, no optimizer). */
  microBatchMs?: number;
  plan: {
    microBatches: {
      predictedMs: number;
      groups: { degree: number; ranks: number[]; sequences: number[]; predictedMs: number; measuredMs: number }[];
    }[];
  };
}

/** Measured ms per rank: per micro-batch and for the whole step. */
export interface StepMeasurement {
  mb: Map<number, number[]>;
  stepMs: Map<number, number>;
  lossSum: number;
  tokens: number;
}

/** Sends one step plan to every rank and collects the measurements. */
export async function runStep(
  pool: ExecutorPool,
  plan: ExecutorStepPlan,
  timeoutMs: number,
  what: string,
): Promise<StepMeasurement> {
  const done = await onAll(pool, () => ({ type: "step", plan }), "step_done", timeoutMs, what);
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
  return { mb, stepMs, lossSum, tokens };
}

/** Slowest rank of `ranks` in micro-batch `i`. */
function groupMs(m: StepMeasurement, ranks: number[], i: number): number {
  return Math.max(...ranks.map((r) => m.mb.get(r)![i]));
}

/** Ids of synthetic sequences: unique per step and position, so every rank reads the same tokens. */
const seqId = (step: number, k: number) => step * 100_000 + k;

/** The executor plan of a planner plan; idle groups (no sequences) run as degree-1 groups of nothing. */
export function executorPlanOf(step: number, plan: Plan, lengths: readonly number[]): ExecutorStepPlan {
  let targets = 0;
  const microBatches = plan.microBatches.map((mb) => ({
    groups: mb.groups.flatMap((g): GroupAssignment[] => {
      if (g.sequences.length === 0) return g.ranks.map((r) => ({ degree: 1, ranks: [r], sequences: [] }));
      return [{
        degree: g.degree,
        ranks: g.ranks,
        sequences: g.sequences.map((k) => {
          targets += lengths[k] - 1;
          return { id: seqId(step, k), offset: 0, length: lengths[k] };
        }),
      }];
    }),
  }));
  return { step, microBatches, globalTokens: Math.max(1, targets), lr: 0 };
}

/** Runs a planner plan and returns its ledger entry (predicted and measured per group, micro-batch and step). */
export async function runPlannedStep(
  pool: ExecutorPool,
  step: number,
  plan: Plan,
  lengths: readonly number[],
  timeoutMs: number,
): Promise<LedgerEntry> {
  const m = await runStep(pool, executorPlanOf(step, plan, lengths), timeoutMs, `step ${step}`);
  const mbMs = plan.microBatches.map((mb, i) => Math.max(0, ...mb.groups.map((g) => groupMs(m, g.ranks, i))));
  return {
    step,
    loss: m.tokens > 0 ? m.lossSum / m.tokens : NaN,
    tokens: lengths.reduce((a, b) => a + b, 0),
    predictedMs: plan.predictedMs,
    measuredMs: Math.max(...m.stepMs.values()),
    microBatchMs: mbMs.reduce((a, b) => a + b, 0),
    plan: {
      microBatches: plan.microBatches.map((mb, i) => ({
        predictedMs: mb.predictedMs,
        groups: mb.groups.map((g) => ({
          degree: g.degree,
          ranks: g.ranks,
          sequences: g.sequences,
          predictedMs: g.predictedMs,
          measuredMs: groupMs(m, g.ranks, i),
        })),
      })),
    },
  };
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

/**
 * Per-degree validation: for each degree, one step whose micro-batches each give every aligned group one sequence
 * of a validation length (a first, untimed micro-batch warms up). Returns measured group times (the slowest rank of
 * each group, median over groups and repeats).
 */
export async function validateDegrees(
  pool: ExecutorPool,
  topo: Topology,
  degrees: number[],
  lengths: number[],
  repeats: number,
  timeoutMs: number,
  onDegree: (d: number) => void,
  firstStep = 1_000_000,
): Promise<{ points: MeasuredPoint[]; stepOverheadMs: number[] }> {
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
    const m = await runStep(
      pool,
      { step, microBatches, globalTokens: Math.max(1, targets), lr: 0 },
      timeoutMs,
      `validation at degree ${d}`,
    );
    step++;
    // Outside the micro-batches: the gradient all-reduce and the optimizer (the slowest rank's).
    stepOverheadMs.push(
      Math.max(...[...m.stepMs].map(([r, ms]) => ms - m.mb.get(r)!.reduce((a, b) => a + b, 0))),
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
