// The per-node agent: speaks AgentCommand lines on stdin and AgentEvent lines on stdout, reports the node's
// inventory, supervises one executor per device, sends heartbeats, and when stdin closes (or it is told to, or the
// orchestrator falls silent) kills its whole process tree and exits.
//
// Run: deno run -A agents/agent.ts   (over SSH: the bundled agent-<hash>.js; logs on stderr)

import {
  type AgentCommand,
  type AgentEvent,
  encodeMessage,
  type ExecutorSpawn,
  type Inventory,
  PROTOCOL_VERSION,
  readMessages,
} from "../core/protocol.ts";
import { collectInventory, probeWebGpu } from "./inventory.ts";
import { ensureXdgRuntimeDir } from "../kernels/webgpu/device.ts";
import { ExecutorSupervisor } from "./executor_supervisor.ts";
import { descendants, signalAll } from "./process_tree.ts";
import { StepBatch } from "./step_batch.ts";
import { rankPlan } from "../core/plan_scope.ts";
import { ownCpus } from "../core/cpu_list.ts";

type Hello = Extract<AgentCommand, { type: "hello" }>;

const encoder = new TextEncoder();
const stdout = Deno.stdout.writable.getWriter();
let outputBroken = false;
let agentLog: Deno.FsFile | undefined;
let pendingLog: string[] = [];

function logLine(level: string, text: string): void {
  const line = `${new Date().toISOString()} ${level} ${text}\n`;
  console.error(line.trimEnd());
  if (agentLog) {
    try {
      agentLog.writeSync(encoder.encode(line));
    } catch { /* ignore */ }
  } else if (pendingLog.length < 200) pendingLog.push(line);
}

function send(ev: AgentEvent): void {
  if (outputBroken) return;
  stdout.write(encoder.encode(encodeMessage(ev))).catch(() => {
    if (outputBroken) return;
    outputBroken = true;
    void shutdown("control channel broken (stdout closed)", 1000);
  });
}

let hello: Hello | undefined;
let helloDone: Promise<Inventory> | undefined;
let supervisor: ExecutorSupervisor | undefined;
let lastHeard = Date.now();
let heartbeatTimer: ReturnType<typeof setInterval> | undefined;
let watchdogTimer: ReturnType<typeof setInterval> | undefined;
let stopping: Promise<never> | undefined;
/** The node's replies to node steps, collected per node (agents/step_batch.ts). */
const replies = new StepBatch(send);

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, "_");
}

/** Kills every executor and descendant, flushes output and exits. Idempotent. */
function shutdown(reason: string, graceMs: number): Promise<never> {
  stopping ??= (async () => {
    logLine("info", `shutting down: ${reason}`);
    clearInterval(heartbeatTimer);
    clearInterval(watchdogTimer);
    replies.close();
    try {
      if (supervisor) await supervisor.stopAll(graceMs);
      // Anything else this agent started (probes) goes too.
      signalAll([], descendants(Deno.pid), "SIGKILL");
    } catch (e) {
      logLine("error", `while stopping executors: ${(e as Error).message}`);
    }
    try {
      await Promise.race([stdout.close(), new Promise((r) => setTimeout(r, 500))]);
    } catch { /* the channel may be gone */ }
    Deno.exit(0);
  })();
  return stopping;
}

async function onHello(cmd: Hello): Promise<Inventory> {
  hello = cmd;
  const node = cmd.node ?? Deno.hostname();
  const logDir = `${cmd.runDir}/logs/${safeName(node)}`;
  const python = cmd.python ?? "python3";
  const { inventory, warnings } = await collectInventory({
    webgpu: cmd.probeWebgpu !== false,
    python: cmd.torchPackage
      ? {
        command: python,
        torchPackage: cmd.torchPackage,
        when: cmd.probePython === undefined ? "gpus" : cmd.probePython ? "always" : "never",
      }
      : undefined,
  });
  for (const w of warnings) {
    logLine("warn", w);
    send({ type: "log", level: "warn", text: w });
  }
  let webgpuProbed = cmd.probeWebgpu !== false;
  supervisor = new ExecutorSupervisor({
    runId: cmd.runId,
    runDir: cmd.runDir,
    logDir,
    node,
    executorEntry: cmd.executorEntry,
    denoFlags: cmd.executorDenoFlags,
    python,
    torchPackage: cmd.torchPackage,
    cpus: inventory.cpus,
    availableCpus: ownCpus(),
    cpuPinning: cmd.cpuPinning,
    resolveKind: async (kind: ExecutorSpawn["kind"]) => {
      if (kind !== "auto") return kind;
      if (inventory.gpus.length && inventory.python?.torch && inventory.python.cudaAvailable) return "cuda";
      if (!webgpuProbed) {
        webgpuProbed = true;
        const w: string[] = [];
        inventory.webgpu = await probeWebGpu(w);
      }
      return inventory.webgpu ? "webgpu" : "cpu";
    },
    emit: (ev) => replies.offer(ev),
    log: (level, text) => logLine(level, text),
  });
  heartbeatTimer = setInterval(() => {
    send({ type: "heartbeat", t: Date.now(), executors: supervisor?.states() ?? [] });
  }, Math.max(20, cmd.heartbeatMs));
  if (cmd.orphanTimeoutMs && cmd.orphanTimeoutMs > 0) {
    const limit = cmd.orphanTimeoutMs;
    watchdogTimer = setInterval(() => {
      const silent = Date.now() - lastHeard;
      if (silent > limit) void shutdown(`no word from the orchestrator for ${(silent / 1000).toFixed(1)} s`, 1000);
    }, Math.min(1000, Math.max(50, limit / 4)));
  }
  send({ type: "hello", version: PROTOCOL_VERSION, inventory, pid: Deno.pid });
  return inventory;
}

