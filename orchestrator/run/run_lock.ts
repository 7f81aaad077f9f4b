// The exclusive lock of a run directory: `RUN_DIR/run.lock`, created with O_EXCL by the orchestrator that trains
// in it and removed when it ends. A second launch or resume of the same directory is refused with the holder's PID
// and host. A lock whose process is gone (same host: no such PID, or a PID reused by a process started later) is
// stale: it is taken over with a message, as is a lock that names another directory (it came with a copy or a
// move). A lock of another host cannot be checked from here; the refusal says how to remove it once that process is
// known to be gone.

import { UserError } from "../errors.ts";

/** What `run.lock` holds. */
export interface LockHolder {
  pid: number;
  host: string;
  /** The holder's start time in clock ticks since boot (/proc/PID/stat field 22), to tell a reused PID apart. */
  startTicks?: number;
  since: string;
  /** The run directory's real path when locked: a copy or a moved directory carries a lock that is not its own. */
  dir?: string;
  /** SLURM_JOB_ID of the holder: a requeued job (the same id, maybe on another node) replaces its earlier run. */
  job?: string;
}

/** A held lock; `release` (or `using`) removes it. */
export interface RunLock extends Disposable {
  path: string;
  release(): void;
}

export const LOCK_FILE = "run.lock";

/** Start time of process `pid` in clock ticks since boot; undefined when there is no such (live) process. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z" || rest[0] === "X") return undefined;
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

/** Whether the holder of a lock written on this host still runs. */
function holderAlive(h: LockHolder): boolean {
  if (Deno.build.os !== "linux") {
    try {
      Deno.kill(h.pid, "SIGCONT");
      return true;
    } catch {
      return false;
    }
  }
  const ticks = processStartTicks(h.pid);
  return ticks !== undefined && (h.startTicks === undefined || ticks === h.startTicks);
}

function readHolder(path: string): LockHolder | undefined {
  try {
    const h = JSON.parse(Deno.readTextFileSync(path));
    return Number.isInteger(h?.pid) && typeof h?.host === "string" ? h : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock of `runDir` for this process (the directory must exist). Throws a UserError naming the holder when
 * a live process holds it; takes over a stale one, logging whose it was.
 */
export function acquireRunLock(runDir: string, log: (line: string) => void): RunLock {
  const path = `${runDir.replace(/\/+$/, "")}/${LOCK_FILE}`;
  const me: LockHolder = {
    pid: Deno.pid,
    host: Deno.hostname(),
    startTicks: processStartTicks(Deno.pid),
    since: new Date().toISOString(),
    dir: Deno.realPathSync(runDir),
    ...(Deno.env.get("SLURM_JOB_ID") ? { job: Deno.env.get("SLURM_JOB_ID") } : {}),
  };
  for (let attempt = 0;; attempt++) {
    try {
      Deno.writeTextFileSync(path, JSON.stringify(me) + "\n", { createNew: true });
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists) || attempt > 0) {
        if (e instanceof Deno.errors.AlreadyExists) {
          throw new UserError(`${runDir} was locked by another process while this one took over its stale lock`);
        }
        throw new UserError(`cannot lock ${runDir}: ${path}: ${(e as Error).message}`);
      }
    }
    const h = readHolder(path);
    // A lock that came with a copied or moved directory, or one of this Slurm job before its requeue (Slurm runs a
    // job's batch script once at a time), is not a live holder.
    const elsewhere = (h?.dir !== undefined && h.dir !== me.dir) ||
      (h?.job !== undefined && h.job === me.job && (h.host !== me.host || h.pid !== me.pid));
    if (h && !elsewhere && h.host !== me.host) {
      throw new UserError(
        `${runDir} is in use by process ${h.pid} on host ${h.host} (since ${h.since}); wait for that run to end or ` +
          `stop it. If it is gone (its host rebooted), remove ${path} and run this again`,
      );
    }
    if (h && !elsewhere && holderAlive(h)) {
      throw new UserError(
        `${runDir} is in use by process ${h.pid} on host ${h.host} (since ${h.since}); wait for that run to end ` +
          `or stop it (Ctrl-C, or kill -INT ${h.pid}), then resume`,
      );
    }
    log(
      !h
        ? `taking over the unreadable lock ${path}`
        : elsewhere && h.job === me.job && h.job !== undefined
        ? `taking over the lock of Slurm job ${h.job} before its requeue (process ${h.pid} on ${h.host})`
        : elsewhere
        ? `taking over the lock ${path}, copied or moved with the directory (it locked ${h.dir})`
        : `taking over the stale lock of ${runDir}: process ${h.pid} on ${h.host} (since ${h.since}) is gone`,
    );
    // Remove only the lock just judged stale (another process may have taken it over meanwhile).
    if (JSON.stringify(readHolder(path)) === JSON.stringify(h)) Deno.removeSync(path);
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    // Only our own lock: never remove one another process wrote after a takeover.
    if (readHolder(path)?.pid === me.pid) Deno.removeSync(path);
  };
  return { path, release, [Symbol.dispose]: release };
}

/**
 * Whether an orchestrator trains in `runDir` now (for `status`): `held` by a live process of this host, `free` (no
 * lock, or its process is gone), or `unknown` (held from another host, which cannot be checked from here).
 */
export function lockState(runDir: string): { state: "held" | "free" | "unknown"; holder?: LockHolder } {
  const h = readHolder(`${runDir.replace(/\/+$/, "")}/${LOCK_FILE}`);
  if (!h) return { state: "free" };
  if (h.host !== Deno.hostname()) return { state: "unknown", holder: h };
  return holderAlive(h) ? { state: "held", holder: h } : { state: "free", holder: h };
}
