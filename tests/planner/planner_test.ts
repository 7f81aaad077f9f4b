// planStep end to end: valid plans on any cluster shape, bounds below the exhaustive optimum, the planner close
// to it, clear errors for impossible batches, determinism, and the worker thread.

import { assert, assertClose, assertEquals, assertThrows } from "../assert.ts";
import { exhaustiveMicroBatch, exhaustiveStep, randomLengths, toyContext } from "./fixtures.ts";
import { planStep } from "../../orchestrator/planner/plan_step.ts";
import { planViolations } from "../../orchestrator/planner/validate_plan.ts";
import { planMicroBatch } from "../../orchestrator/planner/microbatch_heuristic.ts";
import { PlannerWorker } from "../../orchestrator/planner/worker.ts";
import type { Strategy } from "../../orchestrator/planner/plan_types.ts";

const SHAPES = [[8], [4, 4], [2, 2, 2], [8, 4], [4, 8], [1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2, 2]];

Deno.test("plans of every strategy are valid on uniform and uneven clusters", async () => {
  let checked = 0;
  for (const [i, nodes] of SHAPES.entries()) {
    const { ctx, topo, cost } = toyContext(nodes, { milp: "none", overflow: "drop" });
    for (let seed = 0; seed < 4; seed++) {
      const lengths = randomLengths(100 * i + seed, 6 + 7 * seed, 3000);
      for (const strategy of ["flexsp", "static", "batchada"] as Strategy[]) {
        const plan = await planStep(lengths, topo, cost, { ...ctx.options, strategy });
        const errors = planViolations(plan, ctx, lengths);
        assert(errors.length === 0, `${strategy} on ${nodes}: ${errors.join("; ")}`);
        checked++;
      }
    }
  }
  assert(checked === SHAPES.length * 4 * 3);
});

Deno.test("groups that fit in a node stay inside one node on uneven clusters", async () => {
  const { ctx, topo, cost } = toyContext([2, 2, 2], { milp: "none" });
  const lengths = [1500, 1400, 300, 200, 100, 90];
  const plan = await planStep(lengths, topo, cost, ctx.options);
  for (const mb of plan.microBatches) {
    for (const g of mb.groups) if (g.degree <= 2) assert(!g.spansNodes, `degree-2 group ${g.ranks} spans nodes`);
  }
});

Deno.test("lower bound <= exhaustive optimum <= planner, and the planner is within 3% of it", async () => {
  let worst = 0;
  for (const nodes of [[4], [2, 2], [4, 4]]) {
    const { ctx, topo, cost } = toyContext(nodes, { milp: "none", deterministic: true });
    for (let seed = 1; seed <= 6; seed++) {
      const lengths = randomLengths(seed * 7 + nodes.length, 5, 3500);
      const opt = exhaustiveStep(ctx, lengths);
      const plan = await planStep(lengths, topo, cost, ctx.options);
      assert(plan.lowerBoundMs <= opt * (1 + 1e-9), `bound ${plan.lowerBoundMs} above optimum ${opt}`);
      assert(plan.predictedMs >= opt * (1 - 1e-9), `plan ${plan.predictedMs} beats the optimum ${opt}?`);
      worst = Math.max(worst, plan.predictedMs / opt - 1);
    }
  }
  assert(worst <= 0.03, `worst gap to the optimum ${(worst * 100).toFixed(2)}%`);
});

Deno.test("a single micro-batch: the combinatorial planner matches exhaustive search closely", () => {
  let worst = 0;
  for (const nodes of [[8], [4, 4], [2, 2, 2, 2]]) {
    const { ctx } = toyContext(nodes);
    for (let seed = 1; seed <= 8; seed++) {
      const lengths = randomLengths(seed * 13, 6, 2500);
      const seqs = lengths.map((_, k) => k);
      const opt = exhaustiveMicroBatch(ctx, lengths, seqs);
      const mb = planMicroBatch(ctx, lengths, seqs)!;
      assert(mb.predictedMs >= opt * (1 - 1e-9));
      worst = Math.max(worst, mb.predictedMs / opt - 1);
    }
  }
  assert(worst <= 0.05, `worst gap ${(worst * 100).toFixed(2)}%`);
});

