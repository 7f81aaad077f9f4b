// The schema of cluster.yaml: every key a user may write, its type and its default.

import type { Field, Spec } from "./schema_spec.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { EXECUTOR_KIND_CHOICES } from "../../core/protocol.ts";

// The value lists of the enum keys; types.ts derives the Config's union types from them.
/** How the orchestrator reaches a node. */
export const TRANSPORTS = ["local", "ssh"] as const;
/** What an unknown SSH host key gets. */
export const HOST_KEY_POLICIES = ["strict", "accept-new"] as const;
/** Where the nodes come from: the config, or a Slurm allocation. */
export const SCHEDULERS = ["none", "slurm"] as const;
/** Activation checkpointing policies. */
export const CHECKPOINTING_POLICIES = ["none", "selective", "full"] as const;
/** Corpora built into training.dataset on first use. */
export const BUILTIN_DATASETS = ["deno-corpus"] as const;
/** Sequence-length distributions of the synthetic data. */
export const LENGTH_DISTRIBUTIONS = ["wikipedia", "github", "commoncrawl"] as const;
/** What happens to a sequence above model.max_seq. */
export const LONG_SEQUENCE_POLICIES = ["split", "drop"] as const;
/** training.on_failure. */
export const FAILURE_POLICIES = ["stop", "restart", "elastic"] as const;
/** training.resume. */
export const RESUME_MODES = ["never", "auto"] as const;
/** training.precision of the torch executors. */
export const PRECISIONS = ["auto", "bf16", "fp32"] as const;
/** planner.strategy. */
export const PLANNER_STRATEGIES = ["flexsp", "static", "batchada"] as const;
/** planner.milp. */
export const MILP_SOLVERS = ["glpk", "highs", "none"] as const;
/** planner.overflow: a sequence no group can hold. */
export const OVERFLOW_POLICIES = ["error", "drop"] as const;

const posInt: Spec = { kind: "int", min: 1 };
const nonNegInt: Spec = { kind: "int", min: 0 };
const posNum: Spec = { kind: "number", positive: true };
const str: Spec = { kind: "string" };
const f = (spec: Spec, extra: Omit<Field, "spec"> = {}): Field => ({ spec, ...extra });

/** Per-degree bandwidth table, GB/s per device: `{2: 119.5, 4: 104.1}`. Keys are checked by the resolver. */
const bandwidthTable: Spec = { kind: "object", fields: {}, openKeys: posNum };
/** Per-degree fixed ms of a group per micro-batch: `{2: 1.5, 4: 3.2}`. */
const groupMsTable: Spec = { kind: "object", fields: {}, openKeys: { kind: "number", min: 0 } };

/** Cost constants of one model on one cluster (the paper's α/β model; times in ms). */
export const costConstantsSpec: Spec = {
  kind: "object",
  fields: {
    alpha1: f({ kind: "number", min: 0 }, { required: true }),
    alpha2: f({ kind: "number", min: 0 }, { required: true }),
    beta1: f({ kind: "number", min: 0 }, { default: 0 }),
    act_mb_per_token: f(posNum, { required: true }),
    act_mb_per_token_full: f(posNum),
    params: f(posNum),
    /** Parameter counts by context length (`{196608: 7.64e9}`), linearly interpolated at `model.max_seq`. */
    params_by_max_seq: f({ kind: "object", fields: {}, openKeys: posNum }),
    bandwidth_gbps: f({
      kind: "object",
      fields: { intra: f(bandwidthTable, { default: {} }), inter: f(bandwidthTable, { default: {} }) },
    }, { required: true }),
    /** Relative speed of each executor kind's device; a group runs at its slowest device. */
    device_speed: f({ kind: "object", fields: {}, openKeys: posNum }),
    /** Fixed ms per micro-batch, per group by degree (on top of beta1) and per step (profiled; absent: 0). */
    micro_batch_ms: f({ kind: "number", min: 0 }),
    group_ms: f(groupMsTable),
    step_ms: f({ kind: "number", min: 0 }),
  },
};

