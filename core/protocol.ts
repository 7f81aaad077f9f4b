// Every message of the three tiers (orchestrator <-> agent <-> executor): newline-delimited JSON, versioned,
// validated on receipt. A malformed or unknown line is reported with its source and dropped, never thrown.

import type { ModelShape } from "./model_shape.ts";

/** Bumped on any incompatible change; peers with another version are refused at `hello`. */
export const PROTOCOL_VERSION = 1;

/**
 * The start of a `to_executor` line for `rank`, up to its `msg` (the caller appends the command's JSON and `}`):
 * the step loop writes commands this way without building and re-serialising a wrapper object per rank.
 */
export const STEP_FIELDS = (rank: number): string =>
  `{"v":${PROTOCOL_VERSION},"type":"to_executor","rank":${rank},"msg":`;

// ---------- shared pieces ----------

/** A sequence an executor trains on: its id in the dataset index, where its tokens are, how many. */
export interface SequenceRef {
  id: number;
  /** Token offset in the dataset's token file (tokens, not bytes). */
  offset: number;
  length: number;
}

/** One SP group of a micro-batch, as an executor sees it. */
export interface GroupAssignment {
  degree: number;
  /** Global ranks, an aligned block; the executor's position in it is its SP rank. */
  ranks: number[];
  sequences: SequenceRef[];
  /** The planner's predicted time of this group's micro-batch (ms); the simulated executor sleeps this long. */
  predictedMs?: number;
}

/**
 * A step plan as an executor (or an agent) receives it. `scope` says which groups it holds: all of them (absent or
 * "all": every executor checks the whole plan), those that involve one node's ranks ("node": the orchestrator's
 * one step message per agent, see core/plan_scope.ts), or, per micro-batch, only the receiving rank's own group
 * ("rank": what an agent hands each executor; the orchestrator checked that the groups cover every rank).
 */
export interface ExecutorStepPlan {
  step: number;
  microBatches: { groups: GroupAssignment[] }[];
  scope?: "all" | "node" | "rank";
  /** Tokens whose loss is averaged this step (over all groups and micro-batches). */
  globalTokens: number;
  lr: number;
}

/** What an executor needs to start. */
export interface ExecutorInit {
  rank: number;
  worldSize: number;
  model: ModelShape;
  seed: number;
  optimizer: { lr: number; weightDecay: number; gradClip: number; beta1: number; beta2: number; eps: number };
  /** Token file of the dataset on this node (uint16 or uint32 little-endian, see dataset docs). */
  dataset?: { tokensPath: string; tokenBytes: 2 | 4 };
  /** Per-run secret authenticating data-plane connections. */
  secret: string;
  /** Address the executor's data-plane listener binds to and advertises. */
  bindHost: string;
  /** A Hugging Face model directory on the node whose weights the torch executors load (model.from). */
  modelFrom?: string;
  /** Activation checkpointing (model.checkpointing; the llama family of the torch executors implements it). */
  checkpointing?: "none" | "selective" | "full";
  /**
   * planner.zero_stage: 0 keeps full replicas (gradient all-reduce); 3 shards parameters, gradients and AdamW
   * moments over all ranks (FSDP2; the torch executors' llama family). Absent means 0.
   */
  zeroStage?: 0 | 1 | 2 | 3;
  /** training.precision of the torch executors; absent: bf16 on cuda, fp32 on torch-cpu. */
  precision?: "bf16" | "fp32";
  /** training.allow_quadratic_attention: a sequence above 4K tokens may use an attention kernel with s² scores. */
  allowQuadraticAttention?: boolean;
  /**
   * training.checkpoint_async (torch executors): `save` returns once the state is staged in host memory; `saved`
   * comes once the checkpoint is durable, while later commands (steps) run.
   */
  checkpointAsync?: boolean;
}

/** A data-plane endpoint of one rank. */
export interface Endpoint {
  rank: number;
  host: string;
  port: number;
}

/** One file of a sharded (torch) checkpoint: its name in the checkpoint directory, size and sha256. */
export interface CheckpointFile {
  name: string;
  bytes: number;
  sha256: string;
}

// ---------- orchestrator -> executor (forwarded by the agent) ----------

