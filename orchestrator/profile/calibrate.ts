// Calibration of the cost model's all-to-all terms against real group runs. The microbenchmark measures the network
// with idle devices; in a training step the same exchanges share the CPU with compute and every rank waits for the
// slowest member at each of the 4·L exchanges (on oversubscribed cores this dominates). Per degree and placement,
// the time the model cannot attribute to compute, β1 and the micro-batch's fixed cost is fitted as a line against
// the communicated volume (weighted least squares on relative error): its slope is 1/v[d], its intercept the
// degree's fixed cost per group (`group_ms`: the exchanges' per-call latency, the cost of small shards), which a
// bandwidth alone cannot represent (short sequences pay it as much as long ones). With one validation length the
// line goes through the origin (bandwidth only). v[d] never rises above the microbenchmark's value (what it adds
// are costs the microbenchmark cannot see: a real run is never faster than the network allows; faster-than-predicted
// groups mean the compute part was overestimated, or noise) nor falls below a twentieth of it (the fixed part then
// takes the rest), and the microbenchmark's ratios between links are kept; both values are kept in the profile.
// Degree-1 runs of the same validation scale the compute part (the load of a shared machine varies); when they are
// off by more than 20%, calibration is skipped with a warning.

import type { CostModel } from "../planner/cost_model.ts";
import { blockSpeed, type Topology } from "../planner/topology.ts";
import { median } from "./fit.ts";
import type { MeasuredPoint } from "./step_runs.ts";
import type { Calibration } from "../config/profile_doc.ts";

export type { Calibration };

/** Calibrated v[d] per degree and placement, or why calibration was skipped. */
export function calibrateBandwidth(
  points: MeasuredPoint[],
  topo: Topology,
  cost: CostModel,
  shape: { layers: number; hidden: number },
): { calibrations: Calibration[]; skipped?: string } {
  const commMbPerToken = (4 * 2 * shape.layers * shape.hidden * 2) / 2 ** 20;
  const predicted = (p: MeasuredPoint) =>
    median(p.starts.map((s) => cost.groupMs([p.length], p.degree, p.spans, blockSpeed(topo, s, p.degree))));
  // Degree 1 has no communication: how its measured times compare with the compute model tells how fast the
  // devices ran during the validation (the machine's load can change between phases).
  const solo = points.filter((p) => p.degree === 1 && p.measuredMs > 0);
  const speedFactor = solo.length ? median(solo.map((p) => p.measuredMs / predicted(p))) : 1;
  if (Math.abs(speedFactor - 1) > 0.2) {
    return {
      calibrations: [],
      skipped: `the validation at degree 1 ran ${(speedFactor * 100 - 100).toFixed(0)}% off the compute fit (the ` +
        `machine's load changed during profiling?): bandwidths not calibrated; re-run on a quiet cluster`,
    };
  }
  const out: Calibration[] = [];
  const keys = [...new Set(points.filter((p) => p.degree > 1).map((p) => `${p.degree}|${p.spans}`))];
  for (const key of keys) {
    const d = Number(key.split("|")[0]), spans = key.endsWith("true");
    const mine = points.filter((p) => p.degree === d && p.spans === spans && p.measuredMs > 0);
    const rows = mine.map((p) => ({
      a: (commMbPerToken * p.length) / d,
      // What the model leaves to the all-to-all (its own fixed cost of this degree taken out, so it is refitted).
      target: p.measuredMs - (predicted(p) - cost.commMs(p.length, d, spans) - cost.groupExtraMs(d)) * speedFactor,
      w: 1 / (p.measuredMs * p.measuredMs),
    }));
    const old = cost.bandwidth(d, spans);
    const { inv, fixed } = fitLine(rows);
    let v = inv > 0 ? Math.min(old, Math.max(old / 20, 1 / inv)) : old;
    let groupMs = fixed;
    // A bandwidth held to its bounds leaves the fixed part to take the rest.
    if (1 / v !== inv) groupMs = Math.max(0, weightedMean(rows.map((r) => [r.target - r.a / v, r.w])));
    if (!(groupMs > 0)) groupMs = 0;
    v = Number(v.toPrecision(4));
    out.push({
      degree: d,
      spans,
      microbenchGbps: old,
      calibratedGbps: v,
      groupMs: Number(groupMs.toPrecision(4)),
      points: mine.length,
      applied: false,
    });
  }
  // Keep the microbenchmark's ratios between links: a link it measured k times faster than another stays at least
  // k times faster after calibration (on a loaded machine a few slow validation runs inside a node would otherwise
  // undo the plans' locality).
  for (const c of out) {
    for (const o of out) {
      if (c.microbenchGbps <= o.microbenchGbps) continue;
      const floor = Math.min(c.microbenchGbps, (o.calibratedGbps * c.microbenchGbps) / o.microbenchGbps);
      if (c.calibratedGbps < floor) c.calibratedGbps = Number(floor.toPrecision(4));
    }
  }
  return { calibrations: out };
}

/** Σ w·x / Σ w of [x, w] pairs (0 when empty). */
function weightedMean(xw: [number, number][]): number {
  const sw = xw.reduce((t, [, w]) => t + w, 0);
  return sw > 0 ? xw.reduce((t, [x, w]) => t + x * w, 0) / sw : 0;
}

/**
 * Weighted least squares of `target ≈ fixed + a·inv` with both non-negative: a per-group fixed cost (the exchanges'
 * per-call latency, small shards) and the inverse bandwidth. With one length (or lengths too close to tell them
 * apart) the line goes through the origin: all of it is bandwidth, as before the fixed cost was fitted.
 */
export function fitLine(rows: { a: number; target: number; w: number }[]): { inv: number; fixed: number } {
  const sw = rows.reduce((t, r) => t + r.w, 0);
  const through = () => {
    const den = rows.reduce((t, r) => t + r.w * r.a * r.a, 0);
    return { inv: den > 0 ? rows.reduce((t, r) => t + r.w * r.a * r.target, 0) / den : 0, fixed: 0 };
  };
  if (rows.length < 2 || !(sw > 0)) return through();
  const ma = weightedMean(rows.map((r) => [r.a, r.w])), mt = weightedMean(rows.map((r) => [r.target, r.w]));
  const saa = rows.reduce((t, r) => t + r.w * (r.a - ma) ** 2, 0);
  if (!(saa > 1e-12 * sw * ma * ma)) return through();
  const inv = rows.reduce((t, r) => t + r.w * (r.a - ma) * (r.target - mt), 0) / saa;
  const fixed = mt - inv * ma;
  if (inv < 0) return { inv: 0, fixed: Math.max(0, mt) };
  if (fixed < 0) return through();
  return { inv, fixed };
}
