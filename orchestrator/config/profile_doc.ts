// The profile JSON written by `deno task profile` (schema 2): cluster fingerprint, fitted constants, fit errors and
// the raw samples they came from. The `constants` object uses the keys of the YAML `profile.constants`.

import type { StoredConstants } from "./cost_constants.ts";
import type { Spec } from "./schema_spec.ts";
import { EXECUTOR_KIND_CHOICES } from "../../core/protocol.ts";

/** Current profile schema version. */
export const PROFILE_SCHEMA_VERSION = 2;

/** The part of the fingerprint a config alone determines (what `plan` can check without touching the cluster). */
export interface ClusterKey {
  model: {
    layers: number;
    hidden: number;
    heads: number;
    vocab: number;
    maxSeq: number;
    checkpointing: string;
    /** Llama-family shape (absent for gpt, so GPT profiles keep the fingerprint they had). */
    family?: string;
    kvHeads?: number;
    headDim?: number;
    intermediate?: number;
  };
  nodes: { host: string; devices: number; executor: string }[];
}

/** What a node reported when it was profiled. */
export interface NodeFingerprint {
  index: number;
  host: string;
  hostname: string;
  os: string;
  arch: string;
  cpuModel?: string;
  cpus: number;
  memoryGb: number;
  deno: string;
  executorKind: string;
  gpus: { name: string; memoryMb: number }[];
  webgpu?: { description: string; vendor: string };
  /** Device descriptions from the executors' `ready` (one per device). */
  devices: string[];
}

/** Identity of the profiled cluster: config-level key and hash, per-node hardware, software versions. */
export interface Fingerprint {
  cluster: ClusterKey;
  /** sha256 (hex, 16 chars) of the canonical JSON of `cluster`. */
  clusterHash: string;
  nodes: NodeFingerprint[];
  software: { deno: string; executor: string; protocol: number; os: string };
}

export type { StoredConstants };

/** One compute grid point: `count` sequences of `length` tokens in one packed batch. */
export interface GridPoint {
  count: number;
  length: number;
  /** Left out of the fit and used to measure the fit's error on unseen points. */
  heldOut: boolean;
}

/** Fit of `ms = α1·Σs² + α2·Σs + β1` for one device type. */
export interface ComputeFit {
  alpha1: number;
  alpha2: number;
  beta1: number;
  r2: number;
  maxRelErr: number;
  medianRelErr: number;
}

/** Compute results. */
export interface ComputeSection {
  grid: { points: GridPoint[]; repeats: number; warmup: number };
  deviceTypes: {
    type: string;
    kind: string;
    ranks: number[];
    /** Fit over every point (the published constants). */
    fit: ComputeFit;
    /** Fit without the held-out points, and its error on them. */
    heldOut: { fit: ComputeFit; points: number; maxRelErr: number; medianRelErr: number };
    /** Per point: median over repeats and ranks (ms). */
    pointMs: number[];
    /** Speed relative to the reference type (time of the reference / time of this type). */
    speed: number;
  }[];
  /** The device type whose fit became the constants. */
  reference: string;
  perDevice: { rank: number; node: number; type: string; speed: number }[];
  /** Load factor of each round (see compute_fit.ts `roundFactors`); their spread shows how steady the machine was. */
  roundFactors?: number[];
  /** Raw timings: one per rank and timed run. */
  samples: { rank: number; point: number; ms: number; round: number }[];
}

/** Memory results. */
export interface MemorySection {
  source: string;
  actMbPerToken: number;
  actFit: { slopeMb: number; interceptMb: number; r2: number };
  /** Model states an executor measured (parameters, gradients, AdamW moments). */
  modelStateMb: number;
  /** Model states per device the planner assumes (params × 16 B × ZeRO ratio). */
  plannerModelStateMb: number;
  budgetMb: number;
  tokenCapacity: number;
  perDevice: { rank: number; budgetMb: number; tokenCapacity: number }[];
  samples: { rank: number; tokens: number; peakMb: number }[];
}

/** All-to-all results of one degree and placement. */
export interface AllToAllResult {
  degree: number;
  /** Whether the groups span nodes. */
  spans: boolean;
  groups: number[][];
  /** Per message size (bytes per rank per call): median over iterations of the slowest group member (ms). */
  samples: { bytes: number; ms: number }[];
  latencyMs: number;
  /** Asymptotic per-device bandwidth, 2^20 bytes per ms of the executor's own data ("GB/s"). */
  gbps: number;
  r2: number;
  /** The cost model's v[d] derived from it (see `network.units`). */
  effectiveGbps: number;
}

