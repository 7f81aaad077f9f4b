// The fault model of the executor pool: what can go wrong while executors run (a lost node, an executor that exits,
// a fatal executor error, a phase that times out), and the one root-cause policy that names which fault caused the
// others. launch, profile and nodes all report failures through it, so they blame the same rank.

import type { ExecutorKindName } from "../../core/protocol.ts";
import type { NodeLaunch } from "./cluster_session.ts";

/** Where a rank runs. */
export interface RankPlace {
  rank: number;
  node: NodeLaunch;
  /** Device index on the node. */
  device: number;
  kind: ExecutorKindName;
  /** As the executor named it in `ready` (e.g. `cpu:2 cpu`). */
  deviceName?: string;
  /** The attention kernel a torch executor reported in `ready` (e.g. `flash varlen (bfloat16)`). */
  attention?: string;
  /** The CPUs it may run on, as its agent reported at spawn (a CPU list), and whether it was pinned to them. */
  cpus?: string;
  pinned?: boolean;
}

/** A failure of the cluster while the pool runs. */
export interface Fault {
  kind: "node_lost" | "executor_exit" | "executor_error" | "timeout";
  node: NodeLaunch;
  /** The rank concerned (absent when a whole node is lost). */
  rank?: number;
  /** One line for launch's reports (`executor killed by signal KILL`, `node lost: ...`). */
  reason: string;
  /** What happened, without the kind's prefix: the executor's error message, `exited with code 3`, the agent's loss. */
  detail: string;
  /**
   * For an executor error: the executor said it only repeats another rank's failure (the `echo` field of its `error`
   * event: a peer disconnected, a collective aborted). Absent: not an echo.
   */
  echo?: boolean;
  /** For a timeout: the ranks that had not answered. */
  silent?: number[];
  /** Last lines of the executor's log or the agent's stderr. */
  logTail?: string;
  /** Milliseconds since the pool started. */
  atMs: number;
}

/** Rank numbers as sorted ranges (`0-3, 5, 8-1023`): readable at any rank count. */
export function rankRanges(ranks: Iterable<number>): string {
  const rs = [...new Set(ranks)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < rs.length;) {
    let j = i;
    while (j + 1 < rs.length && rs[j + 1] === rs[j] + 1) j++;
    out.push(j === i ? `${rs[i]}` : j === i + 1 ? `${rs[i]}, ${rs[j]}` : `${rs[i]}-${rs[j]}`);
    i = j + 1;
  }
  return out.join(", ");
}

/** An executor error that only repeats another rank's failure (its peers notice over the data plane). */
export function isEcho(f: Fault): boolean {
  return f.kind === "executor_error" && f.echo === true;
}

/**
 * The fault that caused the others. Peers of a crashed executor often notice first (a data-plane error naming it),
 * so order of arrival is not enough: a lost node comes first, then an executor that died without reporting an
 * error (killed, crashed), then an error that is not an echo of another rank's, then a timeout, then the first fault.
 */
export function rootCause(faults: Fault[]): Fault {
  if (!faults.length) throw new Error("rootCause: no faults");
  const reported = new Set(faults.filter((f) => f.kind === "executor_error").map((f) => f.rank));
  return faults.find((f) => f.kind === "node_lost") ??
    faults.find((f) => f.kind === "executor_exit" && !reported.has(f.rank)) ??
    faults.find((f) => f.kind === "executor_error" && !isEcho(f)) ??
    faults.find((f) => f.kind === "timeout") ??
    faults[0];
}

/**
 * Whether the fault behind `faults` is still to come: the root cause is only an echo (peers of a node that went away
 * noticed over the data plane), and the loss of that node arrives later (its transport closing, or its heartbeats
 * stopping for the heartbeat timeout). `ExecutorPool.settled()` waits longer for silent ranks while this holds.
 */
export function causePending(faults: Fault[]): boolean {
  if (!faults.length) return false;
  const cause = rootCause(faults);
  return isEcho(cause);
}

/** One line naming a fault: `rank 2 on node 0 (host): executor killed by signal KILL`. */
export function describeFault(f: Fault): string {
  const who = f.rank !== undefined ? `rank ${f.rank} on ${f.node.name}` : f.node.name;
  return `${who}: ${f.reason}`;
}

/** Describes a rank for messages: `rank 2 (node 0 (localhost), device 2: webgpu:2 llvmpipe ...)`. */
export function describeRank(r: RankPlace | undefined, rank: number): string {
  if (!r) return `rank ${rank}`;
  return `rank ${rank} (${r.node.name}, device ${r.device}${r.deviceName ? `: ${r.deviceName}` : ""})`;
}

/** A phase (start, step, save, load, a profiling command) ended by a fault; `fault` is the first one. */
export class FaultError extends Error {
  override name = "FaultError";
  constructor(readonly fault: Fault, readonly phase: string) {
    super(`${phase}: ${describeFault(fault)}`);
  }
}

/** A non-fatal refusal by an executor (e.g. a checkpoint file with the wrong checksum); executors stay usable. */
export class RefusedError extends Error {
  override name = "RefusedError";
  constructor(readonly rank: number, readonly phase: string, readonly detail: string) {
    super(`${phase}: rank ${rank}: ${detail}`);
  }
}
