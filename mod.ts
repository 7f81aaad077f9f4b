/**
 * flexsp: training long-context language models with heterogeneity-adaptive sequence parallelism (FlexSP,
 * ASPLOS'25). This module is the public API: config loading, the FlexSP cost model and planner, plan checking, the
 * profile, datasets, the cluster layer (agents, executors) and training runs. The commands (`deno task launch`,
 * `plan`, `profile`, `nodes`, `data`) are thin wrappers around these functions; see docs/architecture.md for the
 * tiers behind them.
 *
 * @example Plan one step of the paper's cluster
 * ```ts
 * import { loadConfig, planStep, plannerSetup, resolveCostConstants, Rng, sampleLengths } from "./mod.ts";
 *
 * const config = await loadConfig("configs/paper-a100-64.yaml");
 * const { topology, cost, options } = plannerSetup(config, await resolveCostConstants(config));
 * const lengths = sampleLengths("github", config.training.globalBatch, config.model.maxSeq, new Rng(1));
 * const plan = await planStep(lengths, topology, cost, options);
 * console.log(`${plan.microBatches.length} micro-batches, predicted ${plan.predictedMs.toFixed(0)} ms`);
 * ```
 *
 * @module
 */

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
/** Model shapes of the presets (gpt-tiny ... gpt-30b, llama-tiny ... qwen2-7b), their parameter count and SP rules. */
export {
  degreeProblem,
  kvHeadsPerRank,
  MODEL_PRESETS,
  type ModelFamily,
  type ModelShape,
  parameterCount,
  type RopeScaling,
} from "./core/model_shape.ts";
/** Hugging Face config.json <-> model shape (model.from, the export). */
export { HfConfigError, hfConfigOf, readHfShape, shapeFromHfConfig } from "./core/hf_config.ts";
/** A llama-family run's checkpoint as a Hugging Face model directory (`deno task export --hf`). */
export { exportHf, type ExportOptions, type ExportResult } from "./orchestrator/run/hf_export.ts";
/** A user-caused error: its message is the whole report. */
export { UserError } from "./orchestrator/errors.ts";

/** The FlexSP cost model: time and memory of sequences on SP groups. */
export { buildCostModel, CostModel, type CostModelOptions } from "./orchestrator/planner/cost_model.ts";
/** The devices a plan is placed on. */
export { mixedTopology, type Topology, topologyOf, uniformTopology } from "./orchestrator/planner/topology.ts";
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
/** The cost constants a config points to (its profile, else inline constants), with the fingerprint check. */
export {
  checkProfileHardware,
  readProfile,
  resolveCostConstants,
  resolveProfile,
  writeProfile,
} from "./orchestrator/config/profile_file.ts";
/** The profile document `deno task profile` writes (schema, fingerprint, constants, fits, raw samples). */
export type { ProfileDoc } from "./orchestrator/config/profile_doc.ts";
/** Measures a cluster through its agents and executors and fits the cost model. */
export { type ProfileRunOptions, runProfile } from "./orchestrator/profile/profiler.ts";
/** Prediction error distribution and drift of a run's ledger (`deno task profile --check`). */
export { checkLedger } from "./orchestrator/profile/ledger_check.ts";
/** The paper's corpora as length distributions, and the seeded generator. */
export { LENGTH_DISTRIBUTIONS, sampleLengths } from "./orchestrator/data/length_distributions.ts";
export { Rng } from "./orchestrator/data/rng.ts";

/**
 * Builds an indexed token dataset (token file, index, manifest) from text files, JSONL, Parquet, a text file or a
 * Megatron `.bin/.idx`, streaming, with the byte tokenizer or a Hugging Face tokenizer.json.
 */
