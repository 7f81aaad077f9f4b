// Whether the executors of a node compete for the same cores (more executors than cores, or overlapping CPU
// affinity), from the sets their agents reported at spawn: every time the profile measures is distorted when they do.

import { formatCpuList, parseCpuList } from "../../core/cpu_list.ts";

/** One executor as the pool knows it. */
export interface ExecutorCores {
  rank: number;
  /** The node's name in messages, and its index in `cluster.nodes`. */
  node: string;
  nodeIndex: number;
  /** The node's CPU count (its inventory). */
  nodeCpus: number;
  /** The CPU list it may run on (absent when the agent did not say). */
  cpus?: string;
  pinned?: boolean;
}

/** One warning line per node whose executors share cores; none when every executor has cores of its own. */
export function coreSharingWarnings(executors: ExecutorCores[]): string[] {
  const byNode = new Map<number, ExecutorCores[]>();
  for (const e of executors) byNode.set(e.nodeIndex, [...byNode.get(e.nodeIndex) ?? [], e]);
  const out: string[] = [];
  for (const [index, list] of [...byNode].sort((a, b) => a[0] - b[0])) {
    if (list.length < 2) continue;
    const { node, nodeCpus } = list[0];
    const key = `cluster.nodes[${index}].cpu_pinning`;
    const sets = list.map((e) => e.cpus === undefined ? undefined : parseCpuList(e.cpus));
    const cores = new Set(sets.flatMap((s) => s ?? []));
    const total = cores.size || nodeCpus;
    if (list.length > total) {
      out.push(
        `${node}: ${list.length} executors on ${total} core(s): they time-share cores, so every measured time is ` +
          `distorted; give the node at most ${total} device(s), or more cores`,
      );
      continue;
    }
    const shared: string[] = [];
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = sets[i], b = sets[j];
        if (!a || !b) continue;
        const both = a.filter((c) => b.includes(c));
        if (both.length) shared.push(`ranks ${list[i].rank} and ${list[j].rank} share CPU ${formatCpuList(both)}`);
      }
    }
    if (!shared.length) continue;
    const unpinned = list.every((e) => !e.pinned);
    out.push(
      unpinned
        ? `${node}: its ${list.length} executors are not pinned and may run on the same cores ` +
          `(${formatCpuList([...cores])}): set ${key}: auto to give each its own`
        : `${node}: ${shared.slice(0, 3).join("; ")}${
          shared.length > 3 ? ` (and ${shared.length - 3} more pairs)` : ""
        }: give each executor disjoint CPUs in ${key}, or use auto`,
    );
  }
  return out;
}
