// The fixed costs of real steps that the compute grid cannot see, fitted from the profile's validation steps at
// degree 1 (no all-to-all there): `measured ≈ computeScale·(β1 + compute) + microBatchMs`. The grid times one
// packed forward and backward on each rank; a training micro-batch adds what every rank pays whatever its
// sequences (gradient accumulation, ZeRO-3 gathers and reduce-scatters, launch and synchronisation): that is the
// intercept. The slope puts the grid's compute on the real steps' scale (other work on a shared machine between
// the two phases, or a real step's path running slower or faster than the benchmark's). `fitStepTerms` then fits
// the all-to-all terms per degree on top (calibrate.ts): with every term fitted to real steps of every degree, run
// the way steps run (all groups at once, so executors sharing cores share them as in training), the model's
// speedup of a wider group is the one measured, not the grid's compute divided by the degree.

import { blockSpeed, type Topology } from "../planner/topology.ts";
import type { CostModel } from "../planner/cost_model.ts";
import { type MeasuredPoint, predictValidation } from "./step_runs.ts";
import { median, nnls } from "./fit.ts";
import { calibrateBandwidth, type Calibration } from "./calibrate.ts";
import type { StoredConstants, ValidationSection } from "../config/profile_doc.ts";

/** What the degree-1 validation says about real steps. */
export interface DegreeOneFit {
  /** Real steps' compute over the grid fit's (1: as fitted). */
  computeScale: number;
  /** Fixed ms every micro-batch pays on every rank. */
  microBatchMs: number;
}

/**
 * Fits {@link DegreeOneFit} by non-negative least squares on relative error over the degree-1 points. With one
 * length the two cannot be told apart: the scale alone (no fixed cost). No degree-1 point: scale 1, no fixed cost.
 */
export function fitDegreeOne(points: readonly MeasuredPoint[], topo: Topology, cost: CostModel): DegreeOneFit {
  const solo = points.filter((p) => p.degree === 1 && p.measuredMs > 0);
  if (solo.length === 0) return { computeScale: 1, microBatchMs: 0 };
  // β1 + compute (fixed costs the model already has are taken out: they are what is fitted).
  const extra = cost.microBatchMs + cost.groupExtraMs(1);
  const model = solo.map((p) =>
    median(p.starts.map((s) => cost.groupMs([p.length], 1, false, blockSpeed(topo, s, 1)))) - extra
  );
  const y = solo.map((p) => p.measuredMs);
  if (new Set(solo.map((p) => p.length)).size < 2) {
    return { computeScale: median(y.map((m, i) => m / model[i])), microBatchMs: 0 };
  }
  const fit = nnls(model.map((m) => [m, 1]), y, { relative: true });
  const [scale, fixed] = fit.coef;
  if (!(scale > 0)) return { computeScale: median(y.map((m, i) => m / model[i])), microBatchMs: 0 };
  return { computeScale: scale, microBatchMs: fixed };
}

const sig = (x: number) => Number(x.toPrecision(5));

/** The degree-1 compute scale beyond which (this or its inverse) the validation is taken as a load change. */
const MIN_SCALE = 2 / 3;

/** What {@link fitStepTerms} fitted, and how the validation is predicted with and without it. */
export interface StepTermsFit {
  /** The constants with every fitted term (the caller keeps them when `better`). */
  fitted: StoredConstants;
  degreeOne: DegreeOneFit;
  calibration: Calibration[];
  skipped?: string;
  before: ValidationSection;
  after: ValidationSection;
  /**
   * Whether the fitted terms predict the validation's group runs better (median + a quarter of the max error).
   * `degreeOne` is what the degree-1 runs showed; with `skipped` it was not applied.
   */
  better: boolean;
}

/**
 * Fits the real-step terms to the validation's measured group runs: the degree-1 compute scale and per-micro-batch
 * cost (this file), then per degree v[d] and the per-group fixed cost (calibrate.ts) on top of them. `setupOf` builds
 * the planner's cost model and topology from stored constants (the profile's config).
 */
export function fitStepTerms(
  constants: StoredConstants,
  measured: readonly MeasuredPoint[],
  setupOf: (c: StoredConstants) => { topology: Topology; cost: CostModel },
  shape: { layers: number; hidden: number },
): StepTermsFit {
  const base = setupOf(constants);
  const before = predictValidation([...measured], base.topology, base.cost);
  const fitted: StoredConstants = structuredClone(constants);
  const measuredOne = fitDegreeOne(measured, base.topology, base.cost);
  // Real steps off the grid by more than half (or under two thirds) mean the machine's load changed between the
  // phases, not a path of its own: nothing is fitted from the degree-1 runs then (the calibration below skips too).
  const loaded = !(measuredOne.computeScale >= MIN_SCALE && measuredOne.computeScale <= 1 / MIN_SCALE);
  const degreeOne = loaded ? { computeScale: 1, microBatchMs: 0 } : measuredOne;
  fitted.alpha1 = sig(fitted.alpha1 * degreeOne.computeScale);
  fitted.alpha2 = sig(fitted.alpha2 * degreeOne.computeScale);
  fitted.beta1 = sig(fitted.beta1 * degreeOne.computeScale);
  if (degreeOne.microBatchMs > 0) fitted.micro_batch_ms = sig(degreeOne.microBatchMs);
  else delete fitted.micro_batch_ms;
  const scaled = setupOf(fitted);
  const cal = measured.some((p) => p.degree > 1)
    ? calibrateBandwidth([...measured], scaled.topology, scaled.cost, shape)
    : { calibrations: [] };
  const groupMs: Record<string, number> = {};
  for (const c of cal.calibrations) {
    (c.spans ? fitted.bandwidth_gbps.inter : fitted.bandwidth_gbps.intra)[String(c.degree)] = c.calibratedGbps;
    const key = String(c.degree);
    if ((c.groupMs ?? 0) > 0) groupMs[key] = Math.max(groupMs[key] ?? 0, c.groupMs!);
  }
  if (Object.keys(groupMs).length) fitted.group_ms = groupMs;
  else delete fitted.group_ms;
  const final = setupOf(fitted);
  const after = predictValidation([...measured], final.topology, final.cost);
  const score = (v: ValidationSection) => v.medianRelErr + 0.25 * v.maxRelErr;
  return {
    fitted,
    degreeOne: { computeScale: sig(measuredOne.computeScale), microBatchMs: sig(measuredOne.microBatchMs) },
    calibration: cal.calibrations,
    skipped: loaded
      ? `the validation's degree-1 steps ran at ${
        sig(measuredOne.computeScale)
      }x the compute grid's fit (the machine's load changed between the phases): compute scale and fixed costs not ` +
        `fitted; re-run on a quiet cluster`
      : "skipped" in cal
      ? cal.skipped as string | undefined
      : undefined,
    before,
    after,
    better: score(after) < score(before) - 0.01,
  };
}
