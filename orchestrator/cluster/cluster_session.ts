// All agents of a cluster: launched in parallel (connect, bootstrap, start, hello) with progress events, the cluster
// inventory, lost-node reports with host and reason, broadcast, and a clean shutdown (also on Ctrl-C).

import type { Config, NodeConfig } from "../config/types.ts";
import { UserError } from "../errors.ts";
import {
  type AgentCommand,
  type ExecutorKindName,
  type Inventory,
  isTorchKind,
  isTsKind,
} from "../../core/protocol.ts";
import { AgentSession, type LostInfo } from "./agent_session.ts";
import type { ChannelExit } from "./agent_channel.ts";
import {
  agentCommand,
  bootstrapNode,
  type BootstrapResult,
  type Bundle,
  bundle,
  dirBundle,
  REPO_ROOT,
} from "./bootstrap.ts";
import { torchProblem } from "./torch_requirement.ts";
import { TORCH_PACKAGE_PATH } from "../../core/torch_package.ts";
import { spawnLocalAgent } from "./local_transport.ts";
import { spawnSrunAgent } from "./slurm_transport.ts";
import { SshConnection } from "./ssh_transport.ts";
import { sshTargetFor } from "./ssh_route.ts";

/** Default executor entry of this checkout. */
export const EXECUTOR_SOURCE = `${REPO_ROOT}/kernels/executor_main.ts`;

/** The PyTorch executor package of this checkout (used in place by local nodes, uploaded to SSH nodes). */
export const TORCH_PACKAGE = `${REPO_ROOT}/${TORCH_PACKAGE_PATH}`;

/** Phases a node goes through while launching. */
export type LaunchPhase =
  | "connecting"
  | "connected"
  | "probing"
  | "uploading"
  | "starting"
  | "ready"
  | "failed"
  | "lost"
  | "stopped";

/** A progress report of one node. */
export interface ProgressEvent {
  node: NodeLaunch;
  phase: LaunchPhase;
  detail: string;
  /** Milliseconds since the launch began. */
  ms: number;
}

/** Options of `ClusterSession.launch`. */
export interface ClusterOptions {
  runId: string;
  /** The run directory on this machine (local nodes use it unless they set workdir). */
  runDir: string;
  /** Local path of the executor entry to ship (bundled for SSH nodes); null for none. Default: EXECUTOR_SOURCE if it exists. */
  executorEntry?: string | null;
  /**
   * Ask agents for a WebGPU adapter (about 50-200 ms per agent): always, never, or (default) only on nodes whose
   * executor is `auto` or `webgpu`.
   */
  probeWebgpu?: boolean | "as-needed";
  /**
   * Ask agents for their Python and torch (a second or two each): always, or (default) only on nodes whose executor
   * is `cuda` or `torch-cpu`, and on `auto` nodes with NVIDIA GPUs.
   */
  probePython?: boolean | "as-needed";
  onProgress?: (e: ProgressEvent) => void;
  onLost?: (info: LostInfo, node: NodeLaunch) => void;
  onProtocolError?: (source: string, message: string) => void;
  /** Seconds allowed from the agent's start to its hello (default 30 + connect timeout). */
  helloTimeoutS?: number;
}

/** One node's launch and, once up, its session. */
export interface NodeLaunch {
  config: NodeConfig;
  /** `node 0 (10.0.0.1)`. */
  name: string;
  session?: AgentSession;
  conn?: SshConnection;
  inventory?: Inventory;
  /** Executor kind the node's devices get (config, with `auto` resolved from the inventory). */
  executorKind?: ExecutorKindName;
  boot?: BootstrapResult;
  /** Run directory on the node. */
  runDir?: string;
  /** Executor entry on the node, if any. */
  executorEntry?: string;
  error?: string;
  timings: { connectMs?: number; bootstrapMs?: number; agentMs?: number; totalMs?: number };
}

