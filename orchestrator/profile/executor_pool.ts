// The executors of a profiling run: one per device, ranks numbered node by node in config order (as the planner's
// topology numbers them), started through the agents of a ClusterSession and connected on the data plane. `all`
// sends a command to every rank and collects one result event per rank; an executor error, an executor exit, a
// lost node or a timeout fails it with one message naming the rank, node and device (the root cause, not the
// data-plane echoes on the other ranks).

import type { AgentEvent, ExecutorCommand, ExecutorEvent } from "../../core/protocol.ts";
import type { Config } from "../config/types.ts";
import { UserError } from "../errors.ts";
import { assertExecutorsAvailable, type ClusterSession, type NodeLaunch } from "../cluster/cluster_session.ts";
import { executorInit } from "../cluster/executor_pool.ts";

/** One rank of the pool. */
export interface PoolRank {
  rank: number;
  node: NodeLaunch;
  /** Device index on its node. */
  device: number;
  kind: "cpu" | "webgpu" | "cuda";
  /** Device description from the executor's `ready`. */
  deviceName: string;
}

type EventOf<K extends ExecutorEvent["type"]> = Extract<ExecutorEvent, { type: K }>;

interface Waiter {
  type: ExecutorEvent["type"];
  ranks: Set<number>;
  results: Map<number, ExecutorEvent>;
  failures: { rank: number; message: string; exit: boolean }[];
  settle: (err?: Error) => void;
  failTimer?: ReturnType<typeof setTimeout>;
}

/** Describes a rank for messages: `rank 2 (node 0 (localhost), device 2: webgpu:2 llvmpipe ...)`. */
export function describeRank(r: PoolRank | undefined, rank: number): string {
  if (!r) return `rank ${rank}`;
  return `rank ${rank} (${r.node.name}, device ${r.device}${r.deviceName ? `: ${r.deviceName}` : ""})`;
}

/** Running executors of a profile. */
export class ExecutorPool {
  readonly ranks: PoolRank[] = [];
  readonly #waiters = new Set<Waiter>();
  readonly #offs: (() => void)[] = [];
  #lost: string | undefined;
  readonly #exited: { rank: number; message: string; exit: boolean }[] = [];

  private constructor(readonly cluster: ClusterSession) {}

  /** Number of ranks. */
  get worldSize(): number {
    return this.ranks.length;
  }

  /**
   * Spawns one executor per device on every node, inits them (no dataset: synthetic tokens) and connects the data
   * plane. `env` goes to every executor (e.g. FLEXSP_PROFILE_FAULT in tests).
   */
  static async start(
    cluster: ClusterSession,
    config: Config,
    opts: { timeoutMs: number; env?: Record<string, string>; say?: (line: string) => void },
  ): Promise<ExecutorPool> {
    assertExecutorsAvailable(cluster.nodes);
    const pool = new ExecutorPool(cluster);
    let rank = 0;
    for (const n of cluster.nodes) {
      if (!n.session || n.error) throw new Error(`${n.name} is not up`);
      for (let d = 0; d < n.config.devices; d++) {
        pool.ranks.push({ rank: rank++, node: n, device: d, kind: n.executorKind!, deviceName: "" });
      }
    }
    for (const n of cluster.nodes) pool.#listen(n);
    const world = pool.ranks.length;
    const secret = crypto.randomUUID() + crypto.randomUUID();
    const ready = pool.#collect("ready", pool.ranks.map((r) => r.rank), opts.timeoutMs, "executor start");
    for (const n of cluster.nodes) {
      const mine = pool.ranks.filter((r) => r.node === n);
      n.session!.send({
        type: "spawn",
        executors: mine.map((r) => ({ rank: r.rank, device: r.device, kind: r.kind, env: opts.env })),
      });
      for (const r of mine) {
        // Profiling only times steps: a zero learning rate keeps the parameters as initialised.
        const init = executorInit(config, r.rank, world, n, secret, {
          optimizer: { lr: 0, weightDecay: 0, gradClip: 0, beta1: 0.9, beta2: 0.95, eps: 1e-8 },
        });
        n.session!.send({ type: "to_executor", rank: r.rank, msg: { type: "init", init } });
      }
    }
    let readies: Map<number, EventOf<"ready">>;
    try {
      readies = await ready;
    } catch (e) {
      pool.close();
      throw e;
    }
    for (const r of pool.ranks) r.deviceName = readies.get(r.rank)!.device;
    if (world > 1) {
      const endpoints = pool.ranks.map((r) => readies.get(r.rank)!.endpoint);
      try {
        await pool.all(() => ({ type: "peers", endpoints }), "connected", opts.timeoutMs, "data-plane connect");
      } catch (e) {
        pool.close();
        throw e;
      }
    }
    return pool;
  }