export type ExecutorCommand =
  | { type: "init"; init: ExecutorInit }
  | { type: "peers"; endpoints: Endpoint[] }
  | { type: "step"; plan: ExecutorStepPlan }
  /**
   * The TypeScript executors write their whole state to the file `path`; the torch executors write a sharded
   * checkpoint (torch.distributed.checkpoint) into the directory `path`, every rank of the run together, each rank
   * only what it owns, and list its files in `saved`.
   */
  | { type: "save"; path: string }
  | {
    type: "load";
    path: string;
    /** TypeScript executors: expected sha256 of the file; a mismatch is refused (non-fatal error), nothing loaded. */
    sha256?: string;
    /**
     * Torch executors: every file of the checkpoint directory `path` (from its manifest). Every rank checks they
     * are all there with their sizes, hashes its share, and all refuse together (non-fatal) if one is wrong.
     */
    files?: CheckpointFile[];
  }
  | { type: "shutdown" }
  | { type: "profile_compute"; request: ProfileComputeRequest }
  | { type: "profile_alltoall"; request: ProfileAllToAllRequest };

// ---------- profiling (`deno task profile`; kernels/profiling.ts) ----------

/** Forward+backward timing of packed degree-1 batches, with activation-memory tracking. */
export interface ProfileComputeRequest {
  /** Unique id; prefixes the barrier tags. */
  id: string;
  /** Grid points: `count` sequences of `length` tokens packed into one batch. */
  points: { count: number; length: number }[];
  /** Order in which the points run: indices into `points`, repeats included (the same on every rank). */
  order: number[];
  /** Untimed runs of the first point in `order` before timing starts. */
  warmup: number;
  /** All ranks wait for each other before every run (all devices busy at once, as in training). */
  barrier: boolean;
}

/** What one rank measured for a `profile_compute`. */
export interface ProfileComputeResult {
  id: string;
  /** One sample per timed run, in `order`. */
  samples: { point: number; ms: number; tokens: number; peakBytes: number }[];
  /** Bytes of parameters, gradients and optimizer moments this executor keeps. */
  modelStateBytes: number;
  /** Where `peakBytes` comes from: the executor's own buffer accounting, or the device allocator's peak. */
  memorySource: "buffers" | "device_peak";
  /** The device, as `ready` names it. */
  device: string;
}

/** Timed all-to-alls of several groups at once (every rank takes part in the barriers). */
export interface ProfileAllToAllRequest {
  id: string;
  /** Groups running concurrently (global ranks); ranks in no group only join the barriers. */
  groups: number[][];
  /** Bytes each group member sends per all-to-all (all destinations together, its own chunk included). */
  sizes: number[];
  warmup: number;
  iters: number;
}

/** What one rank measured for a `profile_alltoall`: per size, the ms of each timed iteration (empty if idle). */
export interface ProfileAllToAllResult {
  id: string;
  samples: { bytes: number; ms: number[] }[];
}

// ---------- executor -> orchestrator ----------

/** How long creating the SP-group pool's groups of one degree took on a rank (`connected.pool`). */
export interface PoolDegreeTiming {
  /** The groups' size. */
  degree: number;
  /** How many groups of that degree (N / degree for N ranks). */
  groups: number;
  ms: number;
}

export type ExecutorEvent =
  | {
    type: "ready";
    rank: number;
    kind: ExecutorKindName;
    device: string;
    endpoint: Endpoint;
    /** The attention kernel and its dtype (torch executors), e.g. "flash varlen (bfloat16)". */
    attention?: string;
    /** The compute precision (torch executors). */
    precision?: string;
  }
  | {
    type: "connected";
    rank: number;
    /** SP-group pool creation per degree (the PyTorch executors; the TypeScript ones build no pool and omit it). */
    pool?: PoolDegreeTiming[];
  }
  | {
    type: "step_done";
    rank: number;
    step: number;
    /** Per micro-batch: measured ms, summed token loss, tokens this rank's group handled (counted once per group). */
    microBatches: { ms: number; lossSum: number; tokens: number }[];
    ms: number;
    /** L2 norm of the summed gradient before clipping (absent from executors that do not report it). */
    gradNorm?: number;
  }
  /** Sent after each micro-batch of a step (lets the orchestrator name the ranks a slow step waits for). */
  | { type: "step_progress"; rank: number; step: number; microBatch: number; ms: number }
  /**
   * `sha256` and `bytes`: of the file `path` (TypeScript executors); torch executors add `files`, the files of the
   * directory `path` this rank wrote, with `bytes` their sum and `sha256` that of the list, and `peakHostBytes`, how
   * far the rank's resident host memory rose above its level before the save, at its highest (also in `loaded`).
   */
  | {
    type: "saved";
    rank: number;
    path: string;
    sha256: string;
    bytes: number;
    files?: CheckpointFile[];
    peakHostBytes?: number;
  }
  | { type: "loaded"; rank: number; path: string; peakHostBytes?: number }
  /**
   * A failed command. `fatal`: the executor is unusable and exits (false: a refusal, the executor stays usable).
   * `echo`: the error only repeats another rank's failure, noticed over the data plane (a peer disconnected, a
   * collective aborted), so it is never the root cause while another fault is known. Executors set it from the
   * error's class, never from its text; an executor that omits it (older ones) is read as `echo: false`.
   * `waitingFor`: for a collective that timed out, the rank it waited for.
   */
  | { type: "error"; rank: number; message: string; fatal: boolean; echo: boolean; waitingFor?: number }
  | { type: "profile_compute_done"; rank: number; result: ProfileComputeResult }
  | { type: "profile_alltoall_done"; rank: number; result: ProfileAllToAllResult };