const nodeSpec: Spec = {
  kind: "object",
  fields: {
    host: f(str, { required: true }),
    transport: f({ kind: "enum", values: TRANSPORTS }, { default: "ssh" }),
    user: f(str),
    port: f({ kind: "int", min: 1, max: 65535 }, { default: 22 }),
    identity: f(str),
    known_hosts: f(str),
    host_key_policy: f({ kind: "enum", values: HOST_KEY_POLICIES }, { default: "strict" }),
    devices: f(posInt, { required: true }),
    executor: f({ kind: "enum", values: EXECUTOR_KIND_CHOICES }, { default: "auto" }),
    device_memory_gb: f(posNum),
    /** Planner memory budget of this node's devices (GB); overrides planner.memory_budget_gb. */
    memory_budget_gb: f(posNum),
    speed: f(posNum, { default: 1 }),
    deno: f(str),
    python: f(str, { default: "python3" }),
    workdir: f(str),
    /** Bastions to go through, outermost first: `[user@]host[:port]` (overrides the ssh config's ProxyJump). */
    jump: f({ kind: "oneOf", options: [str, { kind: "array", of: str }], expected: "a host or a list of hosts" }),
    /** The ssh config whose Host entries apply (default ~/.ssh/config). */
    ssh_config: f(str),
    /**
     * Cores of each executor: `off` (the OS schedules them anywhere), `auto` (the node's usable CPUs in one block per
     * device) or one CPU list per device (`["0-3", "4-7"]`). No default: an absent key is `off` and leaves the run's
     * document as it was.
     */
    cpu_pinning: f({
      kind: "oneOf",
      options: [{ kind: "enum", values: ["auto", "off"] }, { kind: "array", of: str, minItems: 1 }],
      expected: "auto, off or a list of CPU lists (one per device)",
    }),
  },
};

