// The executors of a cluster, as one pool (launch, profile and nodes all use it): one rank per device, numbered node
// by node in config order (the planner's rank order). Starts them (spawn, init, rendezvous), runs steps, saves and
// loads checkpoints, sends any other command to every rank, and turns every failure into a `Fault` (fault.ts) naming
// the node, host, rank and device, which rejects whatever phase is waiting; `settled()` waits, driven by events,
// until the faults that follow the first have arrived, so that `rootCause()` sees them all.

import type {
  AgentEvent,
  Endpoint,
  ExecutorCommand,
  ExecutorEvent,
  ExecutorInit,
  ExecutorStepPlan,
} from "../../core/protocol.ts";
import { PROTOCOL_VERSION, STEP_FIELDS } from "../../core/protocol.ts";
import { nodePlanJsons } from "../../core/plan_scope.ts";
import type { Config, ModelConfig } from "../config/types.ts";
import type { ModelShape } from "../../core/model_shape.ts";
import { assertExecutorsAvailable, type ClusterSession, type NodeLaunch } from "./cluster_session.ts";
import { stageModel } from "./model_staging.ts";
import { causePending, type Fault, FaultError, type RankPlace, rankRanges, RefusedError, rootCause } from "./fault.ts";

export {
  causePending,
  describeFault,
  describeRank,
  type Fault,
  FaultError,
  type RankPlace,
  RefusedError,
  rootCause,
} from "./fault.ts";

/** The executor event of type `K`. */
export type EventOf<K extends ExecutorEvent["type"]> = Extract<ExecutorEvent, { type: K }>;
type StepDone = EventOf<"step_done">;

/** AdamW settings the executors use unless the config or the caller says otherwise (written once, here). */
export const ADAMW_DEFAULTS = { beta1: 0.9, beta2: 0.95, eps: 1e-8 } as const;

/** What `executorInit` needs of the run, beyond the config. */
export interface ExecutorInitOptions {
  config: Config;
  rank: number;
  worldSize: number;
  node: NodeLaunch;
  /** The run's data-plane secret. */
  secret: string;
  /** Fields that replace the defaults (e.g. a dataset, or a zero learning rate for profiling). */
  extra?: Partial<ExecutorInit>;
}

/** The protocol's model shape of a config's model (the family's fields only where the family has them). */
export function modelShapeOf(m: ModelConfig): ModelShape {
  const { preset: _p, from: _f, checkpointing: _c, ...shape } = m;
  return shape;
}

/** "attention: KERNEL (N ranks)" per distinct kernel the torch executors reported; empty for TypeScript executors. */
export function attentionLines(places: RankPlace[]): string[] {
  const by = new Map<string, number>();
  for (const p of places) if (p.attention) by.set(p.attention, (by.get(p.attention) ?? 0) + 1);
  return [...by].map(([k, n]) => `attention: ${k} (${n} rank${n === 1 ? "" : "s"})`);
}

/** The `init` of one executor: the config's model and optimizer, the run's secret, the node's bind address. */
export function executorInit(o: ExecutorInitOptions): ExecutorInit {
  const { model: m, training: t } = o.config;
  return {
    rank: o.rank,
    worldSize: o.worldSize,
    model: modelShapeOf(m),
    ...(m.from !== undefined ? { modelFrom: m.from } : {}),
    checkpointing: m.checkpointing,
    zeroStage: o.config.planner.zeroStage,
    ...(t.precision !== "auto" ? { precision: t.precision } : {}),
    ...(t.allowQuadraticAttention ? { allowQuadraticAttention: true } : {}),
    ...(t.checkpointAsync ? { checkpointAsync: true } : {}),
    seed: t.seed,
    optimizer: { lr: t.lr, weightDecay: t.weightDecay, gradClip: t.gradClip, ...ADAMW_DEFAULTS },
    secret: o.secret,
    bindHost: o.node.config.transport === "local" && !o.node.config.srun ? "127.0.0.1" : o.node.config.host,
    ...o.extra,
  };
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
  /** Bytes per token of that file (the dataset manifest's `tokenBytes`; default 2). */
  datasetTokenBytes?: 2 | 4;
  /** Extra environment of every executor. */
  env?: Record<string, string>;
  /** Limit of the start phase (spawn to connected), ms. */
  startTimeoutMs?: number;
  /** Fields of every executor's `init` that replace the config's (e.g. profiling's zero learning rate). */
  init?: Partial<ExecutorInit>;
  /** Connect the data plane after `ready` (default true; `nodes` only checks that executors start). */
  connect?: boolean;
  log?: (line: string) => void;
}