/**
 * The executor kind of a node: its configured kind, or for `auto` cuda when the node has NVIDIA GPUs and its Python's
 * torch has CUDA, else webgpu when a hardware adapter exists, else cpu. A fallback (software) adapter such as Mesa's
 * llvmpipe runs on the same CPU cores as the CPU executor, which is the bit-exact reference, so `auto` does not pick
 * it (set `executor: webgpu` to use it anyway).
 */
export function resolveExecutorKind(
  executor: NodeConfig["executor"],
  inv: Inventory,
): ExecutorKindName {
  if (executor !== "auto") return executor;
  if (inv.gpus.length && inv.python?.torch && inv.python.cuda && inv.python.cudaAvailable) return "cuda";
  return inv.webgpu && !inv.webgpu.isFallbackAdapter ? "webgpu" : "cpu";
}

/** Host memory one executor needs at least (GB): a Deno runtime, a Python with torch, or a simulated one in its agent. */
export const MIN_EXECUTOR_GB: Readonly<Record<ExecutorKindName, number>> = {
  cpu: 0.05,
  webgpu: 0.05,
  "torch-cpu": 0.3,
  cuda: 0.3,
  sim: 0.001,
};

/** Why `devices` executors cannot run in the node's memory (its inventory), or undefined. */
function memoryProblem(n: NodeLaunch): string | undefined {
  const inv = n.inventory, kind = n.executorKind;
  if (!inv || !kind || !(inv.memoryGb > 0)) return undefined;
  const fit = Math.floor(inv.memoryGb / MIN_EXECUTOR_GB[kind]);
  if (n.config.devices <= fit) return undefined;
  return `${n.name}: devices: ${n.config.devices} ${kind} executors need at least ` +
    `${Math.ceil(n.config.devices * MIN_EXECUTOR_GB[kind])} GB of host memory (${MIN_EXECUTOR_GB[kind] * 1000} MB ` +
    `each), the node has ${inv.memoryGb.toFixed(0)} GB; set devices to at most ${fit} (one per GPU or device)`;
}

/**
 * Refuses nodes that cannot start their executors (a Python without torch, a torch without CUDA, a TypeScript
 * executor for a llama-family model), naming each; before any executor starts.
 */
export function assertExecutorsAvailable(nodes: readonly NodeLaunch[], family?: string): void {
  for (const n of nodes) {
    if (family === "llama" && n.executorKind && isTsKind(n.executorKind)) {
      throw new UserError(
        `${n.name}: executor auto resolved to ${n.executorKind}, a TypeScript executor, which runs GPT presets ` +
          `only; the llama-family model (model.from) needs executor: torch-cpu or cuda on every node`,
      );
    }
    const problem = torchProblem(n) ?? memoryProblem(n);
    if (problem) throw new UserError(problem);
  }
}

