// The executors of a launched cluster, as one pool: one rank per device, numbered node by node in config order
// (the planner's rank order). Starts them (spawn, init, rendezvous), runs steps, saves and loads checkpoints, and
// turns every failure (a lost node, an executor that exits, a fatal executor error, a phase that times out) into a
// `Fault` naming the node, host, rank and device, which rejects whatever phase is waiting.

import type { AgentEvent, Endpoint, ExecutorEvent, ExecutorInit, ExecutorStepPlan } from "../../agents/protocol.ts";
import { PROTOCOL_VERSION } from "../../agents/protocol.ts";
import type { Config } from "../config/types.ts";
import { assertExecutorsAvailable, type ClusterSession, type NodeLaunch } from "./cluster_session.ts";
import type { StepDone } from "./step_record.ts";

/** Where a rank runs. */
export interface RankPlace {
  rank: number;
  node: NodeLaunch;
  /** Device index on the node. */
  device: number;
  kind: "cpu" | "webgpu" | "cuda";
  /** As the executor named it in `ready` (e.g. `cpu:2 cpu`). */
  deviceName?: string;
}

/** A failure of the cluster while the pool runs. */
export interface Fault {
  kind: "node_lost" | "executor_exit" | "executor_error" | "timeout";
  node: NodeLaunch;
  /** The rank concerned (absent when a whole node is lost). */
  rank?: number;
  reason: string;
  /** Last lines of the executor's log or the agent's stderr. */
  logTail?: string;
  /** Milliseconds since the pool started. */
  atMs: number;
}

/** A phase (start, step, save, load) ended by a fault; `fault` is the first one (the cause). */
export class FaultError extends Error {
  constructor(readonly fault: Fault, readonly phase: string) {
    super(`${phase}: ${describeFault(fault)}`);
  }
}

/** A non-fatal refusal by an executor (e.g. a checkpoint file with the wrong checksum); executors stay usable. */
export class RefusedError extends Error {
  constructor(readonly rank: number, readonly phase: string, readonly detail: string) {
    super(`${phase}: rank ${rank}: ${detail}`);
  }
}

/** The `init` of one executor: the config's model and optimizer, the run's secret, the node's bind address. */
export function executorInit(
  config: Config,
  rank: number,
  worldSize: number,
  node: NodeLaunch,
  secret: string,
  extra: Partial<ExecutorInit> = {},
): ExecutorInit {
  const { model: m, training: t } = config;
  return {
    rank,
    worldSize,
    model: { layers: m.layers, hidden: m.hidden, heads: m.heads, vocab: m.vocab, maxSeq: m.maxSeq },
    seed: t.seed,
    optimizer: { lr: t.lr, weightDecay: t.weightDecay, gradClip: t.gradClip, beta1: 0.9, beta2: 0.95, eps: 1e-8 },
    secret,
    bindHost: node.config.transport === "local" && !node.config.srun ? "127.0.0.1" : node.config.host,
    ...extra,
  };
}

/** One line naming a fault. */
export function describeFault(f: Fault): string {
  const who = f.rank !== undefined ? `rank ${f.rank} on ${f.node.name}` : f.node.name;
  return `${who}: ${f.reason}`;
}

/** What one rank wrote for a checkpoint. */
export interface SavedPart {
  rank: number;
  path: string;
  sha256: string;
  bytes: number;
}

interface Waiter {
  phase: string;
  pending: Set<number>;
  accept: (rank: number, msg: ExecutorEvent) => boolean;
  reject: (e: Error) => void;
}

/** Options of `ExecutorPool.start`. */
export interface PoolOptions {
  config: Config;
  /** The dataset token file as each node sees it (undefined: synthetic tokens). */
  datasetPath?: (node: NodeLaunch) => string | undefined;
  /** Extra environment of every executor. */
  env?: Record<string, string>;
  /** Limit of the start phase (spawn to connected), ms. */
  startTimeoutMs?: number;
  log?: (line: string) => void;
}

const STEP_FIELDS = (rank: number) => `{"v":${PROTOCOL_VERSION},"type":"to_executor","rank":${rank},"msg":`;

/** The running executors of a cluster. */
export class ExecutorPool {
  readonly places: RankPlace[];
  readonly faults: Fault[] = [];
  #waiters = new Set<Waiter>();
  #offs: (() => void)[] = [];
  #stopping = false;
  #t0 = performance.now();
  #log: (line: string) => void;

