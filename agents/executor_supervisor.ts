// Spawns and supervises the executors of one node: one process (group) per device with its environment and working
// directory (TypeScript executors under Deno, the PyTorch ones under the node's Python, each torch-cpu process with
// its share of the node's cores), stdout parsed as protocol events, stdout/stderr streamed into per-executor log files, a tail kept for
// failure reports, and a tree kill that leaves no process behind.

import {
  type AgentEvent,
  encodeMessage,
  type ExecutorCommand,
  type ExecutorEvent,
  type ExecutorKindName,
  type ExecutorSpawn,
  isTorchKind,
  parseMessage,
} from "../core/protocol.ts";
import { killTree, TreeTracker } from "./process_tree.ts";
import { SimExecutor, simOptionsFromEnv } from "../kernels/sim_executor.ts";
import { autoCpuSets, formatCpuList, parseCpuList } from "../core/cpu_list.ts";
import { torchModuleCommand } from "../core/torch_package.ts";

/** How executors are started on this node. */
export interface SupervisorContext {
  runId: string;
  /** Where logs go: `<logDir>/executor-<rank>.log`. */
  logDir: string;
  /** Default working directory. */
  runDir: string;
  node: string;
  /** Executor entry script for the default command. */
  executorEntry?: string;
  /** Extra `deno run` flags of the default command. */
  denoFlags?: string[];
  /** The node's Python for the PyTorch executors (default `python3`). */
  python?: string;
  /** Directory of the `kernels/torch` package on this node (the PyTorch executors' entry is in it). */
  torchPackage?: string;
  /** CPU cores of the node, shared by its torch-cpu executors (default: all the OS reports). */
  cpus?: number;
  /** The CPUs this agent may use (its own affinity); the executors' sets are drawn from them. */
  availableCpus?: number[];
  /** `cluster.nodes[].cpu_pinning`: `auto` or one CPU list per device; absent: no pinning. */
  cpuPinning?: "auto" | string[];
  /** Resolves `auto` to a concrete kind. */
  resolveKind: (kind: ExecutorSpawn["kind"]) => Promise<ExecutorKind>;
  /** Sends an event to the orchestrator. */
  emit: (ev: AgentEvent) => void;
  /** Writes a line to the agent's own log. */
  log: (level: "info" | "warn" | "error", text: string) => void;
}

/** Keeps the last lines written, up to a byte budget. */
export class LogTail {
  #lines: string[] = [];
  #bytes = 0;
  constructor(readonly maxLines = 40, readonly maxBytes = 4096) {}
  push(line: string): void {
    const l = line.length > 1000 ? line.slice(0, 1000) + "…" : line;
    this.#lines.push(l);
    this.#bytes += l.length + 1;
    while (this.#lines.length > this.maxLines || (this.#bytes > this.maxBytes && this.#lines.length > 1)) {
      this.#bytes -= this.#lines.shift()!.length + 1;
    }
  }
  text(): string {
    return this.#lines.join("\n");
  }
}

/** A concrete executor kind (what `auto` resolves to). */
export type ExecutorKind = ExecutorKindName;

/** Intra-op threads of each of `executors` torch-cpu processes sharing `cpus` cores: an equal share, at least 1. */
export function threadsPerExecutor(cpus: number, executors: number): number {
  return Math.max(1, Math.floor(cpus / Math.max(1, executors)));
}

interface Running {
  spec: ExecutorSpawn;
  kind: ExecutorKind;
  pid: number;
  /** Hands the executor a command: a line on its stdin, or a call into a simulated executor in this process. */
  deliver: (msg: ExecutorCommand) => void;
  /** End of input (stdin closed). */
  close: () => void;
  alive: boolean;
  logPath: string;
  /** Resolves when the process has exited and its output is drained and reported. */
  done: Promise<void>;
}

const encoder = new TextEncoder();

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
  buf += decoder.decode();
  if (buf) yield buf;
}

/** Supervises all executors of the node. */
export class ExecutorSupervisor {
  #running = new Map<number, Running>();
  #stopping = false;
  /** Every process seen below the agent, rescanned every second while executors run. */
  #tracker = new TreeTracker(Deno.pid);
  #scanTimer?: ReturnType<typeof setInterval>;
  constructor(readonly ctx: SupervisorContext) {}