  #listen(n: NodeLaunch): void {
    const s = n.session!;
    this.#offs.push(s.on((ev: AgentEvent) => {
      if (ev.type === "from_executor") this.#onEvent(ev.rank, ev.msg);
      else if (ev.type === "executor_exit") {
        const how = ev.signal ? `was killed by signal ${ev.signal}` : `exited with code ${ev.code}`;
        const tail = ev.logTail.split("\n").filter((l) => l.trim()).slice(-6).map((l) => `    ${l}`).join("\n");
        this.#onFailure(ev.rank, `${how}${tail ? `; last log lines:\n${tail}` : ""}`, true);
      }
    }));
    s.lost.then((info) => {
      this.#lost = `${info.node} was lost: ${info.reason}`;
      for (const w of this.#waiters) w.settle(new UserError(this.#lost));
    });
  }

  #onEvent(rank: number, ev: ExecutorEvent): void {
    if (ev.type === "error") {
      this.#onFailure(rank, ev.message, false);
      return;
    }
    for (const w of this.#waiters) {
      if (w.type === ev.type && w.ranks.has(rank) && !w.results.has(rank)) {
        w.results.set(rank, ev);
        if (w.results.size === w.ranks.size && w.failures.length === 0) w.settle();
      }
    }
  }

  #onFailure(rank: number, message: string, exit: boolean): void {
    // An exited executor fails every later command too (it cannot answer), even one sent after it died.
    if (exit) this.#exited.push({ rank, message, exit });
    for (const w of this.#waiters) {
      w.failures.push({ rank, message, exit });
      // Let the other ranks' reactions arrive, then report the root cause.
      w.failTimer ??= setTimeout(() => w.settle(new Error("failed")), 400);
    }
  }

  #collect<K extends ExecutorEvent["type"]>(
    type: K,
    ranks: number[],
    timeoutMs: number,
    what: string,
  ): Promise<Map<number, EventOf<K>>> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
      const w: Waiter = {
        type,
        ranks: new Set(ranks),
        results: new Map(),
        failures: [],
        settle: (err) => {
          if (!this.#waiters.delete(w)) return;
          clearTimeout(timer);
          clearTimeout(w.failTimer);
          if (!err) return resolve(w.results as Map<number, EventOf<K>>);
          if (err instanceof UserError) return reject(new UserError(`${what}: ${err.message}`));
          if (w.failures.length) return reject(new UserError(this.#rootCause(w, what)));
          reject(err);
        },
      };
      timer = setTimeout(() => {
        const missing = ranks.filter((r) => !w.results.has(r));
        w.settle(
          new UserError(
            `no result from ${missing.map((r) => describeRank(this.ranks[r], r)).join(", ")} within ` +
              `${(timeoutMs / 1000).toFixed(0)} s (raise --timeout if the device is just slow)`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(w);
      if (this.#lost) w.settle(new UserError(this.#lost));
      const dead = this.#exited.filter((f) => w.ranks.has(f.rank));
      if (dead.length) {
        w.failures.push(...dead);
        w.settle(new Error("failed"));
      }
    });
  }

  #rootCause(w: Waiter, what: string): string {
    const echo = (m: string) => /data plane|aborted|disconnected/.test(m);
    const pick = w.failures.find((f) => !f.exit && !echo(f.message)) ??
      w.failures.find((f) => f.exit) ?? w.failures[0];
    const others = new Set(w.failures.map((f) => f.rank));
    others.delete(pick.rank);
    return `${what}: ${describeRank(this.ranks[pick.rank], pick.rank)} ${pick.exit ? "" : "failed: "}${pick.message}` +
      (others.size ? `\n(ranks ${[...others].join(", ")} stopped because of it)` : "");
  }

  /**
   * Sends `cmdFor(rank)` to every rank (ranks for which it returns undefined get nothing and are not waited for)
   * and resolves with each rank's `type` event.
   */
  async all<K extends ExecutorEvent["type"]>(
    cmdFor: (rank: number) => ExecutorCommand | undefined,
    type: K,
    timeoutMs: number,
    what: string,
  ): Promise<Map<number, EventOf<K>>> {
    const cmds = this.ranks.map((r) => [r, cmdFor(r.rank)] as const).filter(([, c]) => c !== undefined);
    const result = this.#collect(type, cmds.map(([r]) => r.rank), timeoutMs, what);
    for (const [r, cmd] of cmds) {
      r.node.session!.send({ type: "to_executor", rank: r.rank, msg: cmd! });
    }
    return await result;
  }

  /** Stops listening (the agents stop the executors when the cluster shuts down). */
  close(): void {
    for (const off of this.#offs.splice(0)) off();
    for (const w of this.#waiters) w.settle(new UserError("profiling stopped"));
  }
}