/** The running executors of a cluster. */
export class ExecutorPool {
  readonly places: RankPlace[];
  readonly faults: Fault[] = [];
  #waiters = new Set<Waiter>();
  #offs: (() => void)[] = [];
  #stopping = false;
  #t0 = performance.now();
  #log: (line: string) => void;
  /** Ranks a phase ended by a fault was still waiting for, until each fails or answers (see `settled`). */
  #unsettled = new Set<number>();
  /** Called whenever `#unsettled` shrinks (wakes `settled()`). */
  #onChange = new Set<() => void>();
  /** Ranks whose process the last heartbeat of their agent reported stopped. */
  #stopped = new Set<number>();

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

  /** The fault that caused the others (see `rootCause` in fault.ts); call after `settled()`. */
  get cause(): Fault | undefined {
    return this.faults.length ? rootCause(this.faults) : undefined;
  }

  /**
   * After a fault: waits until the faults it causes have arrived, so that reports name the root cause and its
   * victims. Driven by events: resolves once every rank the failed phase was waiting for has either failed itself
   * (or lost its node) or answered; at the latest after `maxMs`, except that while the root cause is only an echo of
   * a peer that went away (`causePending` in fault.ts) and ranks are still silent, it waits for that node's loss up to
   * the heartbeat timeout (plus 2 s), which reports it. Resolves at once when nothing failed.
   */
  settled(opts: { maxMs?: number } = {}): Promise<Fault[]> {
    const maxMs = opts.maxMs ?? 10_000;
    const echoMs = Math.max(maxMs, this.#opts.config.cluster.heartbeatTimeoutS * 1000 + 2_000);
    if (!this.faults.length) return Promise.resolve(this.faults);
    const t0 = performance.now();
    return new Promise((resolve) => {
      let cap: ReturnType<typeof setTimeout>;
      const finish = () => {
        clearTimeout(cap);
        this.#onChange.delete(check);
        resolve(this.faults);
      };
      const check = () => {
        if (this.#unsettled.size === 0) finish();
      };
      const capped = () => {
        const left = echoMs - (performance.now() - t0);
        if (!causePending(this.faults) || left <= 0) finish();
        else cap = setTimeout(capped, left);
      };
      cap = setTimeout(capped, maxMs);
      this.#onChange.add(check);
      check();
    });
  }

  /** A pool over every device of the cluster's ready nodes, listening for faults; `start` starts the executors. */
  static create(cluster: ClusterSession, opts: PoolOptions): ExecutorPool {
    assertExecutorsAvailable(cluster.ready, opts.config.model.family);
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

  /** Starts one executor per device and connects them (unless `connect: false`); rejects with FaultError on failure. */
  async start(): Promise<void> {
    // deno-lint-ignore no-this-alias
    const pool = this;
    const { cluster, places } = this;
    const opts = this.#opts;
    // model.from as each node sees it (copied to nodes that do not have it; see model_staging.ts).
    const from = opts.config.model.from;
    const modelPaths = from !== undefined ? await stageModel(cluster, from, this.#log) : undefined;
    const secret = crypto.randomUUID() + crypto.randomUUID();
    const timeout = opts.startTimeoutMs ?? 120_000;
    const endpoints: Endpoint[] = new Array(places.length);
    const ready = pool.#collect("start", places.map((p) => p.rank), timeout, (rank, msg) => {
      if (msg.type !== "ready") return false;
      endpoints[rank] = msg.endpoint;
      places[rank].deviceName = msg.device;
      if (msg.attention !== undefined) places[rank].attention = msg.attention;
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
        const init = executorInit({
          config: opts.config,
          rank: p.rank,
          worldSize: places.length,
          node,
          secret,
          extra: {
            ...opts.init,
            ...(tokensPath ? { dataset: { tokensPath, tokenBytes: opts.datasetTokenBytes ?? 2 } } : {}),
            ...(modelPaths?.has(node) ? { modelFrom: modelPaths.get(node) } : {}),
          },
        });
        node.session!.send({ type: "to_executor", rank: p.rank, msg: { type: "init", init } });
      }
    }
    await ready;
    if (places.length > 1 && opts.connect !== false) {
      const connected = pool.#collect("start", places.map((p) => p.rank), timeout, (_r, m) => m.type === "connected");
      pool.#broadcast(places, JSON.stringify({ type: "peers", endpoints }));
      await connected;
    }
  }

  #subscribe(): void {
    for (const node of this.cluster.ready) {
      const s = node.session!;
      this.#offs.push(s.on((ev) => this.#onEvent(node, ev)));
      const onLost = (info: { reason: string; stderrTail: string }) =>
        this.#fault({
          kind: "node_lost",
          node,
          reason: `node lost: ${info.reason}`,
          detail: info.reason,
          logTail: info.stderrTail,
        });
      if (s.lostInfo) onLost(s.lostInfo);
      else s.lost.then(onLost);
    }
  }

  #onEvent(node: NodeLaunch, ev: AgentEvent): void {
    if (ev.type === "spawned") {
      for (const e of ev.executors) {
        const place = this.places.find((p) => p.rank === e.rank && p.node === node);
        if (place) Object.assign(place, { cpus: e.cpus, pinned: e.pinned });
      }
    } else if (ev.type === "from_executor") {
      const msg = ev.msg;
      if (msg.type === "error") {
        if (msg.fatal) {
          // A peer timed out waiting for a rank whose process is stopped: that rank is the cause, not the peer.
          const waited = msg.waitingFor;
          if (waited !== undefined && this.#stopped.has(waited) && this.places[waited]) {
            this.#fault({
              kind: "timeout",
              node: this.places[waited].node,
              rank: waited,
              reason: `the process of rank ${waited} is stopped (SIGSTOP or a debugger; SIGCONT resumes it); ` +
                `rank ${ev.rank} timed out waiting for it`,
              detail: "stopped",
              silent: [waited],
            });
          }
          this.#fault({
            kind: "executor_error",
            node,
            rank: ev.rank,
            reason: `executor failed: ${msg.message}`,
            detail: msg.message,
            // Executors that predate the field omit it: not an echo.
            echo: msg.echo === true,
          });
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
      if (this.#unsettled.delete(ev.rank)) { for (const l of [...this.#onChange]) l(); }
    } else if (ev.type === "heartbeat") {
      for (const e of ev.executors) {
        if (e.stopped) this.#stopped.add(e.rank);
        else this.#stopped.delete(e.rank);
      }
    } else if (ev.type === "executor_exit") {
      if (this.#stopping) return;
      const how = ev.signal ? `killed by signal ${ev.signal.replace(/^SIG/, "")}` : `exited with code ${ev.code}`;
      this.#fault({
        kind: "executor_exit",
        node,
        rank: ev.rank,
        reason: `executor ${how}`,
        detail: ev.signal ? `was killed by signal ${ev.signal}` : `exited with code ${ev.code}`,
        logTail: ev.logTail,
      });
    } else if (ev.type === "log" && ev.level !== "info") {
      this.#log(`${node.name}: ${ev.text}`);
    }
  }

  #fault(f: Omit<Fault, "atMs">): void {
    if (this.#stopping) return;
    const fault = { ...f, atMs: performance.now() - this.#t0 };
    this.faults.push(fault);
    if (this.faults.length === 1) { for (const w of this.#waiters) for (const r of w.pending) this.#unsettled.add(r); }
    for (const p of this.places) {
      if (p.rank === f.rank || (f.rank === undefined && p.node === f.node) || f.silent?.includes(p.rank)) {
        this.#unsettled.delete(p.rank);
      }
    }
    for (const l of [...this.#onChange]) l();
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
          // A stopped process (SIGSTOP, a debugger) is the one the others wait for: it is blamed, and named first.
          const stopped = [...w.pending].filter((r) => this.#stopped.has(r));
          const silent = [...stopped, ...[...w.pending].filter((r) => !this.#stopped.has(r))];
          const p = this.places[silent[0]];
          const within = `within ${(timeoutMs / 1000).toFixed(0)} s`;
          this.#fault({
            kind: "timeout",
            node: p.node,
            rank: silent[0],
            reason: stopped.length
              ? `no answer to ${phase} ${within}: the process of rank ${rankRanges(stopped)} is stopped ` +
                `(SIGSTOP or a debugger; SIGCONT resumes it); ranks ${rankRanges(silent)} silent`
              : `no answer to ${phase} ${within} (ranks ${rankRanges(silent)} silent)`,
            detail: within,
            silent,
          });
        }, timeoutMs);
      }
    });
  }

  /** Writes one executor command (already JSON) to a rank through its agent. */
  #send(p: RankPlace, msgJson: string): void {
    p.node.session!.sendRaw(`${STEP_FIELDS(p.rank)}${msgJson}}\n`);
  }

  /** Writes the same executor command (already JSON) to `ranks`: one `to_executors` line per node. */
  #broadcast(ranks: readonly RankPlace[], msgJson: string): void {
    const byNode = new Map<NodeLaunch, number[]>();
    for (const p of ranks) {
      const list = byNode.get(p.node);
      if (list) list.push(p.rank);
      else byNode.set(p.node, [p.rank]);
    }
    for (const [node, rs] of byNode) {
      node.session!.sendRaw(
        `{"v":${PROTOCOL_VERSION},"type":"to_executors","ranks":${JSON.stringify(rs)},"msg":${msgJson}}\n`,
      );
    }
  }

  /** The nodes of the pool in rank order, and each rank's index among them. */
  #nodeIndex(): { nodes: NodeLaunch[]; nodeOf: number[] } {
    if (!this.#nodes) {
      const nodes: NodeLaunch[] = [];
      const nodeOf = this.places.map((p) => {
        let i = nodes.indexOf(p.node);
        if (i < 0) i = nodes.push(p.node) - 1;
        return i;
      });
      this.#nodes = { nodes, nodeOf };
    }
    return this.#nodes;
  }
  #nodes?: { nodes: NodeLaunch[]; nodeOf: number[] };

  /**
   * Runs one step on every rank and returns each rank's `step_done` (indexed by rank): one `step` line per node
   * holding only the groups that involve its ranks (core/plan_scope.ts), which its agent splits per rank.
   * `dispatchMs` is the time spent splitting, serialising and writing them. Rejects with FaultError when the
   * cluster fails meanwhile; throws at once when the plan's groups do not cover every rank.
   */
  async step(plan: ExecutorStepPlan, timeoutMs = Infinity): Promise<{ done: StepDone[]; dispatchMs: number }> {
    const t0 = performance.now();
    const { nodes, nodeOf } = this.#nodeIndex();
    const jsons = nodePlanJsons(plan, nodeOf, nodes.length);
    const done: StepDone[] = new Array(this.places.length);
    const collected = this.#collect("step " + plan.step, this.places.map((p) => p.rank), timeoutMs, (rank, msg) => {
      if (msg.type !== "step_done" || msg.step !== plan.step) return false;
      done[rank] = msg;
      return true;
    });
    nodes.forEach((n, i) => n.session!.sendRaw(`{"v":${PROTOCOL_VERSION},"type":"step","plan":${jsons[i]}}\n`));
    const dispatchMs = performance.now() - t0;
    await collected;
    return { done, dispatchMs };
  }

  /**
   * Sends `cmdFor(rank)` to every rank (ranks for which it returns undefined get nothing and are not waited for)
   * and resolves with each rank's `type` event. Rejects with FaultError (or RefusedError) like the other phases.
   */
  async request<K extends ExecutorEvent["type"]>(
    cmdFor: (rank: number) => ExecutorCommand | undefined,
    type: K,
    timeoutMs: number,
    phase: string,
  ): Promise<Map<number, EventOf<K>>> {
    const cmds = this.places.map((p) => [p, cmdFor(p.rank)] as const).filter(([, c]) => c !== undefined);
    const results = new Map<number, EventOf<K>>();
    const collected = this.#collect(phase, cmds.map(([p]) => p.rank), timeoutMs, (rank, msg) => {
      if (msg.type !== type) return false;
      results.set(rank, msg as EventOf<K>);
      return true;
    });
    // Ranks given the same command object share one line per node.
    const same = new Map<ExecutorCommand, RankPlace[]>();
    for (const [p, cmd] of cmds) {
      const list = same.get(cmd!);
      if (list) list.push(p);
      else same.set(cmd!, [p]);
    }
    for (const [cmd, ps] of same) {
      if (ps.length === 1) this.#send(ps[0], JSON.stringify(cmd));
      else this.#broadcast(ps, JSON.stringify(cmd));
    }
    await collected;
    return new Map([...results].sort((a, b) => a[0] - b[0]));
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
