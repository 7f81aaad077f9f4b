// Human-readable rendering of step plans (the `plan` command's tables, also used in launch logs).

import type { GroupPlan, MicroBatchPlan, Plan } from "./plan_types.ts";
import type { PlannerSetup } from "./from_config.ts";
import { rankType, type Topology } from "./topology.ts";

const sec = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 3 : 2)} s`;
const int = (n: number) => n.toLocaleString("en-US");

/**
 * `d8 x3` style summary of a micro-batch's busy groups, plus idle ranks; on a cluster of several device types
 * (`topo` given), each entry names its type: `d8 x2 [cuda 80GB x2]`.
 */
export function summariseMicroBatch(mb: MicroBatchPlan, topo?: Topology): string {
  const busy = new Map<string, { d: number; c: number }>();
  let idle = 0;
  const typed = topo !== undefined && isMixed(topo);
  for (const g of mb.groups) {
    if (g.sequences.length === 0) idle += g.degree;
    else {
      const key = typed ? `${g.degree}\u0000${groupDeviceType(g, topo)}` : String(g.degree);
      const e = busy.get(key) ?? { d: g.degree, c: 0 };
      e.c++;
      busy.set(key, e);
    }
  }
  const parts = [...busy].sort((a, b) => b[1].d - a[1].d || a[0].localeCompare(b[0])).map(([k, { d, c }]) =>
    `d${d} x${c}${typed ? ` [${k.split("\u0000")[1]}]` : ""}`
  );
  if (idle > 0) parts.push(`${idle} idle rank${idle > 1 ? "s" : ""}`);
  return parts.join(" · ");
}

/** The device type(s) of a group's ranks: one label, or `mixed: A + B` (it runs at its slowest device). */
export function groupDeviceType(g: Pick<GroupPlan, "ranks">, topo: Topology): string {
  const types = [...new Set(g.ranks.map((r) => rankType(topo, r)))].filter((t) => t !== "");
  if (types.length <= 1) return types[0] ?? "";
  return `mixed: ${types.join(" + ")}`;
}

/** Whether the topology has more than one device type (then summaries name them). */
export function isMixed(topo: Topology): boolean {
  return new Set(topo.deviceType ?? []).size > 1;
}

function describeGroup(g: GroupPlan, setup: PlannerSetup): string {
  const first = g.ranks[0];
  const last = g.ranks[g.ranks.length - 1];
  const nodes = [...new Set(g.ranks.map((r) => setup.topology.hosts[setup.topology.nodeOf[r]]))];
  const type = groupDeviceType(g, setup.topology);
  const where = (nodes.length === 1 ? nodes[0] : `${nodes.length} nodes`) + (type ? `, ${type}` : "");
  const ls = g.lengths.length > 8
    ? `${g.lengths.slice(0, 8).map(int).join(", ")}, … (${g.lengths.length})`
    : g.lengths.map(int).join(", ");
  return `d${g.degree} ranks ${first}-${last} (${where}) ${
    g.sequences.length ? `${sec(g.predictedMs)} [${ls}]` : "idle"
  }`;
}

/** `4 nodes cuda 40GB (ranks 0-31), 4 nodes cuda 80GB x2 (ranks 32-63)`: the device types in rank order. */
export function describeTypes(topo: Topology): string {
  const runs: { type: string; nodes: number; first: number; last: number }[] = [];
  for (let r = 0; r < topo.devices; r++) {
    const type = rankType(topo, r);
    const last = runs[runs.length - 1];
    if (last && last.type === type) {
      if (topo.nodeOf[r] !== topo.nodeOf[r - 1]) last.nodes++;
      last.last = r;
    } else runs.push({ type, nodes: 1, first: r, last: r });
  }
  return runs.map((x) => `${x.nodes} node${x.nodes > 1 ? "s" : ""} ${x.type} (ranks ${x.first}-${x.last})`).join(", ");
}

/**
 * What a baseline stands for: `static` is the fixed degree DeepSpeed-Ulysses and Megatron CP run (SP=1: plain data
 * parallelism), `batchada` the best homogeneous degree for each batch; both give each of their data-parallel groups
 * its share of every micro-batch.
 */
export function baselineMeaning(name: string, degree: number, devices: number): string {
  const groups = Math.floor(devices / degree);
  const dp = `${groups} data-parallel group${groups === 1 ? "" : "s"}`;
  if (name === "static") {
    return degree === 1 ? `plain data parallelism, ${dp}` : `fixed degree as DeepSpeed-Ulysses / Megatron CP, ${dp}`;
  }
  return `best homogeneous degree for this batch, ${dp}`;
}

/** Renders one step's plans of every strategy. */
export function formatPlanText(
  step: number,
  lengths: readonly number[],
  plans: Record<string, Plan>,
  setup: PlannerSetup,
  opts: { verbose?: boolean } = {},
): string {
  const verbose = opts.verbose ?? false;
  const tokens = lengths.reduce((a, b) => a + b, 0);
  const lines = [
    `step ${step} · ${lengths.length} sequences · ${int(tokens)} tokens · longest ${int(Math.max(...lengths))}`,
  ];
  if (step === 0 && isMixed(setup.topology)) lines.unshift(`device types: ${describeTypes(setup.topology)}`);
  for (const [name, p] of Object.entries(plans)) {
    const gap = p.lowerBoundMs > 0 ? ` (gap ${((p.predictedMs / p.lowerBoundMs - 1) * 100).toFixed(1)}%)` : "";
    const head = name === "flexsp"
      ? `bound ${sec(p.lowerBoundMs)}${gap}   solve ${p.solveMs.toFixed(0)} ms`
      : `SP=${p.degree} (${baselineMeaning(name, p.degree ?? 1, setup.topology.devices)})`;
    const dropped = p.dropped.length ? `   ${p.dropped.length} dropped (too long)` : "";
    lines.push(
      `  ${name.padEnd(9)} ${sec(p.predictedMs).padStart(10)}   ${head}   ${p.microBatches.length} micro-batch` +
        `${p.microBatches.length === 1 ? "" : "es"}${dropped}`,
    );
    if (name !== "flexsp" && !verbose) continue;
    p.microBatches.forEach((mb, i) => {
      lines.push(
        `    mb ${String(i).padEnd(3)} ${sec(mb.predictedMs).padStart(10)}   ${
          summariseMicroBatch(mb, setup.topology)
        }`,
      );
      if (verbose) { for (const g of mb.groups) lines.push(`        ${describeGroup(g, setup)}`); }
    });
  }
  const f = plans.flexsp?.predictedMs;
  if (f) {
    const vs = Object.entries(plans).filter(([n]) => n !== "flexsp")
      .map(([n, p]) => `${(p.predictedMs / f).toFixed(2)}x vs ${n}`);
    lines.push(`  flexsp speedup: ${vs.join(", ")}`);
  }
  return lines.join("\n");
}