  private constructor(readonly cluster: ClusterSession, places: RankPlace[], log: (line: string) => void) {
    this.places = places;
    this.#log = log;
  }

  get worldSize(): number {
    return this.places.length;
  }

  /** The first fault, if any. */
  get failed(): Fault | undefined {
    return this.faults[0];
  }

  /** A pool over every device of the cluster's ready nodes, listening for faults; `start` starts the executors. */
  static create(cluster: ClusterSession, opts: PoolOptions): ExecutorPool {
    assertExecutorsAvailable(cluster.ready);
    const places: RankPlace[] = [];
    for (const node of cluster.ready) {
      for (let d = 0; d < node.config.devices; d++) {
        places.push({ rank: places.length, node, device: d, kind: node.executorKind! });
      }
    }
    const pool = new ExecutorPool(cluster, places, opts.log ?? (() => {}));
    pool.#opts = opts;
    pool.#subscribe();
    return pool;
  }

  #opts!: PoolOptions;

  /** Starts one executor per device and connects them; rejects with FaultError on failure. */
  async start(): Promise<void> {
    // deno-lint-ignore no-this-alias
    const pool = this;
    const { cluster, places } = this;
    const opts = this.#opts;
    const secret = crypto.randomUUID() + crypto.randomUUID();
    const timeout = opts.startTimeoutMs ?? 120_000;
    const endpoints: Endpoint[] = new Array(places.length);
    const ready = pool.#collect("start", places.map((p) => p.rank), timeout, (rank, msg) => {
      if (msg.type !== "ready") return false;
      endpoints[rank] = msg.endpoint;
      places[rank].deviceName = msg.device;
      return true;
    });
    for (const node of cluster.ready) {
      const mine = places.filter((p) => p.node === node);
      node.session!.send({
        type: "spawn",
        executors: mine.map((p) => ({ rank: p.rank, device: p.device, kind: p.kind, env: opts.env })),
      });
      const tokensPath = opts.datasetPath?.(node);
      for (const p of mine) {
        const init = executorInit(opts.config, p.rank, places.length, node, secret, {
          ...(tokensPath ? { dataset: { tokensPath, tokenBytes: 2 as const } } : {}),
        });
        node.session!.send({ type: "to_executor", rank: p.rank, msg: { type: "init", init } });
      }
    }
    await ready;
    if (places.length > 1) {
      const connected = pool.#collect("start", places.map((p) => p.rank), timeout, (_r, m) => m.type === "connected");
      for (const p of places) pool.#send(p, JSON.stringify({ type: "peers", endpoints }));
      await connected;
    }
  }

  #subscribe(): void {
    for (const node of this.cluster.ready) {
      const s = node.session!;
      this.#offs.push(s.on((ev) => this.#onEvent(node, ev)));
      const onLost = (info: { reason: string; stderrTail: string }) =>
        this.#fault({ kind: "node_lost", node, reason: `node lost: ${info.reason}`, logTail: info.stderrTail });
      if (s.lostInfo) onLost(s.lostInfo);
      else s.lost.then(onLost);
    }
  }

  #onEvent(node: NodeLaunch, ev: AgentEvent): void {
    if (ev.type === "from_executor") {
      const msg = ev.msg;
      if (msg.type === "error") {
        if (msg.fatal) {
          this.#fault({ kind: "executor_error", node, rank: ev.rank, reason: `executor failed: ${msg.message}` });
          return;
        }
        const w = [...this.#waiters].find((w) => w.pending.has(ev.rank));
        if (w) {
          this.#waiters.delete(w);
          w.reject(new RefusedError(ev.rank, w.phase, msg.message));
        } else this.#log(`rank ${ev.rank} on ${node.name}: ${msg.message}`);
        return;
      }
      for (const w of this.#waiters) {
        if (w.pending.has(ev.rank) && w.accept(ev.rank, msg)) w.pending.delete(ev.rank);
      }
    } else if (ev.type === "executor_exit") {
      if (this.#stopping) return;
      const how = ev.signal ? `killed by signal ${ev.signal.replace(/^SIG/, "")}` : `exited with code ${ev.code}`;
      this.#fault({ kind: "executor_exit", node, rank: ev.rank, reason: `executor ${how}`, logTail: ev.logTail });
    } else if (ev.type === "log" && ev.level !== "info") {
      this.#log(`${node.name}: ${ev.text}`);
    }
  }

  #fault(f: Omit<Fault, "atMs">): void {
    if (this.#stopping) return;
    const fault = { ...f, atMs: performance.now() - this.#t0 };
    this.faults.push(fault);
    if (this.faults.length > 1) return;
    for (const w of this.#waiters) w.reject(new FaultError(fault, w.phase));
    this.#waiters.clear();
  }

  /** Waits until every rank in `ranks` sent an event `accept` takes. */
  #collect(
    phase: string,
    ranks: number[],
    timeoutMs: number,
    accept: (rank: number, msg: ExecutorEvent) => boolean,
  ): Promise<void> {
    if (this.failed) return Promise.reject(new FaultError(this.failed, phase));
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const w: Waiter = {
        phase,
        pending: new Set(ranks),
        accept: (rank, msg) => {
          if (!accept(rank, msg)) return false;
          if (w.pending.size === 1 && w.pending.has(rank)) queueMicrotask(done);
          return true;
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const done = () => {
        if (!this.#waiters.has(w) || w.pending.size) return;
        this.#waiters.delete(w);
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.add(w);
      if (w.pending.size === 0) return done();
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          if (!this.#waiters.has(w)) return;
          const r = [...w.pending][0];
          const p = this.places[r];
          this.#fault({
            kind: "timeout",
            node: p.node,
            rank: r,
            reason: `no answer to ${phase} within ${(timeoutMs / 1000).toFixed(0)} s ` +
              `(ranks ${[...w.pending].join(", ")} silent)`,
          });
        }, timeoutMs);
      }
    });
  }

  /** Writes one executor command (already JSON) to a rank through its agent. */
  #send(p: RankPlace, msgJson: string): void {
    p.node.session!.sendRaw(`${STEP_FIELDS(p.rank)}${msgJson}}\n`);
  }

  /**
   * Runs one step on every rank and returns each rank's `step_done` (indexed by rank). `dispatchMs` is the time spent
   * serialising and writing the commands. Rejects with FaultError when the cluster fails meanwhile.
   */
  async step(plan: ExecutorStepPlan, timeoutMs = Infinity): Promise<{ done: StepDone[]; dispatchMs: number }> {
    const done: StepDone[] = new Array(this.places.length);
    const collected = this.#collect("step " + plan.step, this.places.map((p) => p.rank), timeoutMs, (rank, msg) => {
      if (msg.type !== "step_done" || msg.step !== plan.step) return false;
      done[rank] = msg;
      return true;
    });
    const t0 = performance.now();
    const json = JSON.stringify({ type: "step", plan });
    for (const p of this.places) this.#send(p, json);
    const dispatchMs = performance.now() - t0;
    await collected;
    return { done, dispatchMs };
  }

  /** Every rank saves its state to `pathOf(rank)` (on its node). */
  async save(pathOf: (p: RankPlace) => string, timeoutMs = 300_000): Promise<SavedPart[]> {
    const parts: SavedPart[] = new Array(this.places.length);
    const collected = this.#collect("save", this.places.map((p) => p.rank), timeoutMs, (rank, msg) => {
      if (msg.type !== "saved" || msg.path !== pathOf(this.places[rank])) return false;
      parts[rank] = { rank, path: msg.path, sha256: msg.sha256, bytes: msg.bytes };
      return true;
    });
    for (const p of this.places) this.#send(p, JSON.stringify({ type: "save", path: pathOf(p) }));
    await collected;
    return parts;
  }

  /** Every rank loads `parts[rank]`, checking its sha256; a refusal rejects with RefusedError. */
  async load(parts: { path: string; sha256: string }[], timeoutMs = 300_000): Promise<void> {
    const collected = this.#collect(
      "load",
      this.places.map((p) => p.rank),
      timeoutMs,
      (rank, m) => m.type === "loaded" && m.path === parts[rank].path,
    );
    for (const p of this.places) {
      this.#send(p, JSON.stringify({ type: "load", path: parts[p.rank].path, sha256: parts[p.rank].sha256 }));
    }
    await collected;
  }

  /** Stops listening; executor exits from here on are expected (the cluster is being shut down). */
  stop(): void {
    this.#stopping = true;
    for (const off of this.#offs) off();
    this.#offs = [];
    for (const w of this.#waiters) w.reject(new Error(`${w.phase}: the run is stopping`));
    this.#waiters.clear();
  }
}
