// Finding and killing a process tree on the node: every descendant of a process (from /proc on Linux) and whole
// process groups, so no executor or grandchild outlives the agent.

/** Whether a process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  if (Deno.build.os === "linux") {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      return state !== "Z" && state !== "X";
    } catch {
      return false;
    }
  }
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** All live descendants of `root` (children, grandchildren, ...), from /proc; empty where there is no /proc. */
export function descendants(root: number): number[] {
  if (Deno.build.os !== "linux") return [];
  const children = new Map<number, number[]>();
  try {
    for (const e of Deno.readDirSync("/proc")) {
      const pid = Number(e.name);
      if (!Number.isInteger(pid)) continue;
      let stat: string;
      try {
        stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      } catch {
        continue;
      }
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (rest[0] === "Z" || rest[0] === "X") continue;
      const ppid = Number(rest[1]);
      const list = children.get(ppid);
      if (list) list.push(pid);
      else children.set(ppid, [pid]);
    }
  } catch {
    return [];
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    for (const c of children.get(stack.pop()!) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

/** A process's start time (clock ticks after boot) from /proc, to tell it from a later process with the same id. */
export function startTime(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/**
 * Remembers every process seen below a root, so that descendants that were orphaned later (their parent exited and
 * they were handed to init) can still be found and killed.
 */
export class TreeTracker {
  #seen = new Map<number, string | undefined>();
  constructor(readonly root: number) {}

  /** Records the current descendants of the root. */
  scan(): void {
    for (const pid of descendants(this.root)) if (!this.#seen.has(pid)) this.#seen.set(pid, startTime(pid));
  }

  /** Every recorded process that still runs (same id and start time), plus the current descendants. */
  alive(): number[] {
    this.scan();
    return [...this.#seen].filter(([pid, t]) => isAlive(pid) && startTime(pid) === t).map(([pid]) => pid);
  }
}

/** Sends `signal` to each process group and each process; missing ones are ignored. */
export function signalAll(groups: number[], pids: number[], signal: Deno.Signal): void {
  for (const g of groups) {
    try {
      Deno.kill(-g, signal);
    } catch { /* group gone */ }
  }
  for (const p of pids) {
    try {
      Deno.kill(p, signal);
    } catch { /* gone */ }
  }
}

/**
 * Kills process groups `groups` (executors are group leaders) and every process `tracker` has seen below the agent:
 * SIGTERM, up to `graceMs` to exit, then SIGKILL for whatever is left.
 */
export async function killTree(tracker: TreeTracker, groups: number[], graceMs: number): Promise<void> {
  signalAll(groups, tracker.alive(), "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (tracker.alive().length === 0 && !groups.some(isAlive)) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  signalAll(groups, tracker.alive(), "SIGKILL");
}