// ---------- orchestrator -> agent ----------

/**
 * A concrete executor kind. `sim` is the simulated executor (kernels/sim_executor.ts): a test and benchmark tool that
 * trains nothing; the agent runs it in its own process.
 */
export const EXECUTOR_KINDS = ["cpu", "webgpu", "cuda", "torch-cpu", "sim"] as const;
/** One of {@link EXECUTOR_KINDS}. */
export type ExecutorKindName = typeof EXECUTOR_KINDS[number];
/** What a config or a spawn may name: a concrete kind, or `auto` (the agent picks one on its node). */
export const EXECUTOR_KIND_CHOICES = [...EXECUTOR_KINDS, "auto"] as const;
/** One of {@link EXECUTOR_KIND_CHOICES}. */
export type ExecutorKindChoice = typeof EXECUTOR_KIND_CHOICES[number];
/** The kinds the TypeScript executor (kernels/executor.ts) runs. */
export const TS_EXECUTOR_KINDS = ["cpu", "webgpu"] as const satisfies readonly ExecutorKindName[];
/** One of {@link TS_EXECUTOR_KINDS}. */
export type TsExecutorKind = typeof TS_EXECUTOR_KINDS[number];
/** The kinds the PyTorch executor (kernels/torch/) runs. */
export const TORCH_EXECUTOR_KINDS = ["cuda", "torch-cpu"] as const satisfies readonly ExecutorKindName[];
/** One of {@link TORCH_EXECUTOR_KINDS}. */
export type TorchExecutorKind = typeof TORCH_EXECUTOR_KINDS[number];

/** Whether a kind runs the PyTorch executor (`kernels/torch/`) rather than a TypeScript one. */
export function isTorchKind(kind: string): kind is TorchExecutorKind {
  return (TORCH_EXECUTOR_KINDS as readonly string[]).includes(kind);
}

/** Whether a kind runs the TypeScript executor (cpu or webgpu). */
export function isTsKind(kind: string): kind is TsExecutorKind {
  return (TS_EXECUTOR_KINDS as readonly string[]).includes(kind);
}

export interface ExecutorSpawn {
  rank: number;
  /** Device index on the node. */
  device: number;
  /** `auto`: the agent picks cuda (GPUs and torch with CUDA), else webgpu (a WebGPU adapter), else cpu. */
  kind: ExecutorKindChoice;
  env?: Record<string, string>;
  /** Working directory of the executor (default: the node's run directory). */
  cwd?: string;
  /** Full argv overriding the default `deno run -A <executorEntry> --kind K --device N`. */
  command?: string[];
}

