// planner.time_limit_ms is a hard deadline for the whole solve, the worker round trip included: the worker
// stops improving in time and the main thread takes the best complete plan sent so far if the final one is
// late, so `solveMs` (measured by the caller) never exceeds the limit. Plans found on the way are valid.

import { assert, assertEquals } from "../assert.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { plannerSetup } from "../../orchestrator/planner/from_config.ts";
import { PlanContext } from "../../orchestrator/planner/context.ts";
import { PlannerWorker } from "../../orchestrator/planner/worker.ts";
import { planStep } from "../../orchestrator/planner/plan_step.ts";
import { planViolations } from "../../orchestrator/planner/validate_plan.ts";
import { sampleLengths } from "../../orchestrator/data/length_distributions.ts";
import { Rng } from "../../orchestrator/data/rng.ts";
import type { Plan } from "../../orchestrator/planner/plan_types.ts";

async function paperSetup(model: string, limitMs: number) {
  const config = await loadConfig("configs/paper-a100-64.yaml", [
    `model.preset=${model}`,
    `planner.time_limit_ms=${limitMs}`,
  ]);
  const setup = plannerSetup(config, config.profile.constants!);
  const ctx = new PlanContext(setup.cost, setup.topology, config.model.heads, setup.options);
  return { setup, ctx };
}

/** Wall time of the first complete plan (no improvement phases): the least a limit must leave. */
async function firstPlanMs(lengths: number[], model: string): Promise<number> {
  const { setup } = await paperSetup(model, 1);
  const t0 = performance.now();
  await planStep(lengths, setup.topology, setup.cost, { ...setup.options, milp: "none", timeLimitMs: 1 });
  return performance.now() - t0;
}

Deno.test("solveMs through the worker never exceeds planner.time_limit_ms, one or several requests at once", async () => {
  const rng = new Rng(7);
  const batches = [sampleLengths("commoncrawl", 512, 196608, rng), sampleLengths("wikipedia", 512, 196608, rng)];
  // A limit the first complete plan meets with room to spare on a loaded machine; the MILP could use more.
  const first = Math.max(...await Promise.all(batches.map((b) => firstPlanMs(b, "gpt-30b"))));
  const limit = Math.max(250, Math.ceil(4 * first));
  const { setup, ctx } = await paperSetup("gpt-30b", limit);
  const worker = new PlannerWorker(setup);
  try {
    const plans: [number[], Plan][] = [];
    for (const b of batches) plans.push([b, await worker.plan(b)]);
    // Three requests at once: each one's budget starts when the worker takes it, not behind the others.
    const together = await Promise.all(batches.concat([batches[0]]).map((b) => worker.plan(b)));
    together.forEach((p, i) => plans.push([i === 1 ? batches[1] : batches[0], p]));
    for (const [lengths, plan] of plans) {
      assert(plan.solveMs <= limit, `solveMs ${plan.solveMs} ms over the ${limit} ms limit`);
      assert(plan.solveMs > 0, "solveMs is the call's wall time");
      assertEquals(planViolations(plan, ctx, lengths), []);
    }
  } finally {
    worker.close();
  }
});

Deno.test("incumbents sent before the final plan are valid and never better than it", async () => {
  const { setup, ctx } = await paperSetup("gpt-7b", 600);
  const lengths = sampleLengths("commoncrawl", 512, 196608, new Rng(3));
  const seen: Plan[] = [];
  const plan = await planStep(lengths, setup.topology, setup.cost, {
    ...setup.options,
    onIncumbent: (p) => seen.push(p),
  });
  assert(seen.length >= 1, "the combinatorial plan is offered before the improvement phases");
  for (const p of seen) {
    assertEquals(planViolations(p, ctx, lengths), []);
    assert(plan.predictedMs <= p.predictedMs * (1 + 1e-12), `final ${plan.predictedMs} vs incumbent ${p.predictedMs}`);
  }
});

Deno.test("the budget counts from startedAt: a request that waited already has less time", async () => {
  const { setup } = await paperSetup("gpt-7b", 400);
  const lengths = sampleLengths("wikipedia", 512, 196608, new Rng(5));
  const started = performance.timeOrigin + performance.now() - 300;
  const plan = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, startedAt: started });
  assert(plan.solveMs >= 300, `solveMs ${plan.solveMs} counts the 300 ms already spent`);
  // Past 90% of the budget no improvement phase starts: the MILP is skipped or stopped at once.
  assert(plan.details.milpMs === undefined || Number(plan.details.milpMs) < 100, JSON.stringify(plan.details));
});
