// The profiled fixed costs the planner plans with: per micro-batch (every rank), per group by degree (on top of
// β1) and per step. Absent, they are 0 and plans are what they were; present, they are in every group's, plan's
// and bound's time, and they change the plan where they should (a costly degree is avoided).

import { assert, assertEquals } from "../assert.ts";
import { randomLengths, TOY_CONSTANTS, TOY_MODEL, toyContext } from "./fixtures.ts";
import { CostModel } from "../../orchestrator/planner/cost_model.ts";
import { DEFAULT_PLANNER_OPTIONS } from "../../orchestrator/planner/context.ts";
import { planStep } from "../../orchestrator/planner/plan_step.ts";
import { planViolations } from "../../orchestrator/planner/validate_plan.ts";
import { PlanContext } from "../../orchestrator/planner/context.ts";
import type { CostConstants } from "../../orchestrator/config/types.ts";
import type { Strategy } from "../../orchestrator/planner/plan_types.ts";

/** The toy context's cost model with extra constants (same memory budget). */
function withTerms(extra: Partial<CostConstants>, nodes = [4]) {
  const { cost: base, topo } = toyContext(nodes);
  const cost = new CostModel({ ...TOY_CONSTANTS, ...extra }, TOY_MODEL, base.options);
  const ctx = new PlanContext(cost, topo, TOY_MODEL.heads, { ...DEFAULT_PLANNER_OPTIONS, milp: "none" });
  return { cost, topo, ctx };
}

Deno.test("fixed costs default to 0: the cost model and plans are unchanged without them", async () => {
  const { cost: a, topo } = toyContext([4, 4]);
  const { cost: b } = withTerms({ microBatchMs: 0, groupMs: {}, stepMs: 0 }, [4, 4]);
  assertEquals(a.groupMs([300, 200], 4, false), b.groupMs([300, 200], 4, false));
  assertEquals(a.groupFixedMs(8), TOY_CONSTANTS.beta1);
  const lengths = randomLengths(5, 30, 3000);
  const opts = { ...DEFAULT_PLANNER_OPTIONS, milp: "none" as const, deterministic: true };
  const pa = await planStep(lengths, topo, a, opts);
  const pb = await planStep(lengths, topo, b, opts);
  assertEquals(pa.predictedMs, pb.predictedMs);
  assertEquals(pa.lowerBoundMs, pb.lowerBoundMs);
});

Deno.test("per-micro-batch, per-group and per-step costs are in group, plan and bound times", async () => {
  const { cost, topo, ctx } = withTerms({ microBatchMs: 5, groupMs: { 2: 7, 4: 11 }, stepMs: 40 });
  assertEquals(cost.groupFixedMs(1), TOY_CONSTANTS.beta1 + 5);
  assertEquals(cost.groupFixedMs(4, 2), TOY_CONSTANTS.beta1 / 2 + 5 + 11);
  // A degree not profiled takes the nearest one's cost; the bound uses the least of them.
  assertEquals(cost.groupExtraMs(8), 11);
  assertEquals(cost.minGroupFixedMs(), TOY_CONSTANTS.beta1 + 5);
  assertEquals(cost.groupMs([100], 2, false), TOY_CONSTANTS.beta1 + 5 + 7 + cost.seqMs(100, 2, false));
  const lengths = randomLengths(11, 20, 3500);
  const runs: [Strategy, "none" | "highs"][] = [["flexsp", "none"], ["flexsp", "highs"], ["static", "none"], [
    "batchada",
    "none",
  ]];
  for (const [strategy, milp] of runs) {
    const plan = await planStep(lengths, topo, cost, { ...ctx.options, strategy, milp, deterministic: true });
    assertEquals(planViolations(plan, ctx, lengths), [], strategy);
    const mbs = plan.microBatches.reduce((t, mb) => t + mb.predictedMs, 0);
    assert(Math.abs(plan.predictedMs - (mbs + 40)) < 1e-9, `${strategy}: ${plan.predictedMs} vs ${mbs} + 40`);
    assert(plan.lowerBoundMs >= 40 && plan.lowerBoundMs <= plan.predictedMs, `${strategy} bound`);
  }
});

Deno.test("a costly degree is avoided: per-group costs change the plan", async () => {
  // Short sequences: without a per-group cost the planner may split them; a large fixed cost at degrees 2 and 4
  // makes data parallelism (degree 1) the plan.
  const lengths = [900, 850, 800, 700, 600, 500, 400, 300];
  const free = withTerms({});
  const costly = withTerms({ groupMs: { 2: 500, 4: 500 } });
  const a = await planStep(lengths, free.topo, free.cost, free.ctx.options);
  const b = await planStep(lengths, costly.topo, costly.cost, costly.ctx.options);
  assertEquals(planViolations(b, costly.ctx, lengths), []);
  const degrees = (p: typeof a) =>
    p.microBatches.flatMap((mb) => mb.groups.filter((g) => g.sequences.length).map((g) => g.degree));
  assert(degrees(a).some((d) => d > 1), `without the cost the toy plan uses degree > 1: ${degrees(a)}`);
  assert(degrees(b).every((d) => d === 1), `with it, degree 1 only: ${degrees(b)}`);
});
