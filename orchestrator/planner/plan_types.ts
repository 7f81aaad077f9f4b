// The step plan: plain JSON data that is logged, explained, replayed and checked.

import type { PlannerConfig } from "../config/types.ts";

/** One SP group of a micro-batch. */
export interface GroupPlan {
  /** Power-of-two SP degree. */
  degree: number;
  /** Global ranks: an aligned block [start, start+degree). */
  ranks: number[];
  /** Indices into the step's length list. */
  sequences: number[];
  /** Lengths of those sequences (same order). */
  lengths: number[];
  /** Predicted time of this group (ms); 0 for an idle group. */
  predictedMs: number;
  /** Whether the group spans more than one node (its all-to-all uses the inter-node bandwidth). */
  spansNodes: boolean;
}

/** Groups that run concurrently; their ranks partition the devices. */
export interface MicroBatchPlan {
  groups: GroupPlan[];
  /** Max over groups (ms). */
  predictedMs: number;
}

/** Which strategy produced a plan. */
export type Strategy = PlannerConfig["strategy"];

/** A whole step: micro-batches run one after the other, gradients accumulated. */
export interface Plan {
  strategy: Strategy;
  microBatches: MicroBatchPlan[];
  /** Sum over micro-batches (ms). */
  predictedMs: number;
  /** Wall-clock time spent solving (ms). */
  solveMs: number;
  /** A lower bound on the step time of any valid plan for these lengths (ms). */
  lowerBoundMs: number;
  /** Sequences left out because no group can hold them (only with overflow: drop). */
  dropped: number[];
  /** For static plans, the fixed degree. */
  degree?: number;
  /** How the plan was found (which search won, MILP status). */
  details: Record<string, string | number | boolean>;
}