export type AgentCommand =
  | {
    type: "hello";
    version: number;
    runId: string;
    /** Run directory on the node; logs go to `<runDir>/logs/<node>/`. */
    runDir: string;
    heartbeatMs: number;
    /** Name of the node in logs (default: its hostname). */
    node?: string;
    /** Path on the node of the executor entry script (default command of `spawn`). */
    executorEntry?: string;
    /** Extra `deno run` flags of the default executor command (e.g. `--config <repo>/deno.json`). */
    executorDenoFlags?: string[];
    /** The agent shuts down when it hears nothing from the orchestrator for this long (default: never). */
    orphanTimeoutMs?: number;
    /** Ask for a WebGPU adapter in the inventory (default true). */
    probeWebgpu?: boolean;
    /** The node's Python for the PyTorch executors (`cluster.nodes[].python`, default `python3`). */
    python?: string;
    /** Directory on the node of the `kernels/torch` package (its `executor_main.py` and `probe.py`). */
    torchPackage?: string;
    /** Probe the Python and torch for the inventory: always, never, or (default) when the node has NVIDIA GPUs. */
    probePython?: boolean;
    /**
     * `cluster.nodes[].cpu_pinning`: `auto` (the agent splits its usable CPUs into one block per device) or one CPU
     * list per device (`0-3`); absent: executors are not pinned.
     */
    cpuPinning?: "auto" | string[];
  }
  | { type: "ping"; id: number; t: number }
  | { type: "spawn"; executors: ExecutorSpawn[] }
  | { type: "to_executor"; rank: number; msg: ExecutorCommand }
  /** The same command for several of the node's ranks (one line per node in place of one per rank). */
  | { type: "to_executors"; ranks: number[]; msg: ExecutorCommand }
  /**
   * One step for the node: `plan` (scope "node") holds the groups that involve the node's ranks; the agent hands
   * each local executor a plan of scope "rank" and answers with one `from_executors` line of their `step_done`s.
   */
  | { type: "step"; plan: ExecutorStepPlan }
  | {
    type: "shutdown";
    reason: string;
    /** How long executors get to exit after their own shutdown command before the tree is killed (default 3000). */
    graceMs?: number;
  };

// ---------- agent -> orchestrator ----------

export interface Inventory {
  hostname: string;
  os: string;
  arch: string;
  cpus: number;
  /** CPU model name, when the OS tells it. */
  cpuModel?: string;
  memoryGb: number;
  deno: string;
  gpus: { index: number; name: string; memoryMb: number }[];
  webgpu?: { description: string; vendor: string; isFallbackAdapter: boolean; limits: Record<string, number> };
  /** The node's Python and PyTorch, as `kernels/torch/probe.py` reports them (absent when not probed). */
  python?: PythonInfo;
}

/** What the node's Python has for the PyTorch executors (`kernels/torch/probe.py`, one JSON line). */
export interface PythonInfo {
  /** The Python as configured (`python3` or a path). */
  command: string;
  /** `3.11.7`; null when the Python could not be run. */
  python: string | null;
  /** `sys.executable`. */
  executable: string | null;
  /** `2.13.0+cpu`; null without torch. */
  torch: string | null;
  /** transformers' version (the executor's model code); null when not installed, absent from older probes. */
  transformers?: string | null;
  /** CUDA version torch was built with; null for a CPU build. */
  cuda: string | null;
  cudaAvailable: boolean;
  nccl: string | null;
  gpus: { name: string; memoryMb: number }[];
  /** Why the probe (or importing torch) failed. */
  error: string | null;
}

export type AgentEvent =
  | {
    type: "hello";
    version: number;
    inventory: Inventory;
    /** The agent's process id on its node. */
    pid?: number;
  }
  | { type: "pong"; id: number; t: number }
  | {
    type: "spawned";
    executors: {
      rank: number;
      pid: number;
      kind: ExecutorKindName;
      device: number;
      logPath: string;
      /** The CPUs the executor may run on (a CPU list, `0-3`): its pinned set, or all the agent's when unpinned. */
      cpus?: string;
      /** Whether the agent pinned it to `cpus` (cpu_pinning). */
      pinned?: boolean;
    }[];
  }
  | {
    type: "heartbeat";
    t: number;
    /** `stopped`: the process is stopped (SIGSTOP, a debugger): alive, but it cannot make progress. */
    executors: { rank: number; pid: number; alive: boolean; stopped?: boolean }[];
  }
  | { type: "from_executor"; rank: number; msg: ExecutorEvent }
  /** Several executors' events in one line (the node's `step_done`s of a node step); read as one `from_executor` each. */
  | { type: "from_executors"; msgs: { rank: number; msg: ExecutorEvent }[] }
  | { type: "executor_exit"; rank: number; code: number | null; signal: string | null; logTail: string }
  | { type: "log"; level: "info" | "warn" | "error"; text: string }
  | { type: "protocol_error"; source: string; message: string };

