// The training part of a config for a short run on test hosts or the test Slurm cluster: `model.max_seq`, then the
// `training:`, `planner:` and `profile:` sections (inline cost constants, so no profile is needed), appended to a
// cluster config such as `TestHosts.writeConfig` writes (which ends with `model:` and its preset).

/** Inline cost constants (`profile.constants`) for gpt-tiny on CPU executors; other constants are the same in all. */
export interface CostConstants {
  /** As YAML writes it, e.g. "2.0e-6". */
  alpha1: string;
  beta1: number;
  /** `bandwidth_gbps` as a YAML flow map, e.g. "{ intra: { 2: 1.0 }, inter: { 2: 0.5 } }". */
  bandwidth: string;
}

/** Two nodes of 2 CPU devices each (groups of 4 span both). */
export const TWO_NODES_OF_TWO: CostConstants = {
  alpha1: "2.0e-6",
  beta1: 2,
  bandwidth: "{ intra: { 2: 1.0 }, inter: { 2: 0.5, 4: 0.4 } }",
};

/** Many nodes of one CPU device each. */
export const ONE_DEVICE_NODES: CostConstants = {
  alpha1: "1.0e-6",
  beta1: 1,
  bandwidth: "{ intra: {}, inter: { 2: 0.5 } }",
};

/** A short training run. */
export interface TrainingRun {
  maxSeq: number;
  dataset: string;
  globalBatch: number;
  steps: number;
  /** Further `training:` keys, written in this order (e.g. checkpoint_interval, on_failure, resume). */
  training?: Record<string, string | number>;
  /** Further `planner:` keys, written after `memory_budget_gb: 0.25`. */
  planner?: Record<string, string | number | boolean>;
  constants: CostConstants;
}

/** YAML lines of a run: `  max_seq` (under the `model:` that comes before them), training, planner, profile. */
export function trainingYaml(t: TrainingRun): string[] {
  const keys = (m: Record<string, unknown> = {}) => Object.entries(m).map(([k, v]) => `  ${k}: ${v}`);
  return [
    `  max_seq: ${t.maxSeq}`,
    "training:",
    `  dataset: ${t.dataset}`,
    `  global_batch: ${t.globalBatch}`,
    `  steps: ${t.steps}`,
    ...keys(t.training),
    "planner:",
    "  memory_budget_gb: 0.25",
    ...keys(t.planner),
    "profile:",
    "  constants:",
    `    alpha1: ${t.constants.alpha1}`,
    "    alpha2: 0.05",
    `    beta1: ${t.constants.beta1}`,
    "    act_mb_per_token: 0.05",
    `    bandwidth_gbps: ${t.constants.bandwidth}`,
  ];
}

/** Writes the cluster config at `base` followed by the run `t` to `path`; returns `path`. */
export async function writeTrainingConfig(base: string, path: string, t: TrainingRun): Promise<string> {
  await Deno.writeTextFile(path, (await Deno.readTextFile(base)) + [...trainingYaml(t), ""].join("\n"));
  return path;
}
