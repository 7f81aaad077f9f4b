// Human-readable rendering of step plans (the `plan` command's tables, also used in launch logs).

import type { GroupPlan, MicroBatchPlan, Plan } from "./plan_types.ts";
import type { PlannerSetup } from "./from_config.ts";

const sec = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 3 : 2)} s`;
const int = (n: number) => n.toLocaleString("en-US");

/** `d8 x3` style summary of a micro-batch's busy groups, plus idle ranks. */
export function summariseMicroBatch(mb: MicroBatchPlan): string {
  const busy = new Map<number, number>();
  let idle = 0;
  for (const g of mb.groups) {
    if (g.sequences.length === 0) idle += g.degree;
    else busy.set(g.degree, (busy.get(g.degree) ?? 0) + 1);
  }
  const parts = [...busy].sort((a, b) => b[0] - a[0]).map(([d, c]) => `d${d} x${c}`);
  if (idle > 0) parts.push(`${idle} idle rank${idle > 1 ? "s" : ""}`);
  return parts.join(" · ");
}

function describeGroup(g: GroupPlan, setup: PlannerSetup): string {
  const first = g.ranks[0];
  const last = g.ranks[g.ranks.length - 1];
  const nodes = [...new Set(g.ranks.map((r) => setup.topology.hosts[setup.topology.nodeOf[r]]))];
  const where = nodes.length === 1 ? nodes[0] : `${nodes.length} nodes`;
  const ls = g.lengths.length > 8
    ? `${g.lengths.slice(0, 8).map(int).join(", ")}, … (${g.lengths.length})`
    : g.lengths.map(int).join(", ");
  return `d${g.degree} ranks ${first}-${last} (${where}) ${
    g.sequences.length ? `${sec(g.predictedMs)} [${ls}]` : "idle"
  }`;
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
  for (const [name, p] of Object.entries(plans)) {
    const gap = p.lowerBoundMs > 0 ? ` (gap ${((p.predictedMs / p.lowerBoundMs - 1) * 100).toFixed(1)}%)` : "";
    const head = name === "flexsp"
      ? `bound ${sec(p.lowerBoundMs)}${gap}   solve ${p.solveMs.toFixed(0)} ms`
      : `SP=${p.degree}`;
    const dropped = p.dropped.length ? `   ${p.dropped.length} dropped (too long)` : "";
    lines.push(
      `  ${name.padEnd(9)} ${sec(p.predictedMs).padStart(10)}   ${head}   ${p.microBatches.length} micro-batch` +
        `${p.microBatches.length === 1 ? "" : "es"}${dropped}`,
    );
    if (name !== "flexsp" && !verbose) continue;
    p.microBatches.forEach((mb, i) => {
      lines.push(`    mb ${String(i).padEnd(3)} ${sec(mb.predictedMs).padStart(10)}   ${summariseMicroBatch(mb)}`);
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