/** Any message on any channel, with the version stamp. */
export type Message = (AgentCommand | AgentEvent | ExecutorCommand | ExecutorEvent) & { v?: number };

// ---------- validation ----------

/** A direction of one channel; a receiver accepts only the messages its peer may send. */
export type Channel = "agent_command" | "agent_event" | "executor_command" | "executor_event";

type BaseFieldType = "string" | "number" | "boolean" | "object" | "array" | "any";
/** A field's JSON type; with a trailing `?` the field may also be absent. */
type FieldType = BaseFieldType | `${BaseFieldType}?`;
type Schema = Record<string, FieldType>;
/**
 * The validation rows of a message union: exactly one row per message type, naming only fields that type has. The
 * compiler checks the tables below against the types above, so a new message type cannot go without validation.
 */
type Rows<T extends { type: string }> = {
  [K in T["type"]]: { [F in Exclude<keyof Extract<T, { type: K }>, "type">]?: FieldType };
};

const EXECUTOR_COMMANDS: Rows<ExecutorCommand> = {
  init: { init: "object" },
  peers: { endpoints: "array" },
  step: { plan: "object" },
  save: { path: "string" },
  load: { path: "string", sha256: "string?", files: "array?" },
  shutdown: {},
  profile_compute: { request: "object" },
  profile_alltoall: { request: "object" },
};
const EXECUTOR_EVENTS: Rows<ExecutorEvent> = {
  ready: { rank: "number", kind: "string", device: "string", endpoint: "object" },
  connected: { rank: "number", pool: "array?" },
  step_done: { rank: "number", step: "number", microBatches: "array", ms: "number" },
  step_progress: { rank: "number", step: "number", microBatch: "number", ms: "number" },
  saved: {
    rank: "number",
    path: "string",
    sha256: "string",
    bytes: "number",
    files: "array?",
    peakHostBytes: "number?",
  },
  loaded: { rank: "number", path: "string", peakHostBytes: "number?" },
  error: { message: "string", echo: "boolean?", waitingFor: "number?" },
  profile_compute_done: { rank: "number", result: "object" },
  profile_alltoall_done: { rank: "number", result: "object" },
};
const AGENT_COMMANDS: Rows<AgentCommand> = {
  hello: { version: "number", runId: "string", runDir: "string", heartbeatMs: "number" },
  ping: { id: "number", t: "number" },
  spawn: { executors: "array" },
  to_executor: { rank: "number", msg: "object" },
  to_executors: { ranks: "array", msg: "object" },
  step: { plan: "object" },
  shutdown: {},
};
const AGENT_EVENTS: Rows<AgentEvent> = {
  hello: { version: "number", inventory: "object" },
  pong: { id: "number", t: "number" },
  spawned: { executors: "array" },
  heartbeat: { t: "number", executors: "array" },
  from_executor: { rank: "number", msg: "object" },
  from_executors: { msgs: "array" },
  executor_exit: { rank: "number", logTail: "string" },
  log: { level: "string", text: "string" },
  protocol_error: { source: "string", message: "string" },
};
const CHANNELS: Record<Channel, Record<string, Schema>> = {
  agent_command: AGENT_COMMANDS,
  agent_event: AGENT_EVENTS,
  executor_command: EXECUTOR_COMMANDS,
  executor_event: EXECUTOR_EVENTS,
};
/** The loosest schema of each type over all channels (for receivers that do not say which channel they read). */
const ANY_CHANNEL: Record<string, Schema> = {
  ...EXECUTOR_COMMANDS,
  ...EXECUTOR_EVENTS,
  ...AGENT_COMMANDS,
  ...AGENT_EVENTS,
  hello: { version: "number" },
};
const SPAWN_ITEM: Schema = { rank: "number", device: "number", kind: "string" };
const SPAWN_KINDS: readonly string[] = EXECUTOR_KIND_CHOICES;

/** The outcome of reading one line. */
export type ParseResult<T> = { ok: true; msg: T } | { ok: false; error: string };

/**
 * Parses and validates one protocol line; never throws. `source` names the sender in the error; `channel`, when
 * given, restricts the accepted messages to those that may travel on it.
 */
export function parseMessage<T = Message>(line: string, source: string, channel?: Channel): ParseResult<T> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, error: `${source}: not JSON: ${line.slice(0, 120)}` };
  }
  const err = checkMessage(value, channel);
  if (err) return { ok: false, error: `${source}: ${err}: ${line.slice(0, 120)}` };
  return { ok: true, msg: value as T };
}