/** Point-to-point results between nodes (one representative rank each). */
export interface P2PSection {
  ranks: number[];
  hosts: string[];
  /**
   * [i][j]: latency (ms of one small exchange) and effective bandwidth (GB/s each way in a large exchange) between
   * node i and node j; on the diagonal between two devices of node i (null when it has one).
   */
  latencyMs: (number | null)[][];
  gbps: (number | null)[][];
  slow: { a: number; b: number; why: string }[];
}

/** Network results. */
export interface NetworkSection {
  alltoall: AllToAllResult[];
  p2p?: P2PSection;
  /** How `bandwidth_gbps` relates to the measurements. */
  units: string;
  /** Tokens per group at which per-call latency is folded into `effectiveGbps`. */
  representativeTokens: number;
  /** v[d] refitted against real group runs (see calibrate.ts); the constants use the calibrated values. */
  calibration?: Calibration[];
}

/** One calibrated bandwidth. */
export interface Calibration {
  degree: number;
  spans: boolean;
  /** v[d] from the microbenchmark (GB/s, cost-model units). */
  microbenchGbps: number;
  /** v[d] after calibration. */
  calibratedGbps: number;
  /** Fixed ms per group per micro-batch this degree showed on top of β1 and the micro-batch's (`group_ms`). */
  groupMs?: number;
  points: number;
  /** Whether the constants use it (only when it predicts the validation better than the microbenchmark). */
  applied: boolean;
}

/** End-to-end check: real step plans, one sequence per group, all aligned groups of a degree at once. */
export interface ValidationSection {
  points: { degree: number; spans: boolean; length: number; measuredMs: number; predictedMs: number; relErr: number }[];
  medianRelErr: number;
  maxRelErr: number;
  /**
   * Median per-step time outside the micro-batches (gradient all-reduce, optimizer) in the validation steps: the
   * cost model's `step_ms` (plans predict whole steps with it).
   */
  stepOverheadMs?: number;
  /**
   * The validation's real steps at degree 1 against the compute grid's fit: `measured ≈ computeScale·(β1 + compute)
   * + microBatchMs` (the scale is applied to α1, α2 and β1 when the fitted terms predict the validation better).
   */
  degreeOne?: { computeScale: number; microBatchMs: number };
  /**
   * The planner's own plans with the fitted constants, run as training steps (`--fidelity N`): predicted against
   * measured step and group times (signed median and median |error|; error = predicted/measured - 1).
   */
  planned?: {
    steps: number;
    step: { medianAbs: number; median: number; maxAbs: number };
    group: { medianAbs: number; median: number; maxAbs: number };
    /** Device speed after the replay relative to the validation (1: the machine's load did not change). */
    speedAfter?: number;
  };
  /** The same errors with the microbenchmark's bandwidths (before calibration), when calibrated. */
  uncalibrated?: { medianRelErr: number; maxRelErr: number };
}

/** The whole profile document. */
export interface ProfileDoc {
  schema: number;
  tool: string;
  createdAt: string;
  durationMs: number;
  config: string;
  fingerprint: Fingerprint;
  constants: StoredConstants;
  /** sha256 of the canonical JSON of `constants` when written (a mismatch means the constants were edited). */
  constantsSha256?: string;
  compute: ComputeSection;
  memory: MemorySection;
  network: NetworkSection;
  validation?: ValidationSection;
  warnings: string[];
}

const posInt: Spec = { kind: "int", min: 1 };
const str: Spec = { kind: "string" };

/** Schema of `fingerprint.cluster` (checked strictly: the fingerprint check reads every field). */
export const clusterKeySpec: Spec = {
  kind: "object",
  fields: {
    model: {
      spec: {
        kind: "object",
        fields: {
          layers: { spec: posInt, required: true },
          hidden: { spec: posInt, required: true },
          heads: { spec: posInt, required: true },
          vocab: { spec: posInt, required: true },
          maxSeq: { spec: posInt, required: true },
          checkpointing: { spec: { kind: "enum", values: ["none", "selective", "full"] }, required: true },
          family: { spec: { kind: "enum", values: ["gpt", "llama"] } },
          kvHeads: { spec: posInt },
          headDim: { spec: posInt },
          intermediate: { spec: posInt },
        },
      },
      required: true,
    },
    nodes: {
      spec: {
        kind: "array",
        minItems: 1,
        of: {
          kind: "object",
          fields: {
            host: { spec: str, required: true },
            devices: { spec: posInt, required: true },
            executor: {
              spec: { kind: "enum", values: EXECUTOR_KIND_CHOICES },
              required: true,
            },
          },
        },
      },
      required: true,
    },
  },
};
