// `deno task profile --check RUN_DIR`: reads a run's ledger.jsonl (one JSON object per step, as `launch` writes it),
// reports how well the cost model predicted step and group times (error distribution overall and per degree) and
// flags drift: a rank or node whose measured/predicted ratio rose during the run (it got slower), or that runs
// slower than the other ranks relative to the prediction.

import { median, quantile } from "./fit.ts";
import type { LedgerEntry } from "../ledger/ledger.ts";

/** Summary statistics of signed relative errors `(predicted - measured) / measured`. */
export interface ErrorStats {
  count: number;
  /** Median of |error|. */
  medianAbs: number;
  /** Signed median (negative: the model predicts too little). */
  median: number;
  p10: number;
  p90: number;
  maxAbs: number;
}

/** One rank's prediction ratio over the run. */
export interface RankDrift {
  rank: number;
  node?: number;
  host?: string;
  /** Median measured/predicted over all its groups. */
  ratio: number;
  early: number;
  late: number;
  groups: number;
}

/** Result of a ledger check. */
export interface LedgerCheck {
  steps: number;
  groups: number;
  step: ErrorStats;
  /** The plans' micro-batches (their predictions added up, without the step's fixed cost) against the sum of their
   * measured times (when the ledger records `microBatchMs`: without the gradient all-reduce and optimizer). */
  microBatches?: ErrorStats;
  group: ErrorStats;
  /**
   * Step and group errors with the run's overall speed taken out (every prediction times the run's median
   * measured/predicted): what is left is the model's error between plans, apart from how fast the machine ran (on a
   * shared machine other work changes that between the profile and the run).
   */
  relative: { speed: number; step: ErrorStats; group: ErrorStats };
  byDegree: { degree: number; stats: ErrorStats }[];
  histogram: { lo: number; hi: number; count: number }[];
  ranks: RankDrift[];
  /** Drift and outlier flags, one readable line each. */
  flags: string[];
  threshold: number;
}

/** Statistics of signed relative errors. */
export function errorStats(errs: number[]): ErrorStats {
  const abs = errs.map(Math.abs);
  return {
    count: errs.length,
    medianAbs: median(abs),
    median: median(errs),
    p10: quantile(errs, 0.1),
    p90: quantile(errs, 0.9),
    maxAbs: abs.length ? Math.max(...abs) : 0,
  };
}