function typeOf(v: unknown): BaseFieldType | "null" | "undefined" {
  if (Array.isArray(v)) return "array";
  return (v === null ? "null" : typeof v) as BaseFieldType;
}

function checkFields(m: Record<string, unknown>, schema: Schema, what: string): string | undefined {
  for (const [k, t] of Object.entries(schema)) {
    const optional = t.endsWith("?");
    const base = (optional ? t.slice(0, -1) : t) as BaseFieldType;
    if (optional && m[k] === undefined) continue;
    if (base !== "any" && typeOf(m[k]) !== base) {
      return `"${what}" needs ${k}: ${base}${optional ? ` (or no ${k})` : ""}`;
    }
  }
  return undefined;
}

/** Returns why a decoded value is not a valid message (on `channel`, if given), or undefined if it is. */
export function checkMessage(value: unknown, channel?: Channel): string | undefined {
  if (typeOf(value) !== "object") return "not a JSON object";
  const m = value as Record<string, unknown>;
  if (m.v !== undefined && m.v !== PROTOCOL_VERSION) return `protocol version ${m.v}, expected ${PROTOCOL_VERSION}`;
  if (typeof m.type !== "string") return 'missing "type"';
  const table = channel ? CHANNELS[channel] : ANY_CHANNEL;
  const schema = Object.hasOwn(table, m.type) ? table[m.type] : undefined;
  if (!schema) {
    return channel && Object.hasOwn(ANY_CHANNEL, m.type)
      ? `message "${m.type}" does not belong on the ${channel.replace("_", " ")} channel`
      : `unknown message type "${m.type}"`;
  }
  const bad = checkFields(m, schema, m.type);
  if (bad) return bad;
  if (m.type === "to_executor" || m.type === "from_executor" || m.type === "to_executors") {
    const inner = checkMessage(
      m.msg,
      channel === undefined ? undefined : m.type === "from_executor" ? "executor_event" : "executor_command",
    );
    if (inner) return `inner msg: ${inner}`;
  }
  if (m.type === "from_executors") {
    for (const item of m.msgs as unknown[]) {
      const e = item as Record<string, unknown>;
      if (typeOf(item) !== "object" || typeof e.rank !== "number") return '"from_executors" msgs need rank: number';
      const inner = checkMessage(e.msg, channel === undefined ? undefined : "executor_event");
      if (inner) return `inner msg: ${inner}`;
    }
  }
  if (m.type === "spawn" && (channel === "agent_command")) {
    for (const item of m.executors as unknown[]) {
      if (typeOf(item) !== "object") return '"spawn" executors must be objects';
      const e = item as Record<string, unknown>;
      const err = checkFields(e, SPAWN_ITEM, "spawn.executors[]");
      if (err) return err;
      if (!SPAWN_KINDS.includes(e.kind as string)) return `"spawn" kind must be one of ${SPAWN_KINDS.join(", ")}`;
      if (e.command !== undefined && !(Array.isArray(e.command) && e.command.every((a) => typeof a === "string"))) {
        return '"spawn" command must be a list of strings';
      }
      if (e.env !== undefined && typeOf(e.env) !== "object") return '"spawn" env must be an object';
    }
  }
  return undefined;
}

/** Serialises a message as one protocol line (with the version stamp and a trailing newline). */
export function encodeMessage(msg: Message): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, ...msg }) + "\n";
}

/**
 * Splits a byte stream into lines and yields each decoded, validated message; bad lines go to `onError`.
 * `channel`, when given, restricts the accepted messages (see `parseMessage`).
 */
export async function* readMessages<T = Message>(
  stream: ReadableStream<Uint8Array>,
  source: string,
  onError: (error: string) => void,
  channel?: Channel,
): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  let buf = "";
  let scanned = 0; // bytes of `buf` known to hold no newline (long lines arrive in many chunks)
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n", scanned)) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      scanned = 0;
      if (!line) continue;
      const r = parseMessage<T>(line, source, channel);
      if (r.ok) yield r.msg;
      else onError(r.error);
    }
    scanned = buf.length;
  }
  const rest = buf.trim();
  if (rest) {
    const r = parseMessage<T>(rest, source, channel);
    if (r.ok) yield r.msg;
    else onError(r.error);
  }
}
