// From a planner plan and a global batch to the executors' step plan, and from the executors' results to the
// step's ledger record. Pure functions: the loss is summed in a fixed order (rank, then micro-batch), so the same
// results always give the same bits.

import type { ExecutorEvent, ExecutorStepPlan, GroupAssignment } from "../../core/protocol.ts";
import type { Batch } from "../data/sampler.ts";
import { ledgerSequences } from "../data/data_ledger.ts";
import type { GroupPlan, Plan } from "../planner/plan_types.ts";
import type { LedgerMicroBatch, LedgerRecord } from "./ledger.ts";

/** One rank's `step_done`. */
export type StepDone = Extract<ExecutorEvent, { type: "step_done" }>;

/**
 * The executors' plan of a step: sequence refs in place of batch indices; ranks left idle (in no group, or in a group
 * the planner left empty, which may have any degree) get empty degree-1 groups, so an executor never refuses an idle
 * block whose degree the model could not split.
 */
export function toExecutorPlan(
  step: number,
  plan: Plan,
  batch: Batch,
  lr: number,
  worldSize: number,
): ExecutorStepPlan {
  let globalTokens = 0;
  const microBatches = plan.microBatches.map((mb) => {
    const covered = new Set<number>();
    const groups: GroupAssignment[] = mb.groups.filter((g) => g.sequences.length > 0).map((g) => {
      for (const r of g.ranks) covered.add(r);
      return {
        degree: g.degree,
        ranks: g.ranks,
        sequences: g.sequences.map((k) => {
          globalTokens += batch.lengths[k] - 1;
          return { id: batch.ids[k], offset: batch.offsets[k], length: batch.lengths[k] };
        }),
        ...(g.predictedMs > 0 ? { predictedMs: Math.round(g.predictedMs * 1000) / 1000 } : {}),
      };
    });
    for (let r = 0; r < worldSize; r++) if (!covered.has(r)) groups.push({ degree: 1, ranks: [r], sequences: [] });
    return { groups };
  });
  return { step, microBatches, globalTokens, lr };
}

/** Timing facts the loop measured around a step. */
export interface StepTiming {
  wallMs: number;
  dispatchMs: number;
  solveMs: number;
  planWaitMs: number;
  solveHidden: boolean;
  planSource: "solved" | "replayed";
}

/** The ledger record of a finished step. `done[r]` is rank r's `step_done`. */
export function stepRecord(
  step: number,
  plan: Plan,
  batch: Batch,
  lr: number,
  done: StepDone[],
  timing: StepTiming,
): LedgerRecord {
  // Loss: every rank's per-micro-batch loss sums, in rank order then micro-batch order.
  let lossSum = 0, targetTokens = 0;
  for (const d of done) {
    for (const mb of d.microBatches) {
      lossSum += mb.lossSum;
      targetTokens += mb.tokens;
    }
  }
  const groupOf = (mbIndex: number, g: GroupPlan) => {
    const ms = Math.max(0, ...g.ranks.map((r) => done[r]?.microBatches[mbIndex]?.ms ?? 0));
    const first = done[g.ranks[0]]?.microBatches[mbIndex];
    const tokens = first?.tokens ?? 0;
    return {
      degree: g.degree,
      ranks: g.ranks,
      sequences: g.sequences.map((k) => batch.ids[k]),
      indices: g.sequences,
      lengths: g.sequences.map((k) => batch.lengths[k]),
      predictedMs: g.predictedMs,
      measuredMs: ms,
      loss: tokens > 0 ? first!.lossSum / tokens : null,
      tokens,
    };
  };
  const microBatches: LedgerMicroBatch[] = plan.microBatches.map((mb, i) => {
    const groups = mb.groups.map((g) => groupOf(i, g));
    return { predictedMs: mb.predictedMs, measuredMs: Math.max(0, ...groups.map((g) => g.measuredMs)), groups };
  });
  const planned = new Set(plan.microBatches.flatMap((mb) => mb.groups.flatMap((g) => g.sequences)));
  const tokens = batch.lengths.reduce((s, l, k) => s + (planned.has(k) ? l : 0), 0);
  const stepMs = Math.max(0, ...done.map((d) => d.ms));
  return {
    step,
    time: new Date().toISOString(),
    loss: targetTokens > 0 ? lossSum / targetTokens : NaN,
    tokens,
    targetTokens,
    sequences: ledgerSequences(batch, planned),
    epoch: batch.epoch,
    lr,
    predictedMs: plan.predictedMs,
    measuredMs: stepMs,
    microBatchMs: microBatches.reduce((s, mb) => s + mb.measuredMs, 0),
    wallMs: timing.wallMs,
    overheadMs: Math.max(0, timing.wallMs - stepMs),
    dispatchMs: timing.dispatchMs,
    tokensPerS: tokens / Math.max(1e-9, timing.wallMs / 1000),
    solveMs: timing.solveMs,
    planWaitMs: timing.planWaitMs,
    solveHidden: timing.solveHidden,
    planSource: timing.planSource,
    worldSize: done.length,
    strategy: plan.strategy,
    lowerBoundMs: plan.lowerBoundMs,
    dropped: plan.dropped.map((k) => batch.ids[k]),
    plan: { strategy: plan.strategy, microBatches },
  };
}

/**
 * Rebuilds the plan a ledger record executed, if it fits this batch (same sequence ids at the same positions, same
 * world size); undefined otherwise.
 */
export function replayPlan(r: LedgerRecord, batch: Batch, worldSize: number): Plan | undefined {
  if (r.worldSize !== worldSize) return undefined;
  for (const mb of r.plan.microBatches) {
    for (const g of mb.groups) {
      if (!Array.isArray(g.indices)) return undefined;
      for (let x = 0; x < g.indices.length; x++) {
        if (batch.ids[g.indices[x]] !== g.sequences[x]) return undefined;
      }
    }
  }
  const idToIndex = new Map(batch.ids.map((id, k) => [id, k]));
  return {
    strategy: r.strategy as Plan["strategy"],
    microBatches: r.plan.microBatches.map((mb) => ({
      predictedMs: mb.predictedMs,
      groups: mb.groups.map((g) => ({
        degree: g.degree,
        ranks: g.ranks,
        sequences: g.indices,
        lengths: g.lengths,
        predictedMs: g.predictedMs,
        spansNodes: false,
      })),
    })),
    predictedMs: r.predictedMs,
    solveMs: 0,
    lowerBoundMs: r.lowerBoundMs,
    dropped: r.dropped.map((id) => idToIndex.get(id)!).filter((k) => k !== undefined),
    details: { replayed: true },
  };
}
