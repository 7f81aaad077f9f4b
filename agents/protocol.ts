// Every message of the three tiers (orchestrator <-> agent <-> executor): newline-delimited JSON, versioned,
// validated on receipt. A malformed or unknown line is reported with its source and dropped, never thrown.

import type { ModelShape } from "../orchestrator/config/presets.ts";

/** Bumped on any incompatible change; peers with another version are refused at `hello`. */
export const PROTOCOL_VERSION = 1;

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
}

/** The part of a step plan every executor receives. */
export interface ExecutorStepPlan {
  step: number;
  microBatches: { groups: GroupAssignment[] }[];
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
}

/** A data-plane endpoint of one rank. */
export interface Endpoint {
  rank: number;
  host: string;
  port: number;
}

// ---------- orchestrator -> executor (forwarded by the agent) ----------

export type ExecutorCommand =
  | { type: "init"; init: ExecutorInit }
  | { type: "peers"; endpoints: Endpoint[] }
  | { type: "step"; plan: ExecutorStepPlan }
  | { type: "save"; path: string }
  | { type: "load"; path: string }
  | { type: "shutdown" };

// ---------- executor -> orchestrator ----------

export type ExecutorEvent =
  | { type: "ready"; rank: number; kind: "cpu" | "webgpu" | "cuda"; device: string; endpoint: Endpoint }
  | { type: "connected"; rank: number }
  | {
    type: "step_done";
    rank: number;
    step: number;
    /** Per micro-batch: measured ms, summed token loss, tokens this rank's group handled (counted once per group). */
    microBatches: { ms: number; lossSum: number; tokens: number }[];
    ms: number;
  }
  | { type: "saved"; rank: number; path: string; sha256: string; bytes: number }
  | { type: "loaded"; rank: number; path: string }
  | { type: "error"; rank: number; message: string; fatal: boolean };

// ---------- orchestrator -> agent ----------

export interface ExecutorSpawn {
  rank: number;
  /** Device index on the node. */
  device: number;
  kind: "cpu" | "webgpu" | "cuda";
  env?: Record<string, string>;
}

export type AgentCommand =
  | { type: "hello"; version: number; runId: string; runDir: string; heartbeatMs: number }
  | { type: "ping"; id: number; t: number }
  | { type: "spawn"; executors: ExecutorSpawn[] }
  | { type: "to_executor"; rank: number; msg: ExecutorCommand }
  | { type: "shutdown"; reason: string };

// ---------- agent -> orchestrator ----------

export interface Inventory {
  hostname: string;
  os: string;
  arch: string;
  cpus: number;
  memoryGb: number;
  deno: string;
  gpus: { index: number; name: string; memoryMb: number }[];
  webgpu?: { description: string; vendor: string; isFallbackAdapter: boolean; limits: Record<string, number> };
}

export type AgentEvent =
  | { type: "hello"; version: number; inventory: Inventory }
  | { type: "pong"; id: number; t: number }
  | { type: "heartbeat"; t: number; executors: { rank: number; pid: number; alive: boolean }[] }
  | { type: "from_executor"; rank: number; msg: ExecutorEvent }
  | { type: "executor_exit"; rank: number; code: number | null; signal: string | null; logTail: string }
  | { type: "log"; level: "info" | "warn" | "error"; text: string }
  | { type: "protocol_error"; source: string; message: string };

/** Any message on any channel, with the version stamp. */
export type Message = (AgentCommand | AgentEvent | ExecutorCommand | ExecutorEvent) & { v?: number };

// ---------- validation ----------

type FieldType = "string" | "number" | "boolean" | "object" | "array" | "any";
const SCHEMAS: Record<string, Record<string, FieldType>> = {
  // executor commands
  init: { init: "object" },
  peers: { endpoints: "array" },
  step: { plan: "object" },
  save: { path: "string" },
  load: { path: "string" },
  shutdown: {},
  // executor events
  ready: { rank: "number", kind: "string", device: "string", endpoint: "object" },
  connected: { rank: "number" },
  step_done: { rank: "number", step: "number", microBatches: "array", ms: "number" },
  saved: { rank: "number", path: "string", sha256: "string", bytes: "number" },
  loaded: { rank: "number", path: "string" },
  error: { message: "string" },
  // agent commands
  hello: { version: "number" },
  ping: { id: "number", t: "number" },
  spawn: { executors: "array" },
  to_executor: { rank: "number", msg: "object" },
  // agent events
  pong: { id: "number", t: "number" },
  heartbeat: { t: "number", executors: "array" },
  from_executor: { rank: "number", msg: "object" },
  executor_exit: { rank: "number", logTail: "string" },
  log: { level: "string", text: "string" },
  protocol_error: { source: "string", message: "string" },
};

/** The outcome of reading one line. */
export type ParseResult<T> = { ok: true; msg: T } | { ok: false; error: string };

/** Parses and validates one protocol line; never throws. `source` names the sender in the error. */
export function parseMessage<T = Message>(line: string, source: string): ParseResult<T> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, error: `${source}: not JSON: ${line.slice(0, 120)}` };
  }
  const err = checkMessage(value);
  if (err) return { ok: false, error: `${source}: ${err}: ${line.slice(0, 120)}` };
  return { ok: true, msg: value as T };
}

function typeOf(v: unknown): FieldType {
  if (Array.isArray(v)) return "array";
  return (v === null ? "null" : typeof v) as FieldType;
}

/** Returns why a decoded value is not a valid message, or undefined if it is. */
export function checkMessage(value: unknown): string | undefined {
  if (typeOf(value) !== "object") return "not a JSON object";
  const m = value as Record<string, unknown>;
  if (m.v !== undefined && m.v !== PROTOCOL_VERSION) return `protocol version ${m.v}, expected ${PROTOCOL_VERSION}`;
  if (typeof m.type !== "string") return 'missing "type"';
  const schema = SCHEMAS[m.type];
  if (!schema) return `unknown message type "${m.type}"`;
  for (const [k, t] of Object.entries(schema)) {
    if (t !== "any" && typeOf(m[k]) !== t) return `"${m.type}" needs ${k}: ${t}`;
  }
  for (const nested of ["msg"]) {
    if (m.type === "to_executor" || m.type === "from_executor") {
      const inner = checkMessage(m[nested]);
      if (inner) return `inner ${nested}: ${inner}`;
    }
  }
  return undefined;
}

/** Serialises a message as one protocol line (with the version stamp and a trailing newline). */
export function encodeMessage(msg: Message): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, ...msg }) + "\n";
}

/** Splits a byte stream into lines and yields each decoded, validated message; bad lines go to `onError`. */
export async function* readMessages<T = Message>(
  stream: ReadableStream<Uint8Array>,
  source: string,
  onError: (error: string) => void,
): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const r = parseMessage<T>(line, source);
      if (r.ok) yield r.msg;
      else onError(r.error);
    }
  }
  const rest = buf.trim();
  if (rest) {
    const r = parseMessage<T>(rest, source);
    if (r.ok) yield r.msg;
    else onError(r.error);
  }
}
