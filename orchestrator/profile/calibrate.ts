// Calibration of the cost model's all-to-all bandwidth v[d] against real group runs. The microbenchmark measures
// the network with idle devices; in a training step the same exchanges share the CPU with compute and every rank
// waits for the slowest member at each of the 4·L exchanges (on oversubscribed cores this dominates). Per degree
// and placement, v[d] is refitted so the cost model reproduces the validation's measured group times: the time the
// model cannot attribute to compute and β1 is treated as communication, and 1/v[d] is its weighted least-squares
// slope against the communicated volume (relative error, through the origin). v[d] never rises above the
// microbenchmark's value (what it adds are costs the microbenchmark cannot see: a real run is never faster than the
// network allows; faster-than-predicted groups mean the compute part was overestimated, or noise) nor falls below a
// twentieth of it, and the microbenchmark's ratios between links are kept; both values are kept in the profile. Degree-1 runs of
// the same validation scale the compute part (the load of a shared machine varies); when they are off by more than
// 20%, calibration is skipped with a warning.

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
    let num = 0, den = 0;
    for (const p of mine) {
      const comm = cost.commMs(p.length, d, spans);
      const target = p.measuredMs - (predicted(p) - comm) * speedFactor;
      const a = (commMbPerToken * p.length) / d;
      const w = 1 / (p.measuredMs * p.measuredMs);
      num += w * a * target;
      den += w * a * a;
    }
    const old = cost.bandwidth(d, spans);
    const inv = den > 0 ? num / den : 0;
    const v = inv > 0 ? Math.min(old, Math.max(old / 20, 1 / inv)) : old;
    out.push({
      degree: d,
      spans,
      microbenchGbps: old,
      calibratedGbps: Number(v.toPrecision(4)),
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
