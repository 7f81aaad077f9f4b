// Builds the planner's inputs (topology, cost model, options) from a validated config.

import { UserError } from "../errors.ts";
import type { Config, CostConstants } from "../config/types.ts";
import { buildCostModel, type CostModel } from "./cost_model.ts";
import type { PlannerOptions } from "./context.ts";
import { nodeBudgetGb, type Topology, topologyOf } from "./topology.ts";

/** Everything `planStep` needs besides the lengths. */
export interface PlannerSetup {
  topology: Topology;
  cost: CostModel;
  options: PlannerOptions;
}

/** Memory budget per device: the configured budget, else 90% of the smallest configured device memory. */
export function memoryBudgetGb(config: Config): number {
  if (config.planner.memoryBudgetGb !== undefined) return config.planner.memoryBudgetGb;
  const mems = config.cluster.nodes.map((n) => n.deviceMemoryGb).filter((m): m is number => m !== undefined);
  if (mems.length === 0) {
    throw new UserError(
      `${config.source}: set planner.memory_budget_gb or cluster.nodes[].device_memory_gb so the planner ` +
        `knows how many tokens a device holds`,
    );
  }
  return 0.9 * Math.min(...mems);
}

/** Planner inputs of a config with the given cost constants. */
export function plannerSetup(config: Config, constants: CostConstants): PlannerSetup {
  const topology = topologyOf(config, constants);
  const cost = buildCostModel(constants, config.model, {
    memoryBudgetGb: memoryBudgetGb(config),
    zeroStage: config.planner.zeroStage,
    devices: topology.devices,
  });
  // Every node's own budget must hold the model states too.
  for (const node of config.cluster.nodes) {
    const budget = nodeBudgetGb(config, node.index);
    if (budget !== undefined && cost.tokenCapacity(node.deviceMemoryGb, budget) <= 0) {
      const key = node.memoryBudgetGb !== undefined
        ? `cluster.nodes[${node.index}].memory_budget_gb`
        : "planner.memory_budget_gb";
      throw new UserError(
        `${config.source}: node ${node.host}: model states need ${cost.modelStateMb.toFixed(0)} MB per device ` +
          `but its memory budget is ${(Math.min(budget, node.deviceMemoryGb ?? Infinity) * 1024).toFixed(0)} MB; ` +
          `raise ${key}, use more devices or ZeRO stage 3`,
      );
    }
  }
  const p = config.planner;
  return {
    topology,
    cost,
    options: {
      microBatchTrials: p.microBatchTrials,
      buckets: p.buckets,
      milp: p.milp,
      timeLimitMs: p.timeLimitMs,
      deterministic: p.deterministic,
      minDegree: p.minDegree,
      overflow: p.overflow,
      staticDegree: p.staticDegree,
    },
  };
}