/** Checks ledger entries; `nodeOf[rank]` names ranks' nodes when known. */
export function checkLedger(
  entries: LedgerEntry[],
  opts: { driftThreshold?: number; nodeOf?: { node: number; host: string }[] } = {},
): LedgerCheck {
  const threshold = opts.driftThreshold ?? 0.15;
  const sorted = [...entries].sort((a, b) => a.step - b.step);
  const rel = (p: number, m: number) => (p - m) / m;
  const stepErrs = sorted.filter((e) => e.measuredMs > 0).map((e) => rel(e.predictedMs, e.measuredMs));
  const groupRows: { step: number; degree: number; ranks: number[]; p: number; m: number }[] = [];
  for (const e of sorted) {
    for (const mb of e.plan.microBatches) {
      for (const g of mb.groups) {
        if (g.sequences?.length === 0 || !(g.predictedMs > 0) || !(g.measuredMs > 0)) continue;
        groupRows.push({ step: e.step, degree: g.degree, ranks: g.ranks, p: g.predictedMs, m: g.measuredMs });
      }
    }
  }
  const degrees = [...new Set(groupRows.map((g) => g.degree))].sort((a, b) => a - b);
  const edges = [-Infinity, -0.5, -0.3, -0.15, -0.05, 0.05, 0.15, 0.3, 0.5, Infinity];
  const histogram = edges.slice(0, -1).map((lo, i) => ({
    lo,
    hi: edges[i + 1],
    count: stepErrs.filter((x) => x >= lo && x < edges[i + 1]).length,
  }));

  // Per rank: measured/predicted of every group it was in, early (first third of steps) vs late (last third).
  const steps = sorted.map((e) => e.step);
  const window = Math.max(1, Math.floor(steps.length / 3));
  const earlySteps = new Set(steps.slice(0, window)), lateSteps = new Set(steps.slice(-window));
  const rankIds = [...new Set(groupRows.flatMap((g) => g.ranks))].sort((a, b) => a - b);
  const ranks: RankDrift[] = rankIds.map((rank) => {
    const mine = groupRows.filter((g) => g.ranks.includes(rank));
    const r = (rows: typeof mine) => median(rows.map((g) => g.m / g.p));
    return {
      rank,
      node: opts.nodeOf?.[rank]?.node,
      host: opts.nodeOf?.[rank]?.host,
      ratio: r(mine),
      early: r(mine.filter((g) => earlySteps.has(g.step))),
      late: r(mine.filter((g) => lateSteps.has(g.step))),
      groups: mine.length,
    };
  });
  const flags: string[] = [];
  const name = (d: RankDrift) => `rank ${d.rank}${d.node !== undefined ? ` (node ${d.node}, ${d.host})` : ""}`;
  const pctS = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(0)}%`;
  const drifting = new Set<number>();
  if (steps.length >= 4) {
    for (const d of ranks) {
      if (d.early > 0 && d.late / d.early - 1 > threshold) {
        drifting.add(d.rank);
        flags.push(
          `drift: ${name(d)} got slower: measured/predicted rose from ${d.early.toFixed(2)} (first ${window} ` +
            `steps) to ${d.late.toFixed(2)} (last ${window}), ${pctS(d.late / d.early - 1)}`,
        );
      }
    }
  }
  const typical = median(ranks.map((d) => d.ratio));
  for (const d of ranks) {
    if (!drifting.has(d.rank) && ranks.length > 1 && d.ratio / typical - 1 > threshold) {
      flags.push(
        `slow: ${name(d)} runs ${pctS(d.ratio / typical - 1)} slower than the other ranks relative to the ` +
          `prediction (measured/predicted ${d.ratio.toFixed(2)} vs ${typical.toFixed(2)}): its node may be ` +
          `throttled or its speed mis-set; re-profile`,
      );
    }
  }
  if (opts.nodeOf) {
    const nodes = [...new Set(ranks.map((d) => d.node))];
    for (const n of nodes) {
      const mine = ranks.filter((d) => d.node === n);
      if (mine.length > 1 && mine.every((d) => drifting.has(d.rank))) {
        flags.push(`drift: every rank of node ${n} (${mine[0].host}) got slower: the node itself slowed down`);
      }
    }
  }
  if (steps.length >= 4) {
    const early = median(sorted.slice(0, window).map((e) => e.measuredMs / e.predictedMs));
    const late = median(sorted.slice(-window).map((e) => e.measuredMs / e.predictedMs));
    if (late / early - 1 > threshold) {
      flags.push(
        `drift: steps got slower relative to the prediction: measured/predicted ${early.toFixed(2)} -> ` +
          `${late.toFixed(2)} (${pctS(late / early - 1)})`,
      );
    }
  }
  return {
    steps: sorted.length,
    groups: groupRows.length,
    step: errorStats(stepErrs),
    microBatches: sorted.every((e) => typeof e.microBatchMs === "number" && Number.isFinite(e.microBatchMs))
      ? errorStats(
        sorted.map((e) => rel(e.plan.microBatches.reduce((t, mb) => t + mb.predictedMs, 0), e.microBatchMs!)),
      )
      : undefined,
    group: errorStats(groupRows.map((g) => rel(g.p, g.m))),
    relative: relativeStats(sorted, groupRows),
    byDegree: degrees.map((degree) => ({
      degree,
      stats: errorStats(groupRows.filter((g) => g.degree === degree).map((g) => rel(g.p, g.m))),
    })),
    histogram,
    ranks,
    flags,
    threshold,
  };
}

/** Errors after scaling every prediction by the run's median measured/predicted step time. */
function relativeStats(steps: LedgerEntry[], groups: { p: number; m: number }[]): LedgerCheck["relative"] {
  const timed = steps.filter((e) => e.measuredMs > 0 && e.predictedMs > 0);
  const speed = timed.length ? median(timed.map((e) => e.measuredMs / e.predictedMs)) : 1;
  return {
    speed,
    step: errorStats(timed.map((e) => (e.predictedMs * speed - e.measuredMs) / e.measuredMs)),
    group: errorStats(groups.map((g) => (g.p * speed - g.m) / g.m)),
  };
}

/** The readable report of a ledger check. */
export function formatLedgerCheck(c: LedgerCheck, path: string): string {
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
  const abs = (x: number) => `${(x * 100).toFixed(1)}%`;
  const line = (s: ErrorStats) =>
    `median |error| ${abs(s.medianAbs)} (signed ${pct(s.median)}), p10 ${pct(s.p10)}, p90 ${pct(s.p90)}, ` +
    `max |error| ${abs(s.maxAbs)}`;
  const out = [
    `prediction check of ${path}: ${c.steps} step(s), ${c.groups} group(s) (error = predicted/measured - 1)`,
    `  step time:  ${line(c.step)}`,
    ...(c.microBatches ? [`  step time without all-reduce and optimizer (microBatchMs): ${line(c.microBatches)}`] : []),
    `  group time: ${line(c.group)}`,
    `  with the run's speed taken out (measured/predicted ${c.relative.speed.toFixed(2)} overall): step median ` +
    `|error| ${abs(c.relative.step.medianAbs)}, group ${abs(c.relative.group.medianAbs)}`,
  ];
  for (const d of c.byDegree) out.push(`    degree ${d.degree}: ${line(d.stats)} over ${d.stats.count} group(s)`);
  out.push("  step error histogram:");
  const fmtEdge = (x: number) => (Number.isFinite(x) ? pct(x) : "");
  const most = Math.max(1, ...c.histogram.map((h) => h.count));
  for (const h of c.histogram) {
    const label = !Number.isFinite(h.lo)
      ? `< ${fmtEdge(h.hi)}`
      : !Number.isFinite(h.hi)
      ? `>= ${fmtEdge(h.lo)}`
      : `${fmtEdge(h.lo)} .. ${fmtEdge(h.hi)}`;
    out.push(`    ${label.padEnd(18)} ${"#".repeat(Math.round((h.count / most) * 30)).padEnd(30)} ${h.count}`);
  }
  if (c.ranks.length) {
    out.push(
      `  per rank measured/predicted (early -> late): ` +
        c.ranks.map((d) => `${d.rank}: ${d.early.toFixed(2)}->${d.late.toFixed(2)}`).join(", "),
    );
  }
  out.push(
    c.flags.length
      ? c.flags.map((f) => `  ${f}`).join("\n")
      : `  no drift (threshold ${(c.threshold * 100).toFixed(0)}%)`,
  );
  out.push(
    `  verdict: median step error ${abs(c.step.medianAbs)} ${c.step.medianAbs <= 0.15 ? "within" : "OUTSIDE"} 15%`,
  );
  return out.join("\n");
}
