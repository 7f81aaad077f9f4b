// The real-step terms the profile fits to its validation: the degree-1 compute scale and per-micro-batch cost, and
// per degree the all-to-all bandwidth and per-group fixed cost. On a machine whose real steps run slower than the
// compute grid measured (executors sharing cores, a loaded machine) and whose wider groups pay fixed costs, the
// fitted model reproduces the measured times of every degree, so a wider group's speedup is the measured one.

import { assert, assertClose, assertEquals } from "../assert.ts";
import { fitStepTerms } from "../../orchestrator/profile/fixed_costs.ts";
import { fitLine } from "../../orchestrator/profile/calibrate.ts";
import { buildCostModel } from "../../orchestrator/planner/cost_model.ts";
import { uniformTopology } from "../../orchestrator/planner/topology.ts";
import { storedToConstants } from "../../orchestrator/config/cost_constants.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import type { StoredConstants } from "../../orchestrator/config/profile_doc.ts";
import type { MeasuredPoint } from "../../orchestrator/profile/step_runs.ts";

const SHAPE = { ...MODEL_PRESETS["gpt-tiny"], checkpointing: "none" as const };
const TOPO = uniformTopology(1, 4);
const setupOf = (c: StoredConstants) => ({
  topology: TOPO,
  cost: buildCostModel(storedToConstants(c), SHAPE, { memoryBudgetGb: 1, zeroStage: 0, devices: 4 }),
});
const COMM_MB_PER_TOKEN = (8 * SHAPE.layers * SHAPE.hidden * 2) / 2 ** 20;

/** What the compute grid and the microbenchmark measured: compute at 1/1.4 of the real steps', a fast network. */
const GRID: StoredConstants = {
  alpha1: 4e-4 / 1.4,
  alpha2: 0.3 / 1.4,
  beta1: 5 / 1.4,
  act_mb_per_token: 0.01,
  bandwidth_gbps: { intra: { "2": 0.2, "4": 0.2 }, inter: {} },
};

/** Real steps: 1.4x the grid's compute, 20 ms per micro-batch, per-group costs and slower exchanges per degree. */
function realMs(d: number, len: number): number {
  const fixed = { 1: 0, 2: 6, 4: 15 }[d]!;
  const v = { 1: Infinity, 2: 0.05, 4: 0.02 }[d]!;
  return (4e-4 * len * len + 0.3 * len) / d + 5 + 20 + fixed + (COMM_MB_PER_TOKEN * len) / d / v;
}

const POINTS: MeasuredPoint[] = [1, 2, 4].flatMap((d) =>
  [128, 256, 512, 1024].map((length) => ({
    degree: d,
    spans: false,
    length,
    measuredMs: realMs(d, length),
    starts: Array.from({ length: 4 / d }, (_, g) => g * d),
  }))
);

Deno.test("fitStepTerms: recovers the compute scale and the fixed costs per micro-batch and group", () => {
  const fit = fitStepTerms(GRID, POINTS, setupOf, SHAPE);
  assertClose(fit.degreeOne.computeScale, 1.4, 1e-3);
  assertClose(fit.degreeOne.microBatchMs, 20, 1e-3);
  assertClose(fit.fitted.alpha1, 4e-4, 1e-3);
  assertClose(fit.fitted.micro_batch_ms!, 20, 1e-3);
  assertClose(fit.fitted.group_ms!["2"], 6, 1e-2);
  assertClose(fit.fitted.group_ms!["4"], 15, 1e-2);
  assertClose(fit.fitted.bandwidth_gbps.intra["4"], 0.02, 1e-2);
  assertEquals(fit.skipped, undefined);
  assert(fit.better, "the fitted terms predict the validation better");
  assert(fit.after.maxRelErr < 0.01, `fitted max error ${fit.after.maxRelErr}`);
  assert(fit.before.medianRelErr > 0.25, `grid constants' median error ${fit.before.medianRelErr}`);
});

Deno.test("fitStepTerms: a wider group's speedup is the measured one, not the grid's compute over the degree", () => {
  const fit = fitStepTerms(GRID, POINTS, setupOf, SHAPE);
  const grid = setupOf(GRID).cost, fitted = setupOf(fit.fitted).cost;
  for (const len of [256, 1024]) {
    const measured = realMs(1, len) / realMs(4, len);
    const before = grid.groupMs([len], 1, false) / grid.groupMs([len], 4, false);
    const after = fitted.groupMs([len], 1, false) / fitted.groupMs([len], 4, false);
    assertClose(after, measured, 0.02);
    assert(Math.abs(before / measured - 1) > 0.1, `grid speedup ${before} vs measured ${measured} at ${len}`);
  }
});

Deno.test("fitLine: intercept and slope, through the origin with one length, never negative", () => {
  const rows = [1, 2, 4].map((a) => ({ a, target: 3 + 2 * a, w: 1 }));
  const f = fitLine(rows);
  assertClose(f.inv, 2, 1e-9);
  assertClose(f.fixed, 3, 1e-9);
  assertEquals(fitLine([{ a: 2, target: 6, w: 1 }]), { inv: 3, fixed: 0 });
  // A falling line is no bandwidth: all of it fixed.
  const down = fitLine([1, 2].map((a) => ({ a, target: 10 - a, w: 1 })));
  assertEquals(down.inv, 0);
  assertClose(down.fixed, 8.5, 1e-9);
});

Deno.test("fitStepTerms: a validation run under a load change (degree 1 at 2x the grid) fits nothing from it", () => {
  // Measured at twice the real time everywhere: the load changed, not the executor's path.
  const loaded = POINTS.map((p) => ({ ...p, measuredMs: 2 * realMs(p.degree, p.length) }));
  const grid = { ...GRID, alpha1: 4e-4, alpha2: 0.3, beta1: 5 };
  const fit = fitStepTerms(grid, loaded, setupOf, SHAPE);
  assert(fit.degreeOne.computeScale > 1.5, `measured scale ${fit.degreeOne.computeScale}`);
  assert(fit.skipped!.includes("load changed"), fit.skipped);
  assertEquals(fit.fitted.alpha1, grid.alpha1);
  assertEquals(fit.fitted.micro_batch_ms, undefined);
  assertEquals(fit.calibration, []);
});
