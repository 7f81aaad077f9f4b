// The resolved, typed configuration every part of the orchestrator reads. The value lists of its enum fields come
// from the schema (cluster_schema.ts); tests/config/config_description_test.ts checks the two agree key by key.

import type { ModelShape } from "../../core/model_shape.ts";
import type { ExecutorKindChoice } from "../../core/protocol.ts";
import type { CpuPinning } from "../../core/cpu_list.ts";
import type {
  BUILTIN_DATASETS,
  CHECKPOINTING_POLICIES,
  FAILURE_POLICIES,
  HOST_KEY_POLICIES,
  LENGTH_DISTRIBUTIONS,
  LONG_SEQUENCE_POLICIES,
  MILP_SOLVERS,
  OVERFLOW_POLICIES,
  PLANNER_STRATEGIES,
  PRECISIONS,
  RESUME_MODES,
  SCHEDULERS,
  TRANSPORTS,
} from "./cluster_schema.ts";

/** One node of the cluster as configured. */
export interface NodeConfig {
  /** Position in `cluster.nodes`. */
  index: number;
  host: string;
  transport: typeof TRANSPORTS[number];
  user?: string;
  port: number;
  identity?: string;
  knownHosts?: string;
  hostKeyPolicy: typeof HOST_KEY_POLICIES[number];
  devices: number;
  executor: ExecutorKindChoice;
  deviceMemoryGb?: number;
  /** Planner memory budget of each device of this node (GB); overrides `planner.memoryBudgetGb`. */
  memoryBudgetGb?: number;
  /** Relative compute speed of this node's devices (1 = the profiled speed). */
  speed: number;
  /** Path of a Deno binary on the node (else found on PATH or bootstrapped). */
  deno?: string;
  /** The node's Python for the PyTorch executors (cuda, torch-cpu): a command on PATH or a path. */
  python: string;
  workdir?: string;
  /** Slurm node name: the agent starts with `srun -w NAME` (cluster.scheduler: slurm); `host` is its NodeAddr. */
  srun?: string;
  /** Bastions, outermost first (`[user@]host[:port]`); undefined: the ssh config's ProxyJump, if any. */
  jump?: string[];
  /** ssh config file (default ~/.ssh/config). */
  sshConfig?: string;
  /** `cpu_pinning`: the cores of each executor (`off` when absent); lists are checked against `devices`. */
  cpuPinning?: CpuPinning;
  /** Slurm: the job's GPUs on the node as its steps see them (CUDA_VISIBLE_DEVICES of the probe step). */
  slurmGpus?: string;
}

/** Activation checkpointing policy: decides activation memory per token and recompute overhead. */
export type Checkpointing = typeof CHECKPOINTING_POLICIES[number];

/** The model to train. */
export interface ModelConfig extends ModelShape {
  preset?: string;
  /** A Hugging Face model directory (config.json + safetensors) the torch executors load; its shape is this one. */
  from?: string;
  checkpointing: Checkpointing;
  /** Parameter count, when given (else the cost constants' count, else the GPT-2 formula). */
  params?: number;
}

/** Profiled (or published) cost constants; times in ms, memory in MB (2^20 bytes). */
export interface CostConstants {
  /** ms per token² at degree 1. */
  alpha1: number;
  /** ms per token at degree 1. */
  alpha2: number;
  /** ms paid once per group per micro-batch, at the group's speed. */
  beta1: number;
  /**
   * ms every micro-batch pays on every rank whatever its groups (ZeRO-3 gathers and reduce-scatters, launch and
   * synchronisation); measured by the profile's validation at degree 1. Absent: 0.
   */
  microBatchMs?: number;
  /**
   * ms a group of degree d pays per micro-batch on top of β1 (its all-to-alls' per-call latency, the cost of
   * small per-rank shards); by degree, from the profile's validation. Absent degrees: nearest measured one; none: 0.
   */
  groupMs?: Record<number, number>;
  /** ms every step pays outside its micro-batches (gradient all-reduce, optimizer). Absent: 0. */
  stepMs?: number;
  /** Activation memory per token (MB) under the profiled checkpointing policy. */
  actMbPerToken: number;
  /** Activation memory per token (MB) with full checkpointing, if profiled. */
  actMbPerTokenFull?: number;
  /** Parameter count override (else computed from the model shape). */
  params?: number;
  /** Per-device all-to-all bandwidth (GB/s) by degree, for groups inside one node and groups spanning nodes. */
  bandwidth: { intra: Record<number, number>; inter: Record<number, number> };
  /** Relative speed per executor kind. */
  deviceSpeed?: Record<string, number>;
}

/** Planner settings. */
export interface PlannerConfig {
  strategy: typeof PLANNER_STRATEGIES[number];
  staticDegree?: number;
  memoryBudgetGb?: number;
  zeroStage: 0 | 1 | 2 | 3;
  buckets: number | "auto";
  microBatchTrials: number;
  timeLimitMs: number;
  milp: typeof MILP_SOLVERS[number];
  deterministic: boolean;
  minDegree: number;
  overflow: typeof OVERFLOW_POLICIES[number];
}

/** Training settings. */
export interface TrainingConfig {
  dataset?: string;
  /** Built-in corpus built into `dataset` when it does not exist yet. */
  datasetBuiltin?: typeof BUILTIN_DATASETS[number];
  lengths?: typeof LENGTH_DISTRIBUTIONS[number];
  globalBatch: number;
  steps: number;
  lr: number;
  weightDecay: number;
  gradClip: number;
  warmupSteps: number;
  seed: number;
  longSequences: typeof LONG_SEQUENCE_POLICIES[number];
  checkpointDir?: string;
  checkpointInterval: number;
  /** training.checkpoint_async: torch executors write checkpoints in the background while steps go on. */
  checkpointAsync: boolean;
  onFailure: typeof FAILURE_POLICIES[number];
  /** Complete checkpoints kept. */
  keepCheckpoints: number;
  /** training.precision of the torch executors ("auto": bf16 on cuda, fp32 on torch-cpu). */
  precision: typeof PRECISIONS[number];
  /** training.allow_quadratic_attention: long sequences may use an attention kernel with s² scores. */
  allowQuadraticAttention: boolean;
  /** Automatic relaunches before giving up. */
  maxRestarts: number;
  /** `auto`: resume a run directory that already holds this run (a requeued job) by itself. */
  resume: typeof RESUME_MODES[number];
  /** Seconds a step may take (`training.step_timeout`), or `auto` (see stepTimeoutMs). */
  stepTimeoutS: number | "auto";
  /** A simulation with `executor: sim` on every node (a test and benchmark tool; trains nothing). */
  simulate: boolean;
}

/** A fully validated config. Paths inside are resolved relative to the config file. */
export interface Config {
  name: string;
  /** The file it was read from. */
  source: string;
  cluster: {
    nodes: NodeConfig[];
    connectTimeoutS: number;
    heartbeatTimeoutS: number;
    /** `slurm`: nodes come from the allocation (see orchestrator/cluster/slurm_allocation.ts). */
    scheduler?: typeof SCHEDULERS[number];
  };
  model: ModelConfig;
  training: TrainingConfig;
  planner: PlannerConfig;
  profile: { path?: string; constants?: CostConstants };
  /** The validated document as plain data (for hashing and checkpoints). */
  document: Record<string, unknown>;
}