export {
  INPUT_FORMATS,
  type InputFormat,
  prepareDataset,
  type PrepareOptions,
  type PrepareResult,
} from "./orchestrator/data/prepare.ts";
/** Tokenizers of `prepare`: bytes, or a Hugging Face tokenizer.json (BOS/EOS per its config; identity hash). */
export {
  bytesTokenizer,
  type DocumentTokenizer,
  loadTokenizer,
  tokenBytesFor,
  tokenizerIdentity,
  type TokenizerInfo,
} from "./orchestrator/data/tokenizer.ts";
/** Megatron-LM indexed datasets: import a `.bin/.idx` pair without re-tokenising, export a dataset as one. */
export { exportMegatron, importMegatron, readMegatronIndex } from "./orchestrator/data/megatron_format.ts";
/** The data ledger: each step's sequences as `{id, doc, offset, length}`, and `data trace`'s lines. */
export {
  type LedgerSequence,
  ledgerSequences,
  readDocumentRange,
  traceLines,
} from "./orchestrator/data/data_ledger.ts";
/** Whether a dataset's tokenizer and vocabulary fit a model (checked at launch). */
export { checkDatasetForModel, type ModelVocabulary, modelVocabularyOf } from "./orchestrator/data/model_match.ts";
/** Opens a dataset: its manifest and its index of document offsets and lengths. */
export { type DatasetIndex, type DatasetManifest, readDatasetIndex } from "./orchestrator/data/dataset_format.ts";
/** Built-in corpora (`deno-corpus`: the Deno runtime's declarations from `deno types`). */
export { buildBuiltinDataset, BUILTIN_DATASETS } from "./orchestrator/data/builtin_corpus.ts";
/** The deterministic, checkpointable sampler that forms global batches (and the long-sequence split/drop). */
export {
  type Batch,
  buildSequenceTable,
  DatasetSampler,
  type SamplerState,
  type SequenceTable,
  SyntheticSampler,
} from "./orchestrator/data/sampler.ts";
/** The training data of a config (built on the spot for a built-in corpus) and its sampler. */
export { openTrainingData, presetVocabulary, type TrainingData } from "./orchestrator/data/training_data.ts";
/** A training run (`deno task launch`): step loop, ledger, checkpoints, resume and failure policies. */
export { type LaunchOptions, type LaunchResult, launchRun } from "./orchestrator/run/launch_run.ts";
/** One line of a run's `ledger.jsonl`. */
export {
  type LedgerGroup,
  type LedgerMicroBatch,
  type LedgerRecord,
  readLedger,
  type ReadLedgerOptions,
} from "./orchestrator/ledger/ledger.ts";
/** Checkpoints of a run: parts per rank, orchestrator state, manifest with checksums, `latest`. */
export {
  type CheckpointManifest,
  CheckpointStore,
  type OrchestratorState,
} from "./orchestrator/run/checkpoint_store.ts";
/** The learning rate of a step (warmup, then cosine decay to a tenth). */
export { learningRate } from "./orchestrator/run/lr_schedule.ts";
/** The cluster layer: agents on every node, and one executor per device as a pool. */
export { ClusterSession, type NodeLaunch } from "./orchestrator/cluster/cluster_session.ts";
export { ExecutorPool, type PoolOptions } from "./orchestrator/cluster/executor_pool.ts";
export { type Fault, rootCause } from "./orchestrator/cluster/fault.ts";
/** The agent/executor wire protocol (one JSON object per line). */
export { PROTOCOL_VERSION } from "./core/protocol.ts";

/** Slurm: the nodes, addresses and GPUs of the allocation this process runs in (`cluster.scheduler: slurm`). */
export {
  loadClusterConfig,
  readAllocation,
  type SlurmNode,
  slurmNodes,
} from "./orchestrator/cluster/slurm_allocation.ts";
/** The sbatch script `deno task submit` writes (signal, requeue and resume wiring). */
export { type SbatchOptions, sbatchScript } from "./orchestrator/cluster/sbatch_script.ts";
/** ~/.ssh/config as OpenSSH reads it (Host aliases, HostName, User, Port, IdentityFile, ProxyJump). */
export { resolveSshHost, type SshHostConfig } from "./orchestrator/cluster/ssh_config.ts";
/** One report for a wave of node failures, grouped by reason. */
export { waveReport } from "./orchestrator/cluster/failure_wave.ts";