  /** Executor states for heartbeats (`stopped`: SIGSTOPped or traced, so it cannot make progress). */
  states(): { rank: number; pid: number; alive: boolean; stopped?: boolean }[] {
    return [...this.#running.values()].map((r) => {
      const stopped = r.alive && processStopped(r.pid);
      return { rank: r.spec.rank, pid: r.pid, alive: r.alive, ...(stopped ? { stopped } : {}) };
    });
  }

  /** The ranks this node was told to run (only those still running with `alive`), in rank order. */
  ranks(alive = false): number[] {
    return [...this.#running.values()].filter((r) => !alive || r.alive).map((r) => r.spec.rank).sort((a, b) => a - b);
  }

  /** Starts executors; a failure to start one is reported as its exit, with the reason as the tail. */
  async spawn(specs: ExecutorSpawn[]): Promise<void> {
    if (this.#stopping) return;
    const started: Extract<AgentEvent, { type: "spawned" }>["executors"] = [];
    try {
      Deno.mkdirSync(this.ctx.logDir, { recursive: true });
    } catch (e) {
      this.ctx.log("error", `cannot create log directory ${this.ctx.logDir}: ${(e as Error).message}`);
    }
    const onNode = specs.length + [...this.#running.values()].filter((r) => r.alive).length;
    const shared = threadsPerExecutor(this.ctx.cpus ?? navigator.hardwareConcurrency, onNode);
    const devices = Math.max(onNode, ...specs.map((s) => s.device + 1));
    for (const spec of specs) {
      const prev = this.#running.get(spec.rank);
      if (prev?.alive) {
        this.ctx.emit({ type: "log", level: "error", text: `rank ${spec.rank} already runs (pid ${prev.pid})` });
        continue;
      }
      const pin = this.#cpuSet(spec.device, devices);
      const threads = typeof pin === "object" ? pin.length : shared;
      const r = await this.#start(spec, threads, pin);
      if (!r) continue;
      const cpus = typeof pin === "object" ? pin : this.ctx.availableCpus;
      started.push({
        rank: spec.rank,
        pid: r.pid,
        kind: r.kind,
        device: spec.device,
        logPath: r.logPath,
        ...(cpus ? { cpus: formatCpuList(cpus) } : {}),
        pinned: typeof pin === "object",
      });
    }
    this.#tracker.scan();
    this.#scanTimer ??= setInterval(() => this.#tracker.scan(), 1000);
    this.ctx.emit({ type: "spawned", executors: started });
  }

  /**
   * The CPUs device `device` of `devices` is pinned to under `cpu_pinning`; undefined when not pinned; a string when
   * the configured set cannot be used here (the reason).
   */
  #cpuSet(device: number, devices: number): number[] | string | undefined {
    const pinning = this.ctx.cpuPinning;
    if (!pinning) return undefined;
    const available = this.ctx.availableCpus ??
      Array.from({ length: this.ctx.cpus ?? navigator.hardwareConcurrency }, (_, i) => i);
    if (pinning === "auto") return autoCpuSets(available, devices)[device];
    const text = pinning[device];
    if (text === undefined) {
      return `cpu_pinning lists ${pinning.length} CPU set(s) but device ${device} needs one: list one per device`;
    }
    let set: number[];
    try {
      set = parseCpuList(text);
    } catch (e) {
      return `cpu_pinning "${text}" of device ${device}: ${(e as Error).message}`;
    }
    const missing = set.filter((c) => !available.includes(c));
    if (missing.length) {
      return `cpu_pinning "${text}" of device ${device}: CPU ${
        formatCpuList(missing)
      } not usable on ${this.ctx.node} ` +
        `(it has ${formatCpuList(available)}); list CPUs of this node or use cpu_pinning: auto`;
    }
    return set;
  }

  /** The default argv of a kind, or why there is none. */
  #defaultArgv(kind: ExecutorKind, device: number): string[] | string {
    const tail = ["--kind", kind, "--device", String(device)];
    if (isTorchKind(kind)) {
      if (!this.ctx.torchPackage) {
        return `no PyTorch executor on this node (the orchestrator sent no torchPackage in hello) for kind ${kind}`;
      }
      try {
        const { args } = torchModuleCommand(this.ctx.torchPackage, "executor_main");
        return [this.ctx.python ?? "python3", ...args, ...tail];
      } catch (e) {
        return (e as Error).message;
      }
    }
    if (!this.ctx.executorEntry) {
      return "no executor entry on this node (the orchestrator sent none in hello) and no command in spawn";
    }
    return [Deno.execPath(), "run", "-A", ...(this.ctx.denoFlags ?? []), this.ctx.executorEntry, ...tail];
  }

  /**
   * A simulated executor (kernels/sim_executor.ts) inside the agent's process: no process per rank, so a node holds
   * dozens. Its commands run one after the other; an injected exit is reported like a process's.
   */
  #startSim(spec: ExecutorSpawn): Running {
    const rank = spec.rank;
    const emit = (msg: ExecutorEvent) => this.ctx.emit({ type: "from_executor", rank, msg });
    let chain = Promise.resolve();
    let exited: () => void = () => {};
    const done = new Promise<void>((r) => exited = r);
    const exit = (code: number) => {
      if (!running.alive) return;
      running.alive = false;
      this.ctx.emit({
        type: "executor_exit",
        rank,
        code,
        signal: null,
        logTail: `simulated executor exited (${code})`,
      });
      exited();
    };
    const sim = new SimExecutor({
      ...simOptionsFromEnv({ ...Deno.env.toObject(), ...spec.env }, spec.device),
      onExit: exit,
    }, emit);
    const running: Running = {
      spec,
      kind: "sim",
      pid: Deno.pid,
      alive: true,
      logPath: "(in the agent's process)",
      done,
      deliver: (cmd) => {
        chain = chain.then(async () => {
          if (running.alive && (await sim.handle(cmd)) === "exit") exit(0);
        });
      },
      close: () => void chain.then(() => exit(0)),
    };
    return running;
  }

  async #start(spec: ExecutorSpawn, threads: number, pin: number[] | string | undefined): Promise<Running | undefined> {
    const kind = await this.ctx.resolveKind(spec.kind);
    if (kind === "sim") {
      const r = this.#startSim(spec);
      this.#running.set(spec.rank, r);
      return r;
    }
    const logPath = `${this.ctx.logDir}/executor-${spec.rank}.log`;
    let log: Deno.FsFile | undefined;
    try {
      log = Deno.openSync(logPath, { create: true, append: true });
    } catch (e) {
      this.ctx.log("warn", `cannot open ${logPath}: ${(e as Error).message}`);
    }
    const tail = new LogTail();
    const write = (line: string) => {
      tail.push(line);
      try {
        log?.writeSync(encoder.encode(line + "\n"));
      } catch { /* disk full: keep running */ }
    };
    const base = spec.command ?? this.#defaultArgv(kind, spec.device);
    // Pinned: `taskset -c SET` execs the executor with that affinity, inherited by every thread it starts.
    const argv = typeof pin === "string"
      ? pin
      : pin && typeof base !== "string"
      ? ["taskset", "-c", formatCpuList(pin), ...base]
      : base;
    const fail = (why: string) => {
      write(why);
      log?.close();
      this.ctx.log("error", `rank ${spec.rank}: ${why}`);
      this.ctx.emit({ type: "executor_exit", rank: spec.rank, code: null, signal: null, logTail: tail.text() });
    };
    if (typeof argv === "string") {
      fail(argv);
      return undefined;
    }
    const env: Record<string, string> = {
      FLEXSP_RUN_ID: this.ctx.runId,
      FLEXSP_NODE: this.ctx.node,
      FLEXSP_RANK: String(spec.rank),
      FLEXSP_DEVICE: String(spec.device),
      FLEXSP_EXECUTOR_KIND: kind,
      DENO_NO_UPDATE_CHECK: "1",
      ...(kind === "cuda" ? { CUDA_VISIBLE_DEVICES: String(spec.device) } : {}),
      // The protocol lines must not wait in a buffer; no __pycache__ beside a package used in place.
      ...(isTorchKind(kind) ? { PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1" } : {}),
      // The default command runs the package as `kernels.torch`: its root goes on PYTHONPATH.
      ...(isTorchKind(kind) && !spec.command && this.ctx.torchPackage
        ? torchModuleCommand(this.ctx.torchPackage, "executor_main", Deno.env.get("PYTHONPATH")).env
        : {}),
      ...(kind === "torch-cpu" ? { FLEXSP_THREADS: String(threads), OMP_NUM_THREADS: String(threads) } : {}),
      ...spec.env,
    };
    const cwd = spec.cwd ?? this.ctx.runDir;
    let child: Deno.ChildProcess;
    try {
      Deno.mkdirSync(cwd, { recursive: true });
      child = new Deno.Command(argv[0], {
        args: argv.slice(1),
        cwd,
        env,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        // Its own session and process group: the whole group is killed at shutdown.
        detached: true,
      }).spawn();
    } catch (e) {
      const noTaskset = pin && argv[0] === "taskset" && e instanceof Deno.errors.NotFound;
      fail(
        noTaskset
          ? `cpu_pinning needs taskset, which ${this.ctx.node} lacks: install util-linux there or set cpu_pinning: off`
          : `cannot start ${argv.join(" ")}: ${(e as Error).message}`,
      );
      return undefined;
    }
    write(`--- ${new Date().toISOString()} rank ${spec.rank} device ${spec.device} kind ${kind} pid ${child.pid}`);
    write(`--- ${argv.join(" ")} (cwd ${cwd})`);
    const source = `executor rank ${spec.rank} (pid ${child.pid})`;
    const pumpOut = (async () => {
      for await (const line of lines(child.stdout)) {
        write(`[stdout] ${line}`);
        if (!line.trim()) continue;
        const r = parseMessage<ExecutorEvent>(line, source, "executor_event");
        if (r.ok) this.ctx.emit({ type: "from_executor", rank: spec.rank, msg: r.msg });
        else this.ctx.emit({ type: "protocol_error", source, message: r.error });
      }
    })().catch(() => {});
    const pumpErr = (async () => {
      for await (const line of lines(child.stderr)) write(line);
    })().catch(() => {});
    const stdin = child.stdin.getWriter();
    const running: Running = {
      spec,
      kind,
      pid: child.pid,
      deliver: (msg) => void stdin.write(encoder.encode(encodeMessage(msg))).catch(() => {}),
      close: () => void stdin.close().catch(() => {}),
      alive: true,
      logPath,
      done: Promise.resolve(),
    };
    running.done = (async () => {
      const status = await child.status;
      running.alive = false;
      // The output pipes may be held open by grandchildren: wait for them only briefly.
      await Promise.race([Promise.all([pumpOut, pumpErr]), new Promise((r) => setTimeout(r, 500))]);
      write(`--- exited: code ${status.code}${status.signal ? `, signal ${status.signal}` : ""}`);
      log?.close();
      running.close();
      this.ctx.emit({
        type: "executor_exit",
        rank: spec.rank,
        code: status.signal ? null : status.code,
        signal: status.signal,
        logTail: tail.text(),
      });
    })();
    this.#running.set(spec.rank, running);
    return running;
  }

  /** Forwards a command to an executor's stdin. */
  send(rank: number, msg: ExecutorCommand): void {
    const r = this.#running.get(rank);
    if (!r || !r.alive) {
      this.ctx.emit({
        type: "log",
        level: "error",
        text: `${msg.type} for rank ${rank} dropped: no such executor runs on ${this.ctx.node}`,
      });
      return;
    }
    r.deliver(msg);
  }

  /**
   * Stops every executor: a `shutdown` command and end of file on stdin, `graceMs` to exit, then the whole tree
   * (process groups and every descendant of the agent) is killed.
   */
  async stopAll(graceMs: number): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#scanTimer);
    this.#tracker.scan();
    const all = [...this.#running.values()];
    for (const r of all.filter((r) => r.alive)) {
      r.deliver({ type: "shutdown" });
      r.close();
    }
    const exited = Promise.all(all.map((r) => r.done));
    await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
    await killTree(this.#tracker, all.filter((r) => r.kind !== "sim").map((r) => r.pid), 500);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 1000))]);
  }
}

/** Whether process `pid` is stopped (state T or t in /proc/PID/stat; false elsewhere and when unknown). */
function processStopped(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat[stat.lastIndexOf(")") + 2];
    return state === "T" || state === "t";
  } catch {
    return false;
  }
}