/** The whole config file. */
export const clusterConfigSpec: Spec = {
  kind: "object",
  fields: {
    name: f(str, { default: "flexsp" }),
    cluster: f({
      kind: "object",
      fields: {
        /** Required unless `scheduler: slurm` (then the nodes come from the allocation). */
        nodes: f({ kind: "array", of: nodeSpec, minItems: 1 }),
        /** `slurm`: run inside an allocation (sbatch/salloc); nodes from SLURM_JOB_NODELIST, agents via srun. */
        // No defaults on these keys: configs without them keep the document (and run fingerprint) they had before.
        scheduler: f({ kind: "enum", values: SCHEDULERS }),
        /** Slurm: devices of every node (default: the GPUs Slurm gave each node). */
        devices_per_node: f(posInt),
        /** Slurm: node keys applied to every node of the allocation. */
        executor: f({ kind: "enum", values: EXECUTOR_KIND_CHOICES }),
        device_memory_gb: f(posNum),
        speed: f(posNum),
        deno: f(str),
        python: f(str),
        workdir: f(str),
        connect_timeout_s: f(posNum, { default: 10 }),
        heartbeat_timeout_s: f(posNum, { default: 10 }),
      },
    }, { required: true }),
    model: f({
      kind: "object",
      fields: {
        preset: f({ kind: "enum", values: Object.keys(MODEL_PRESETS) }),
        /** A Hugging Face model directory (llama, mistral, qwen2); overrides preset. */
        from: f(str),
        layers: f(posInt),
        hidden: f(posInt),
        heads: f(posInt),
        vocab: f(posInt),
        max_seq: f(posInt),
        /** Parameter count (overrides the profile's and the GPT-2 formula's). */
        params: f(posNum),
        checkpointing: f({ kind: "enum", values: CHECKPOINTING_POLICIES }, { default: "selective" }),
      },
    }, { required: true }),
    training: f({
      kind: "object",
      fields: {
        dataset: f(str),
        /** Built into `dataset` on first use when that directory holds no dataset yet (see orchestrator/data/). */
        dataset_builtin: f({ kind: "enum", values: BUILTIN_DATASETS }),
        lengths: f({ kind: "enum", values: LENGTH_DISTRIBUTIONS }),
        global_batch: f(posInt, { default: 16 }),
        steps: f(posInt, { default: 50 }),
        lr: f(posNum, { default: 3e-3 }),
        weight_decay: f({ kind: "number", min: 0 }, { default: 0.01 }),
        grad_clip: f({ kind: "number", min: 0 }, { default: 1 }),
        warmup_steps: f(nonNegInt, { default: 0 }),
        seed: f(nonNegInt, { default: 1 }),
        long_sequences: f({ kind: "enum", values: LONG_SEQUENCE_POLICIES }, { default: "split" }),
        checkpoint_dir: f(str),
        checkpoint_interval: f(nonNegInt, { default: 10 }),
        /**
         * Torch executors: write checkpoints in the background (DCP async_save); steps go on while a checkpoint is
         * written, and it counts (manifest, log) only once durable. Costs a host copy of each rank's shard.
         */
        checkpoint_async: f({ kind: "bool" }, { default: false }),
        on_failure: f({ kind: "enum", values: FAILURE_POLICIES }, { default: "stop" }),
        /** Complete checkpoints kept in the run directory (older ones are deleted). */
        keep_checkpoints: f(posInt, { default: 3 }),
        /** Automatic relaunches (on_failure: restart or elastic) before the run gives up. */
        max_restarts: f(nonNegInt, { default: 3 }),
        /**
         * Seconds a step may take before it fails as a timeout naming the ranks that did not answer; `auto`:
         * max(120 s, 50 x the predicted step time).
         */
        step_timeout: f({
          kind: "oneOf",
          options: [posNum, { kind: "enum", values: ["auto"] }],
          expected: 'seconds (a positive number) or "auto"',
        }, { default: "auto" }),
        /** `auto`: a run directory that already holds this run (a requeued Slurm job) is resumed without --resume. */
        resume: f({ kind: "enum", values: RESUME_MODES }, { default: "never" }),
        /**
         * Compute precision of the torch executors: bf16 (bfloat16 compute, float32 master weights and gradient
         * reduction) or fp32; `auto` is bf16 on cuda and fp32 on torch-cpu. The TypeScript executors compute in fp32.
         */
        precision: f({ kind: "enum", values: PRECISIONS }, { default: "auto" }),
        /** Let a sequence above 4K tokens use an attention kernel that materialises its s² scores (refused otherwise). */
        allow_quadratic_attention: f({ kind: "bool" }, { default: false }),
        /**
         * A simulation, not training: every node runs `executor: sim` (kernels/sim_executor.ts), which sleeps for the
         * planner's predicted time and reports made-up losses. For measuring the control plane (tests, bench).
         */
        simulate: f({ kind: "bool" }, { default: false }),
      },
    }, { default: {} }),
    planner: f({
      kind: "object",
      fields: {
        strategy: f({ kind: "enum", values: PLANNER_STRATEGIES }, { default: "flexsp" }),
        static_degree: f(posInt),
        memory_budget_gb: f(posNum),
        zero_stage: f({ kind: "int", min: 0, max: 3 }, { default: 3 }),
        buckets: f({
          kind: "oneOf",
          options: [posInt, { kind: "enum", values: ["auto"] }],
          expected: 'a positive integer or "auto"',
        }, { default: "auto" }),
        micro_batch_trials: f(posInt, { default: 4 }),
        time_limit_ms: f(posNum, { default: 1000 }),
        milp: f({ kind: "enum", values: MILP_SOLVERS }, { default: "highs" }),
        deterministic: f({ kind: "bool" }, { default: false }),
        min_degree: f(posInt, { default: 1 }),
        overflow: f({ kind: "enum", values: OVERFLOW_POLICIES }, { default: "error" }),
      },
    }, { default: {} }),
    profile: f({
      kind: "object",
      fields: {
        path: f(str),
        constants: f(costConstantsSpec),
        models: f({ kind: "object", fields: {}, openKeys: costConstantsSpec }),
      },
    }, { default: {} }),
    /** Watching a run: dashboard, metrics, MFU peaks, straggler and hang reports (orchestrator/run/observe/). */
    observe: f({
      kind: "object",
      fields: {
        dashboard: f({ kind: "bool" }, { default: true }),
        /** Listen address of the dashboard; anything but loopback exposes it (token-protected) to the network. */
        listen: f(str, { default: "127.0.0.1" }),
        /** 0: a free port. */
        port: f({ kind: "int", min: 0, max: 65535 }, { default: 0 }),
        /** bf16 dense peak TFLOP/s per device, by a substring of the device name (overrides the built-in table). */
        peak_tflops: f({ kind: "object", fields: {}, openKeys: posNum }, { default: {} }),
        /** A rank is a straggler when its group times exceed their prediction by this factor ... */
        straggler_factor: f(posNum, { default: 2 }),
        /** ... for this many steps in a row ... */
        straggler_steps: f(posInt, { default: 3 }),
        /** ... and by at least this many ms per step (noise on tiny groups is not a straggler). */
        straggler_min_ms: f({ kind: "number", min: 0 }, { default: 50 }),
        /** A step running longer than this multiple of its prediction is reported with the ranks it waits for ... */
        hang_factor: f(posNum, { default: 10 }),
        /** ... but not before this many seconds. */
        hang_min_s: f({ kind: "number", min: 0 }, { default: 30 }),
      },
    }, { default: {} }),
  },
};
