// Profiling's calls on the cluster's executor pool: one command on every rank at once. A failure becomes one
// UserError line naming the root cause (cluster/fault.ts, the policy launch uses too) and the ranks it stopped.

import type { ExecutorCommand, ExecutorEvent } from "../../core/protocol.ts";
import { UserError } from "../errors.ts";
import { describeRank, type EventOf, type ExecutorPool, FaultError, RefusedError } from "../cluster/executor_pool.ts";

/** One command for every rank, and what to wait for. */
export interface AllRequest<K extends ExecutorEvent["type"]> {
  cmd: ExecutorCommand;
  /** The event each rank answers with. */
  type: K;
  timeoutMs: number;
  /** The phase, for messages (`compute benchmark (round 1 of 2)`). */
  what: string;
}

/** Sends `r.cmd` to every rank and resolves with each rank's `r.type` event; failures as `profileError`. */
export async function onAll<K extends ExecutorEvent["type"]>(
  pool: ExecutorPool,
  r: AllRequest<K>,
): Promise<Map<number, EventOf<K>>> {
  const { cmd, type, timeoutMs, what } = r;
  try {
    return await pool.request(() => cmd, type, timeoutMs, what);
  } catch (e) {
    throw await profileError(pool, what, e);
  }
}

/** The UserError for a failed pool phase `what`: waits for the pool to settle, then names the root cause. */
export async function profileError(pool: ExecutorPool, what: string, e: unknown): Promise<Error> {
  if (e instanceof RefusedError) {
    return new UserError(`${what}: ${describeRank(pool.places[e.rank], e.rank)} failed: ${e.detail}`);
  }
  if (!(e instanceof FaultError)) return e as Error;
  const faults = await pool.settled();
  const c = pool.cause!;
  if (c.kind === "node_lost") return new UserError(`${what}: ${c.node.name} was lost: ${c.detail}`);
  if (c.kind === "timeout") {
    const silent = (c.silent ?? [c.rank!]).map((r) => describeRank(pool.places[r], r));
    return new UserError(
      `${what}: no result from ${silent.join(", ")} ${c.detail} (raise --timeout if the device is just slow)`,
    );
  }
  const who = describeRank(pool.places[c.rank!], c.rank!);
  let text: string;
  if (c.kind === "executor_exit") {
    const tail = (c.logTail ?? "").split("\n").filter((l) => l.trim()).slice(-6).map((l) => `    ${l}`).join("\n");
    text = `${who} ${c.detail}${tail ? `; last log lines:\n${tail}` : ""}`;
  } else text = `${who} failed: ${c.detail}`;
  const others = new Set(faults.filter((f) => f.rank !== undefined && f.rank !== c.rank).map((f) => f.rank!));
  return new UserError(
    `${what}: ${text}` + (others.size ? `\n(ranks ${[...others].join(", ")} stopped because of it)` : ""),
  );
}
