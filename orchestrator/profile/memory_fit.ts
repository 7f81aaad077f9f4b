// Memory from the compute grid: activation bytes of each run (the peak of the buffers the model allocated) fitted
// linearly in the batch's tokens per device (the slope is the activation memory per token; the largest slope over
// devices is kept, memory must never be underestimated), model states as the executors hold them, and the
// resulting token capacity per device under the planner's budget.

import { parameterCount } from "../../core/model_shape.ts";
import type { Config } from "../config/types.ts";
import { zeroRatio } from "../planner/cost_model.ts";
import { nnls } from "./fit.ts";
import type { MemorySection } from "../config/profile_doc.ts";

const MB = 2 ** 20;

/** The measurements {@link fitMemory} fits. */
export interface MemoryMeasurements {
  samples: { rank: number; tokens: number; peakBytes: number }[];
  /** Per rank: bytes of parameters, gradients and optimizer moments. */
  modelStateBytes: Map<number, number>;
  /** Per rank: its node's index. */
  rankNode: number[];
  /** A node's memory (GB), when its inventory says. */
  nodeMemoryGb: (node: number) => number | undefined;
  /** Where the peaks come from (`buffers` or the allocator). */
  source: string;
}

/** Memory section and warnings from the compute grid's memory samples. */
export function fitMemory(config: Config, m: MemoryMeasurements): { section: MemorySection; warnings: string[] } {
  const { samples, modelStateBytes, rankNode, nodeMemoryGb, source } = m;
  const warnings: string[] = [];
  const ranks = [...new Set(samples.map((s) => s.rank))].sort((a, b) => a - b);
  let best = { slopeMb: 0, interceptMb: 0, r2: 1 };
  for (const r of ranks) {
    const mine = samples.filter((s) => s.rank === r);
    const f = nnls(mine.map((s) => [s.tokens, 1]), mine.map((s) => s.peakBytes / MB));
    if (f.coef[0] > best.slopeMb) best = { slopeMb: f.coef[0], interceptMb: f.coef[1], r2: f.r2 };
  }
  const act = best.slopeMb > 0 ? best.slopeMb : 1e-6;
  const modelStateMb = Math.max(0, ...modelStateBytes.values()) / MB;
  const n = rankNode.length;
  const plannerModelStateMb =
    ((config.model.params ?? parameterCount(config.model)) * 16 * zeroRatio(config.planner.zeroStage, n)) / MB;
  const perDevice = rankNode.map((node, rank) => {
    const nc = config.cluster.nodes[node];
    const caps = [nc.memoryBudgetGb ?? config.planner.memoryBudgetGb, nc.deviceMemoryGb].filter((x): x is number =>
      x !== undefined
    );
    if (caps.length === 0) {
      const mem = nodeMemoryGb(node);
      if (mem !== undefined) caps.push((0.9 * mem) / nc.devices);
    }
    const budgetMb = caps.length ? Math.min(...caps) * 1024 : NaN;
    const states = Math.max(modelStateMb, plannerModelStateMb) + best.interceptMb;
    return { rank, budgetMb, tokenCapacity: Math.max(0, Math.floor((budgetMb - states) / act)) };
  });
  const known = perDevice.filter((d) => Number.isFinite(d.budgetMb));
  if (modelStateMb > plannerModelStateMb * 1.5 && config.planner.zeroStage > 0) {
    warnings.push(
      `the executors keep full model states (${modelStateMb.toFixed(1)} MB per device: parameters, gradients, ` +
        `AdamW moments, no ZeRO sharding) but planner.zero_stage ${config.planner.zeroStage} assumes ` +
        `${plannerModelStateMb.toFixed(1)} MB; token capacities above use the measured size`,
    );
  }
  if (config.model.checkpointing !== "none") {
    warnings.push(
      `model.checkpointing is ${config.model.checkpointing}, but the TypeScript executors keep every activation: ` +
        `act_mb_per_token is the no-checkpointing figure`,
    );
  }
  return {
    section: {
      source,
      actMbPerToken: act,
      actFit: best,
      modelStateMb,
      plannerModelStateMb,
      budgetMb: known.length ? Math.min(...known.map((d) => d.budgetMb)) : NaN,
      tokenCapacity: known.length ? Math.min(...known.map((d) => d.tokenCapacity)) : NaN,
      perDevice,
      samples: samples.map((s) => ({ rank: s.rank, tokens: s.tokens, peakMb: s.peakBytes / MB })),
    },
    warnings,
  };
}