Deno.test("flexsp is never slower than static SP or BatchAda", async () => {
  for (const nodes of [[8], [4, 4], [8, 8]]) {
    const { ctx, topo, cost } = toyContext(nodes, { milp: "none" });
    for (let seed = 0; seed < 5; seed++) {
      const lengths = randomLengths(seed + 50, 40, 4000);
      const f = await planStep(lengths, topo, cost, ctx.options);
      for (const strategy of ["static", "batchada"] as Strategy[]) {
        const b = await planStep(lengths, topo, cost, { ...ctx.options, strategy });
        assert(f.predictedMs <= b.predictedMs * (1 + 1e-9), `${strategy} ${b.predictedMs} < flexsp ${f.predictedMs}`);
      }
    }
  }
});

Deno.test("a sequence longer than the cluster holds is a clear error, or dropped with overflow: drop", async () => {
  const { ctx, topo, cost } = toyContext([4], { milp: "none" });
  const lengths = [500, 4100, 300];
  const msg = await assertThrows(() => planStep(lengths, topo, cost, ctx.options), "sequence 1 has 4100 tokens");
  assert(msg.includes("holds 4000") && msg.includes("planner.overflow: drop"), msg);
  const plan = await planStep(lengths, topo, cost, { ...ctx.options, overflow: "drop" });
  assertEquals(plan.dropped, [1]);
  assertEquals(planViolations(plan, ctx, lengths), []);
});

Deno.test("deterministic mode gives the same plan for the same input", async () => {
  const { ctx, topo, cost } = toyContext([4, 4], { milp: "none", deterministic: true });
  const lengths = randomLengths(99, 60, 4000);
  const a = await planStep(lengths, topo, cost, ctx.options);
  const b = await planStep(lengths, topo, cost, ctx.options);
  assertEquals({ ...a, solveMs: 0 }, { ...b, solveMs: 0 });
});

Deno.test("a slow node gets less work: groups there are timed at its speed", async () => {
  const { ctx, topo, cost } = toyContext([4, 4], { milp: "none", deterministic: true });
  topo.speed = topo.speed.map((_, r) => (r < 4 ? 0.5 : 1));
  const lengths = randomLengths(5, 30, 800);
  const plan = await planStep(lengths, topo, cost, ctx.options);
  const { ctx: ctx2 } = toyContext([4, 4], { milp: "none" });
  const slowCtx = Object.assign(Object.create(Object.getPrototypeOf(ctx2)), ctx2, { topo });
  assertEquals(planViolations(plan, slowCtx, lengths), []);
  let slowTokens = 0;
  let fastTokens = 0;
  for (const mb of plan.microBatches) {
    for (const g of mb.groups) {
      const t = g.lengths.reduce((a, b) => a + b, 0);
      if (g.ranks[0] < 4) slowTokens += t;
      else fastTokens += t;
    }
  }
  assert(slowTokens < fastTokens * 0.75, `slow node got ${slowTokens} tokens vs ${fastTokens}`);
});

Deno.test("the planner worker thread returns the same plan as a direct call", async () => {
  const { ctx, topo, cost } = toyContext([4, 4], { milp: "none", deterministic: true });
  const lengths = randomLengths(3, 40, 3000);
  const direct = await planStep(lengths, topo, cost, ctx.options);
  const worker = new PlannerWorker({ topology: topo, cost, options: ctx.options });
  try {
    const viaWorker = await worker.plan(lengths);
    assertEquals({ ...viaWorker, solveMs: 0 }, { ...direct, solveMs: 0 });
    await assertThrows(() => worker.plan([10, -1]), "length must be a positive integer");
  } finally {
    worker.close();
  }
});

Deno.test("an empty batch plans to nothing", async () => {
  const { ctx, topo, cost } = toyContext([4]);
  const plan = await planStep([], topo, cost, { ...ctx.options, milp: "none" });
  assertEquals(plan.microBatches, []);
  assertClose(plan.predictedMs, 0);
});
