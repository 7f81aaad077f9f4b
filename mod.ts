// flexsp public API: config loading, the FlexSP cost model and planner, and plan checking.

/** Loads and validates a cluster YAML file (with optional `PATH=VALUE` overrides). */
export { loadConfig, parseConfig } from "./orchestrator/config/load.ts";
export type {
  Checkpointing,
  Config,
  CostConstants,
  ModelConfig,
  NodeConfig,
  PlannerConfig,
  TrainingConfig,
} from "./orchestrator/config/types.ts";
/** Model shapes of the presets (gpt-tiny ... gpt-30b) and their parameter count. */
export { MODEL_PRESETS, type ModelShape, parameterCount } from "./orchestrator/config/presets.ts";
/** A user-caused error: its message is the whole report. */
export { UserError } from "./orchestrator/errors.ts";

/** The FlexSP cost model: time and memory of sequences on SP groups. */
export { buildCostModel, CostModel, type CostModelOptions } from "./orchestrator/planner/cost_model.ts";
/** The devices a plan is placed on. */
export { type Topology, topologyOf, uniformTopology } from "./orchestrator/planner/topology.ts";
/** Plans one training step: micro-batches of SP groups on concrete ranks. */
export { planStep, type PlanStepOptions } from "./orchestrator/planner/plan_step.ts";
/** Planner settings and the per-call context. */
export { DEFAULT_PLANNER_OPTIONS, PlanContext, type PlannerOptions } from "./orchestrator/planner/context.ts";
export type { GroupPlan, MicroBatchPlan, Plan, Strategy } from "./orchestrator/planner/plan_types.ts";
/** Builds topology, cost model and options from a config. */
export { type PlannerSetup, plannerSetup } from "./orchestrator/planner/from_config.ts";
/** The planner in a worker thread (plans step t+1 while step t runs). */
export { PlannerWorker } from "./orchestrator/planner/worker.ts";
/** Lists every rule a plan breaks (empty when valid). */
export { planViolations } from "./orchestrator/planner/validate_plan.ts";
/** A lower bound on the step time of any plan. */
export { stepLowerBound } from "./orchestrator/planner/bounds.ts";
/** The cost constants a config points to (inline or a profile file). */
export { resolveCostConstants } from "./orchestrator/profile/profile_file.ts";
/** The paper's corpora as length distributions, and the seeded generator. */
export { LENGTH_DISTRIBUTIONS, sampleLengths } from "./orchestrator/data/length_distributions.ts";
export { Rng } from "./orchestrator/data/rng.ts";
