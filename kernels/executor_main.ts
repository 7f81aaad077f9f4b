// The executor process: `deno run -A kernels/executor_main.ts --kind cpu|webgpu --device N`. Reads
// `ExecutorCommand` lines on stdin, writes `ExecutorEvent` lines on stdout (core/protocol.ts), logs to stderr.
// Exits 0 after `shutdown` or when stdin closes (the agent went away), 1 after a fatal error.
//
// Environment: FLEXSP_DP_CONNECT_TIMEOUT_MS (default 60000) and FLEXSP_DP_OP_TIMEOUT_MS (default 600000) bound the
// data plane's waits for peers. FLEXSP_TEST_STEP_DELAY=RANK:MS[:FIRST[-LAST]] (a test hook) makes that rank sleep MS
// before each of its busy micro-batches (in steps FIRST..LAST), to test straggler and hang reports.

import { parseArgs } from "node:util";
import {
  encodeMessage,
  type ExecutorCommand,
  type ExecutorEvent,
  isTsKind,
  readMessages,
  TS_EXECUTOR_KINDS,
} from "../core/protocol.ts";
import type { Backend } from "./backend.ts";
import { createCpuBackend } from "./cpu/backend.ts";
import { Executor, type StepDelay } from "./executor.ts";

/** Loads the WebGPU backend of `kernels/webgpu/backend.ts`, with a clear error when it or an adapter is missing. */
export async function loadWebGpuBackend(): Promise<Backend> {
  // A literal specifier, so `deno bundle` includes the backend in the executor bundle shipped to SSH nodes.
  let mod: { createWebGpuBackend?: () => Promise<Backend> };
  try {
    mod = await import("./webgpu/backend.ts");
  } catch (e) {
    throw new Error(`WebGPU executor: cannot load the WebGPU backend (${(e as Error).message}); use --kind cpu`, {
      cause: e,
    });
  }
  if (typeof mod.createWebGpuBackend !== "function") {
    throw new Error("WebGPU executor: kernels/webgpu/backend.ts does not export createWebGpuBackend()");
  }
  if (!("gpu" in navigator) || !navigator.gpu) throw new Error("WebGPU executor: navigator.gpu is not available");
  try {
    return await mod.createWebGpuBackend();
  } catch (e) {
    throw new Error(`WebGPU executor: no usable adapter: ${(e as Error).message}`, { cause: e });
  }
}

function envMs(name: string, fallback: number): number {
  const v = Deno.env.get(name);
  const n = v === undefined ? fallback : Number(v);
  if (!(n > 0)) throw new Error(`${name} must be a positive number of milliseconds, got "${v}"`);
  return n;
}

/** Parses FLEXSP_TEST_STEP_DELAY (see the header); undefined when unset. */
export function parseStepDelay(text: string | undefined): StepDelay | undefined {
  if (!text) return undefined;
  const m = /^(\d+):(\d+(?:\.\d+)?)(?::(\d+)(?:-(\d+))?)?$/.exec(text.trim());
  if (!m) throw new Error(`FLEXSP_TEST_STEP_DELAY must look like RANK:MS[:FIRST[-LAST]], got "${text}"`);
  const first = m[3] === undefined ? 1 : Number(m[3]);
  return {
    rank: Number(m[1]),
    ms: Number(m[2]),
    firstStep: first,
    lastStep: m[4] !== undefined ? Number(m[4]) : m[3] !== undefined ? first : Infinity,
  };
}

async function main(): Promise<number> {
  // In a Slurm step, SIGTERM (scancel, time limit, preemption) reaches every process at once; the orchestrator
  // finishes the step and checkpoints first, then shuts executors down through their agent.
  if (Deno.env.get("FLEXSP_DEFER_SIGTERM") === "1") Deno.addSignalListener("SIGTERM", () => {});
  // stdout is the protocol channel: keep stray console.log output off it.
  console.log = console.error;
  const { values } = parseArgs({
    args: Deno.args,
    options: { kind: { type: "string", default: "cpu" }, device: { type: "string", default: "0" } },
    strict: true,
  });
  const kind = values.kind;
  const device = Number(values.device);
  if (!isTsKind(kind)) {
    console.error(`executor: --kind must be ${TS_EXECUTOR_KINDS.join(" or ")}, got "${kind}"`);
    return 2;
  }
  if (!Number.isInteger(device) || device < 0) {
    console.error(`executor: --device must be a non-negative integer, got "${values.device}"`);
    return 2;
  }
  const enc = new TextEncoder();
  const emit = (ev: ExecutorEvent) => {
    const bytes = enc.encode(encodeMessage(ev));
    let o = 0;
    while (o < bytes.length) o += Deno.stdout.writeSync(bytes.subarray(o));
  };
  const log = (line: string) => console.error(`[executor ${kind}:${device}] ${line}`);
  const exec = new Executor({
    kind,
    device,
    createBackend: kind === "cpu" ? () => Promise.resolve(createCpuBackend()) : loadWebGpuBackend,
    connectTimeoutMs: envMs("FLEXSP_DP_CONNECT_TIMEOUT_MS", 60_000),
    opTimeoutMs: envMs("FLEXSP_DP_OP_TIMEOUT_MS", 600_000),
    testDelay: parseStepDelay(Deno.env.get("FLEXSP_TEST_STEP_DELAY")),
    log,
  }, emit);
  const onBadLine = (error: string) => {
    log(error);
    emit({ type: "error", rank: exec.rank, message: error, fatal: false, echo: false });
  };
  for await (
    const cmd of readMessages<ExecutorCommand>(
      Deno.stdin.readable,
      "executor stdin",
      onBadLine,
      "executor_command",
    )
  ) {
    const r = await exec.handle(cmd);
    if (r === "exit") return cmd.type === "shutdown" ? 0 : 1;
  }
  log("stdin closed; shutting down");
  await exec.close();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
