// The baselines are the systems they stand for: static SP (DeepSpeed-Ulysses, Megatron CP; SP=1 is plain data
// parallelism) and BatchAda give every data-parallel group of their degree its share of every micro-batch,
// balanced by cost, within the memory of a group.

import { assert, assertEquals } from "../assert.ts";
import { randomLengths, toyContext } from "./fixtures.ts";
import { planStep } from "../../orchestrator/planner/plan_step.ts";
import { planViolations } from "../../orchestrator/planner/validate_plan.ts";
import type { Plan } from "../../orchestrator/planner/plan_types.ts";

/** Sequences per group of each micro-batch, groups in rank order. */
const shares = (p: Plan) => p.microBatches.map((mb) => mb.groups.map((g) => g.sequences.length));

Deno.test("static SP=1 on 4 ranks is data parallelism: 8 equal sequences go 2-2-2-2", async () => {
  const { ctx, topo, cost } = toyContext([4], { milp: "none", staticDegree: 1 });
  const lengths = Array(8).fill(100);
  const plan = await planStep(lengths, topo, cost, { ...ctx.options, strategy: "static" });
  assertEquals(plan.degree, 1);
  assertEquals(shares(plan), [[2, 2, 2, 2]]);
  assertEquals(planViolations(plan, ctx, lengths), []);
  // One group's time: beta1 plus two sequences; the step is one micro-batch of it.
  const one = cost.groupMs([100, 100], 1, false);
  assert(Math.abs(plan.predictedMs - one) < 1e-9, `step ${plan.predictedMs} ms, one group of two ${one} ms`);
});

Deno.test("BatchAda on short sequences picks SP=1 and spreads them 2-2-2-2", async () => {
  const { ctx, topo, cost } = toyContext([4], { milp: "none" });
  const plan = await planStep(Array(8).fill(100), topo, cost, { ...ctx.options, strategy: "batchada" });
  assertEquals(plan.degree, 1);
  assertEquals(shares(plan), [[2, 2, 2, 2]]);
});

Deno.test("static SP balances every micro-batch over its groups by cost, within a group's memory", async () => {
  // 8 devices of 1000 tokens, static degree 2: 4 groups of 1800 tokens (90%) per micro-batch.
  const { ctx, topo, cost } = toyContext([8], { milp: "none", staticDegree: 2 });
  for (let seed = 0; seed < 6; seed++) {
    const lengths = randomLengths(300 + seed, 40, 1500);
    const plan = await planStep(lengths, topo, cost, { ...ctx.options, strategy: "static" });
    assertEquals(planViolations(plan, ctx, lengths), []);
    const tokens = lengths.reduce((a, b) => a + b, 0);
    // As few micro-batches as memory allows with every group used (the packing's count over 4 groups)...
    assert(plan.microBatches.length <= Math.ceil(tokens / (4 * 0.9 * 2000)) + 1, `${plan.microBatches.length} mbs`);
    for (const mb of plan.microBatches) {
      const loads = mb.groups.map((g) => g.predictedMs);
      // ...each with every group busy, and the busiest group at most one sequence above the least busy.
      assert(loads.every((l) => l > 0), `idle group in ${loads}`);
      const longest = Math.max(...mb.groups.flatMap((g) => g.lengths.map((s) => cost.seqMs(s, 2, false))));
      assert(Math.max(...loads) - Math.min(...loads) <= longest + cost.beta1 + 1e-9, `unbalanced ${loads}`);
    }
  }
});

Deno.test("static SP at the paper's degree (one group per micro-batch) keeps the packing's micro-batch count", async () => {
  // One group: every micro-batch is one bin of the best-fit-decreasing packing, as before.
  const { ctx, topo, cost } = toyContext([4], { milp: "none", staticDegree: 4 });
  const lengths = randomLengths(7, 30, 3000);
  const plan = await planStep(lengths, topo, cost, { ...ctx.options, strategy: "static" });
  const tokens = lengths.reduce((a, b) => a + b, 0);
  assert(plan.microBatches.length >= Math.ceil(tokens / 3600), "fewer micro-batches than memory allows");
  const work = lengths.reduce((t, s) => t + cost.seqMs(s, 4, false), 0);
  const expect = work + plan.microBatches.length * cost.beta1;
  assert(Math.abs(plan.predictedMs - expect) < 1e-6, `${plan.predictedMs} vs ${expect}`);
});