function nodeName(n: NodeConfig): string {
  return n.srun ? `node ${n.index} (${n.srun}, ${n.host})` : `node ${n.index} (${n.host})`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A launched cluster. */
export class ClusterSession {
  readonly nodes: NodeLaunch[];
  readonly config: Config;
  /** Milliseconds the whole launch took. */
  launchMs = 0;
  #stopping?: Promise<ChannelExit[]>;

  private constructor(config: Config, nodes: NodeLaunch[]) {
    this.config = config;
    this.nodes = nodes;
  }

  /** Nodes whose agent is up. */
  get ready(): NodeLaunch[] {
    return this.nodes.filter((n) => n.session && !n.error);
  }

  /** Nodes that failed to launch. */
  get failures(): NodeLaunch[] {
    return this.nodes.filter((n) => n.error);
  }

  /** Live sessions. */
  get sessions(): AgentSession[] {
    return this.ready.map((n) => n.session!);
  }

  /** A cluster session not launched yet (install signal handlers, then `start`). */
  static create(config: Config): ClusterSession {
    return new ClusterSession(config, config.cluster.nodes.map((n) => ({ config: n, name: nodeName(n), timings: {} })));
  }

  /**
   * Launches every node in parallel. Never throws for a node's failure: it is recorded in `error` (and reported as a
   * `failed` progress event); the caller decides (see `failures`).
   */
  static async launch(config: Config, opts: ClusterOptions): Promise<ClusterSession> {
    const cluster = ClusterSession.create(config);
    await cluster.start(opts);
    return cluster;
  }

  /** Launches every node (see `launch`). */
  async start(opts: ClusterOptions): Promise<void> {
    const t0 = performance.now();
    const config = this.config;
    const nodes = this.nodes;
    const progress = (node: NodeLaunch, phase: LaunchPhase, detail = "") =>
      opts.onProgress?.({ node, phase, detail, ms: performance.now() - t0 });

    const timeoutMs = config.cluster.heartbeatTimeoutS * 1000;
    const heartbeatMs = Math.round(Math.min(2000, Math.max(50, timeoutMs / 4)));
    const helloTimeoutMs = (opts.helloTimeoutS ?? 30 + config.cluster.connectTimeoutS) * 1000;
    const executorSource = opts.executorEntry === undefined
      ? (await exists(EXECUTOR_SOURCE) ? EXECUTOR_SOURCE : undefined)
      : opts.executorEntry ?? undefined;

    // Bundles for SSH nodes, made once (and cached by source hash).
    let bundles: Promise<Bundle[]> | undefined;
    const torchPackage = await exists(`${TORCH_PACKAGE}/executor_main.py`) ? TORCH_PACKAGE : undefined;
    if (nodes.some((n) => n.config.transport === "ssh")) {
      bundles = Promise.all([
        bundle("agent", `${REPO_ROOT}/agents/agent.ts`),
        ...(executorSource ? [bundle("executor", executorSource)] : []),
        ...(torchPackage ? [dirBundle("torch", REPO_ROOT, TORCH_PACKAGE_PATH)] : []),
      ]);
      bundles.catch(() => {});
    }

    const startSession = async (node: NodeLaunch, channel: AgentSession["channel"], runDir: string, extra: {
      executorEntry?: string;
      executorDenoFlags?: string[];
      torchPackage?: string;
    }) => {
      const tAgent = performance.now();
      progress(node, "starting");
      const session = new AgentSession(channel, {
        name: node.name,
        host: node.config.host,
        heartbeatMs,
        heartbeatTimeoutMs: timeoutMs,
        onProtocolError: opts.onProtocolError,
      });
      node.session = session;
      node.runDir = runDir;
      node.executorEntry = extra.executorEntry;
      node.inventory = await session.start({
        runId: opts.runId,
        runDir,
        node: `node${node.config.index}-${node.config.host}`,
        orphanTimeoutMs: timeoutMs,
        probeWebgpu: opts.probeWebgpu === true ||
          ((opts.probeWebgpu ?? "as-needed") === "as-needed" && ["auto", "webgpu"].includes(node.config.executor)),
        python: node.config.python,
        ...(node.config.cpuPinning && node.config.cpuPinning !== "off" ? { cpuPinning: node.config.cpuPinning } : {}),
        // as-needed: torch kinds always; `auto` lets the agent probe when it finds NVIDIA GPUs.
        probePython: opts.probePython === true || isTorchKind(node.config.executor) ||
          (node.config.executor === "auto" ? undefined : false),
        ...extra,
      }, helloTimeoutMs);
      node.executorKind = resolveExecutorKind(node.config.executor, node.inventory);
      node.timings.agentMs = performance.now() - tAgent;
      session.lost.then((info) => {
        progress(node, "lost", info.reason);
        opts.onLost?.(info, node);
      });
    };

    const launchOne = async (node: NodeLaunch) => {
      const n = node.config;
      const tNode = performance.now();
      try {
        if (n.transport === "local") {
          const runDir = n.workdir ? `${n.workdir}/runs/${opts.runId}` : opts.runDir;
          const channel = n.srun ? spawnSrunAgent(n.srun, { gpus: n.slurmGpus }) : spawnLocalAgent();
          await startSession(node, channel, runDir, {
            executorEntry: executorSource,
            executorDenoFlags: ["--config", `${REPO_ROOT}/deno.json`],
            torchPackage,
          });
        } else {
          progress(node, "connecting", `${n.user ?? Deno.env.get("USER") ?? "root"}@${n.host}:${n.port}`);
          const target = sshTargetFor(
            n,
            config.cluster.connectTimeoutS,
            Math.min(15000, Math.max(1000, timeoutMs / 2)),
          );
          node.conn = await SshConnection.connect(target);
          node.timings.connectMs = node.conn.connectMs;
          progress(node, "connected", `${Math.round(node.conn.connectMs)} ms, host key ${node.conn.hostKey}`);
          const bs = await bundles!;
          node.boot = await bootstrapNode(node.conn, {
            what: node.name,
            configuredDeno: n.deno,
            bundles: bs,
            onStep: (step, detail) => progress(node, step === "probe" ? "probing" : "uploading", detail),
          });
          node.timings.bootstrapMs = node.boot.ms;
          const runDir = `${n.workdir ?? `${node.boot.probe.cache}/work`}/runs/${opts.runId}`;
          const channel = await node.conn.spawn(agentCommand(node.boot.deno, node.boot.paths.agent));
          await startSession(node, channel, runDir, {
            executorEntry: node.boot.paths.executor,
            executorDenoFlags: ["--no-config"],
            torchPackage: node.boot.paths.torch && `${node.boot.paths.torch}/${TORCH_PACKAGE_PATH}`,
          });
        }
        node.timings.totalMs = performance.now() - tNode;
        progress(node, "ready", `${Math.round(node.timings.totalMs)} ms`);
        if (this.#stopping) throw new Error("launch interrupted");
      } catch (e) {
        node.error = (e as Error).message;
        progress(node, "failed", node.error);
        if (node.session) await node.session.shutdown("launch failed", 2000).catch(() => {});
        await node.conn?.close();
        node.session = undefined;
      }
    };

    await Promise.all(nodes.map(launchOne));
    this.launchMs = performance.now() - t0;
  }

  /** Sends a command to every live agent. */
  broadcast(cmd: AgentCommand): void {
    for (const s of this.sessions) s.send(cmd);
  }

  /** Measures a round trip to every live agent; returns ms per node index. */
  async pingAll(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    await Promise.all(this.ready.map(async (n) => out.set(n.config.index, await n.session!.ping())));
    return out;
  }

  /** Shuts every agent down (they stop their executors) and closes every connection. Idempotent. */
  shutdown(reason: string, timeoutMs = 5000): Promise<ChannelExit[]> {
    this.#stopping ??= Promise.all(this.nodes.map(async (n) => {
      let exit: ChannelExit = { code: null, signal: null, error: "not started" };
      if (n.session) {
        exit = n.session.lostInfo
          ? await n.session.abort(n.session.lostInfo.reason)
          : await n.session.shutdown(reason, timeoutMs);
      }
      await n.conn?.close();
      return exit;
    }));
    return this.#stopping;
  }

  /**
   * On SIGINT/SIGTERM: shuts the cluster down and exits 130 (a second Ctrl-C exits at once; agents then stop by
   * themselves when their channel closes). Returns a function that removes the handlers.
   */
  installSignalHandlers(log: (text: string) => void = (t) => console.error(t)): () => void {
    let count = 0;
    const handler = () => {
      count++;
      if (count > 1) Deno.exit(130);
      log(`interrupted: stopping ${this.sessions.length} agent(s) (Ctrl-C again to quit at once)`);
      this.shutdown("interrupted (Ctrl-C)").finally(() => Deno.exit(130));
    };
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    for (const s of signals) Deno.addSignalListener(s, handler);
    return () => {
      for (const s of signals) Deno.removeSignalListener(s, handler);
    };
  }
}