function openAgentLog(): void {
  if (agentLog || !hello) return;
  const dir = `${hello.runDir}/logs/${safeName(hello.node ?? Deno.hostname())}`;
  try {
    Deno.mkdirSync(dir, { recursive: true });
    agentLog = Deno.openSync(`${dir}/agent.log`, { create: true, append: true });
    for (const l of pendingLog) agentLog.writeSync(encoder.encode(l));
    pendingLog = [];
  } catch (e) {
    console.error(`cannot open the agent log in ${dir}: ${(e as Error).message}`);
  }
}

async function handle(cmd: AgentCommand): Promise<void> {
  switch (cmd.type) {
    case "ping":
      send({ type: "pong", id: cmd.id, t: cmd.t });
      return;
    case "hello":
      if (hello) {
        send({ type: "protocol_error", source: "orchestrator", message: "second hello ignored" });
        return;
      }
      if (cmd.version !== PROTOCOL_VERSION) {
        const msg = `orchestrator speaks protocol version ${cmd.version}, this agent ${PROTOCOL_VERSION}`;
        send({ type: "protocol_error", source: "orchestrator", message: msg });
        await shutdown(msg, 0);
        return;
      }
      helloDone = onHello(cmd);
      helloDone.catch((e) => {
        send({ type: "log", level: "error", text: `inventory failed: ${(e as Error).message}` });
        void shutdown("inventory failed", 0);
      });
      return;
    case "spawn":
      if (!helloDone) {
        send({ type: "protocol_error", source: "orchestrator", message: "spawn before hello ignored" });
        return;
      }
      await helloDone;
      openAgentLog();
      logLine("info", `spawning ranks ${cmd.executors.map((e) => e.rank).join(", ")}`);
      await supervisor!.spawn(cmd.executors);
      return;
    case "to_executor":
      if (!supervisor) {
        send({ type: "protocol_error", source: "orchestrator", message: "to_executor before hello ignored" });
        return;
      }
      supervisor.send(cmd.rank, cmd.msg);
      return;
    case "to_executors":
      if (!supervisor) {
        send({ type: "protocol_error", source: "orchestrator", message: "to_executors before hello ignored" });
        return;
      }
      for (const rank of cmd.ranks) supervisor.send(rank, cmd.msg);
      return;
    case "step": {
      if (!supervisor) {
        send({ type: "protocol_error", source: "orchestrator", message: "step before hello ignored" });
        return;
      }
      const ranks = supervisor.ranks();
      // A rank already gone gets nothing to wait for (its exit was reported; `send` logs the drop).
      replies.start(cmd.plan.step, supervisor.ranks(true));
      for (const rank of ranks) {
        let plan;
        try {
          plan = rankPlan(cmd.plan, rank);
        } catch (e) {
          const message = (e as Error).message;
          replies.offer({
            type: "from_executor",
            rank,
            msg: { type: "error", rank, message, fatal: false, echo: false },
          });
          continue;
        }
        supervisor.send(rank, { type: "step", plan });
      }
      return;
    }
    case "shutdown":
      await shutdown(`orchestrator: ${cmd.reason ?? "shutdown"}`, cmd.graceMs ?? 3000);
      return;
  }
}

async function main(): Promise<void> {
  ensureXdgRuntimeDir();
  // Ctrl-C in a terminal reaches every process of the foreground group; the orchestrator decides what happens.
  Deno.addSignalListener("SIGINT", () => {});
  // In a Slurm step (FLEXSP_DEFER_SIGTERM=1) Slurm's SIGTERM on scancel, time limit or preemption reaches every
  // process at once: the orchestrator finishes the step, checkpoints and then shuts the agent down itself.
  const deferTerm = Deno.env.get("FLEXSP_DEFER_SIGTERM") === "1";
  for (const sig of ["SIGTERM", "SIGHUP"] as const) {
    Deno.addSignalListener(sig, () => {
      if (sig === "SIGTERM" && deferTerm) logLine("info", "SIGTERM received: left to the orchestrator");
      else void shutdown(`${sig} received`, 1000);
    });
  }
  // spawn waits for the inventory, and commands for executors must stay behind it; pings never wait.
  let chain: Promise<void> = Promise.resolve();
  const commands = readMessages<AgentCommand>(Deno.stdin.readable, "orchestrator", (error) => {
    lastHeard = Date.now();
    logLine("warn", `dropped a bad line: ${error}`);
    send({ type: "protocol_error", source: "orchestrator", message: error });
  }, "agent_command");
  for await (const cmd of commands) {
    lastHeard = Date.now();
    if (cmd.type === "spawn" || cmd.type === "to_executor" || cmd.type === "to_executors" || cmd.type === "step") {
      chain = chain.then(() => handle(cmd)).catch((e) => logLine("error", `${cmd.type}: ${(e as Error).message}`));
    } else {
      await handle(cmd);
    }
  }
  await shutdown("control channel closed (stdin at end of file)", 1000);
}

if (import.meta.main) {
  main().catch((e) => {
    logLine("error", `agent failed: ${(e as Error).stack ?? e}`);
    void shutdown("internal error", 500);
  });
}
