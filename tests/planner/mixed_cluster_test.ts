// Mixed GPU generations in one cluster: per-node memory budgets and speeds. Plans stay valid with every group
// inside its smallest device's capacity, the planner stays within 3% of an exhaustive optimum on tiny mixed
// clusters with the bound below it, long sequences use the large-memory devices instead of wider groups, and
// the static baseline's degree holds the whole context on every group.

import { assert, assertEquals } from "../assert.ts";
import { exhaustiveStep, randomLengths, TOY_CONSTANTS, TOY_MODEL, toyCost } from "./fixtures.ts";
import { DEFAULT_PLANNER_OPTIONS, PlanContext, type PlannerOptions } from "../../orchestrator/planner/context.ts";
import { mixedTopology, type Topology } from "../../orchestrator/planner/topology.ts";
import { planStep } from "../../orchestrator/planner/plan_step.ts";
import { planViolations } from "../../orchestrator/planner/validate_plan.ts";
import { groupDeviceType } from "../../orchestrator/planner/format_plan.ts";
import type { CostModel } from "../../orchestrator/planner/cost_model.ts";
import type { Plan, Strategy } from "../../orchestrator/planner/plan_types.ts";

/** A node kind of a toy mixed cluster: devices per node, speed and tokens of activations per device. */
interface Kind {
  nodes: number;
  devicesPerNode: number;
  speed: number;
  tokens: number;
  type: string;
}

/** Budget (GB) under which a toy device holds `tokens` tokens of activations beside the model states. */
function budgetFor(cost: CostModel, tokens: number): number {
  return (cost.modelStateMb + tokens * TOY_CONSTANTS.actMbPerToken + 1e-6) / 1024;
}

function mixedContext(kinds: Kind[], options: Partial<PlannerOptions> = {}) {
  const devices = kinds.reduce((s, k) => s + k.nodes * k.devicesPerNode, 0);
  // The cost model's own budget is the small one; the large devices carry theirs per node.
  const cost = toyCost(devices, Math.min(...kinds.map((k) => k.tokens)));
  const topo: Topology = mixedTopology(kinds.map((k) => ({ ...k, budgetGb: budgetFor(cost, k.tokens) })));
  const ctx = new PlanContext(cost, topo, TOY_MODEL.heads, { ...DEFAULT_PLANNER_OPTIONS, ...options });
  return { cost, topo, ctx };
}

const A = (nodes: number, per: number): Kind => ({ nodes, devicesPerNode: per, speed: 1, tokens: 1000, type: "A" });
const H = (nodes: number, per: number): Kind => ({ nodes, devicesPerNode: per, speed: 2, tokens: 2500, type: "H" });

/** Tokens each rank holds, from the kinds alone (independent of the planner's own capacity table). */
function rankTokens(kinds: Kind[]): number[] {
  return kinds.flatMap((k) => new Array(k.nodes * k.devicesPerNode).fill(k.tokens));
}

function assertWithinSmallestDevice(plan: Plan, caps: number[], where: string) {
  for (const mb of plan.microBatches) {
    for (const g of mb.groups) {
      const tokens = g.lengths.reduce((a, b) => a + b, 0);
      const smallest = Math.min(...g.ranks.map((r) => caps[r]));
      assert(tokens <= g.degree * smallest, `${where}: ${tokens} tokens on d${g.degree} ${g.ranks} (${smallest}/dev)`);
    }
  }
}

Deno.test("per-node budgets: each device's capacity is its own, and no group exceeds its smallest device's", async () => {
  const shapes: Kind[][] = [[A(2, 4), H(2, 4)], [A(3, 2), H(1, 2)], [H(1, 4), A(1, 4)], [A(1, 4), H(1, 2), A(1, 2)]];
  let checked = 0;
  for (const [i, kinds] of shapes.entries()) {
    const { ctx, topo, cost } = mixedContext(kinds, { milp: "none", overflow: "drop" });
    assertEquals(ctx.capacity, rankTokens(kinds), `capacities of ${kinds.map((k) => k.type)}`);
    for (let seed = 0; seed < 4; seed++) {
      const lengths = randomLengths(31 * i + seed, 8 + 9 * seed, 9000);
      for (const strategy of ["flexsp", "static", "batchada"] as Strategy[]) {
        const plan = await planStep(lengths, topo, cost, { ...ctx.options, strategy });
        const errors = planViolations(plan, ctx, lengths);
        assert(errors.length === 0, `${strategy} on shape ${i}: ${errors.join("; ")}`);
        assertWithinSmallestDevice(plan, rankTokens(kinds), `${strategy} on shape ${i}`);
        checked++;
      }
    }
  }
  assertEquals(checked, 4 * 4 * 3);
});

Deno.test("planViolations catches a group over its smallest device's capacity on a mixed block", async () => {
  const kinds = [A(1, 2), H(1, 2)];
  const { ctx, topo, cost } = mixedContext(kinds, { milp: "none" });
  // 4,500 tokens on the 4-device block would need 1,125 per device; its smallest device holds 1,000.
  const lengths = [3000];
  const plan = await planStep(lengths, topo, cost, ctx.options);
  assertEquals(planViolations(plan, ctx, lengths), []);
  const g = plan.microBatches[0].groups.find((x) => x.sequences.length > 0)!;
  assertEquals(g.ranks, [2, 3], "3,000 tokens go to the two large devices, not a degree-4 group");
  const wide = { ...structuredClone(plan) };
  wide.microBatches[0].groups = [{
    degree: 4,
    ranks: [0, 1, 2, 3],
    sequences: [0],
    lengths: [4500],
    predictedMs: cost.groupMs([4500], 4, true, 1),
    spansNodes: true,
  }];
  const memErrors = planViolations(wide, ctx, [4500]);
  assert(
    memErrors.some((e) => e.includes("4500 tokens exceed the group's memory (4 x 1000 tokens)")),
    memErrors.join("; "),
  );
});

Deno.test("tiny mixed clusters: lower bound <= exhaustive optimum <= planner, within 3% of it", async () => {
  let worst = 0;
  let cases = 0;
  // 2+2 devices of two speeds and memories, one device per node and two per node, and 4+4.
  const shapes: Kind[][] = [[A(1, 2), H(1, 2)], [A(2, 1), H(2, 1)], [H(1, 2), A(1, 2)], [A(1, 4), H(1, 4)]];
  for (const [i, kinds] of shapes.entries()) {
    const { ctx, topo, cost } = mixedContext(kinds, { milp: "none", deterministic: true });
    for (let seed = 1; seed <= 5; seed++) {
      const lengths = randomLengths(seed * 13 + i, 5, 4500);
      const opt = exhaustiveStep(ctx, lengths);
      const plan = await planStep(lengths, topo, cost, ctx.options);
      assert(plan.lowerBoundMs <= opt * (1 + 1e-9), `shape ${i} seed ${seed}: bound ${plan.lowerBoundMs} > ${opt}`);
      assert(plan.predictedMs >= opt * (1 - 1e-9), `shape ${i} seed ${seed}: plan beats the optimum?`);
      worst = Math.max(worst, plan.predictedMs / opt - 1);
      cases++;
    }
  }
  assertEquals(cases, 20);
  assert(worst <= 0.03, `worst gap to the optimum ${(worst * 100).toFixed(2)}%`);
});

Deno.test("the speed-weighted bound is tighter than the device count bound on mixed speeds", async () => {
  const kinds = [A(2, 4), H(2, 4)];
  const { ctx, topo, cost } = mixedContext(kinds, { milp: "none" });
  // Many short sequences: the work term decides the bound.
  const lengths = Array.from({ length: 64 }, (_, k) => 200 + 7 * k);
  const plan = await planStep(lengths, topo, cost, ctx.options);
  let work = 0;
  for (const s of lengths) work += ctx.minWork(s);
  const deviceBound = cost.beta1 / ctx.maxSpeed + work / topo.devices;
  assert(plan.lowerBoundMs > 1.2 * deviceBound, `bound ${plan.lowerBoundMs} vs device-count bound ${deviceBound}`);
  assert(plan.lowerBoundMs <= plan.predictedMs);
});

Deno.test("long sequences go to the large-memory devices when that avoids a wider group", async () => {
  const kinds = [A(1, 4), H(1, 4)];
  const { ctx, topo, cost } = mixedContext(kinds, { milp: "none" });
  // 4,800 tokens fit 2 large devices but need all 8 (both nodes) if every device held 1,000.
  assertEquals(ctx.minDegreeOf(4800), 2);
  const lengths = [4800, 300, 200];
  const plan = await planStep(lengths, topo, cost, ctx.options);
  assertEquals(planViolations(plan, ctx, lengths), []);
  const g = plan.microBatches[0].groups.find((x) => x.sequences.includes(0))!;
  assert(g.degree <= 4 && g.ranks.every((r) => r >= 4), `4,800 tokens on d${g.degree} ranks ${g.ranks}`);
  assertEquals(groupDeviceType(g, topo), "H");
  // Under one budget for all (the small devices'), the same sequence needs the whole cluster.
  const one = mixedContext([A(1, 4), { ...H(1, 4), tokens: 1000 }], { milp: "none" });
  const flat = await planStep(lengths, one.topo, one.cost, one.ctx.options);
  const g1 = flat.microBatches.flatMap((mb) => mb.groups).find((x) => x.sequences.includes(0))!;
  assertEquals(g1.degree, 8);
  assert(plan.predictedMs < flat.predictedMs, `${plan.predictedMs} ms vs ${flat.predictedMs} ms under one budget`);
});

Deno.test("groups stay inside one device type: a mixed group runs at its slowest device", async () => {
  const kinds = [A(1, 4), H(1, 4)];
  const { ctx, topo, cost } = mixedContext(kinds, { milp: "none" });
  const lengths = randomLengths(5, 40, 2400);
  const plan = await planStep(lengths, topo, cost, ctx.options);
  assertEquals(planViolations(plan, ctx, lengths), []);
  for (const mb of plan.microBatches) {
    for (const g of mb.groups) {
      if (g.sequences.length === 0 || g.degree === 8) continue;
      assert(!groupDeviceType(g, topo).startsWith("mixed"), `group ${g.ranks} mixes types`);
    }
  }
  // The fast devices do more of the work: more tokens per device on H than on A.
  const per = { A: 0, H: 0 };
  for (const mb of plan.microBatches) {
    for (const g of mb.groups) {
      const t = groupDeviceType(g, topo);
      if (t === "A" || t === "H") per[t] += g.lengths.reduce((a, b) => a + b, 0);
    }
  }
  assert(per.H > per.A, `tokens on H ${per.H}, on A ${per.A}`);
});

Deno.test("static SP on a mixed cluster uses a degree every group of which holds the whole context", async () => {
  const kinds = [A(2, 4), H(2, 4)];
  const { ctx, topo, cost } = mixedContext(kinds, { milp: "none", overflow: "drop" });
  // maxSeq 4096 (the toy model): 4 large devices would hold it, but a static plan needs 8 small ones too.
  assertEquals(ctx.minDegreeOf(TOY_MODEL.maxSeq), 2);
  assertEquals(ctx.uniformDegreeOf(TOY_MODEL.maxSeq), 8);
  const plan = await planStep(randomLengths(3, 20, 4096), topo, cost, { ...ctx.options, strategy: "static" });
  assertEquals(plan.degree, 8);
});

Deno.test("placement prefers a block of one device type over a mixed one of the same speed", () => {
  // H on node 0, A on nodes 1-3: [0-3] mixes H and A (runs at A's speed), [4-7] is all A.
  const { ctx } = mixedContext([H(1, 2), A(3, 2)]);
  const alloc = ctx.newAllocator();
  const b = alloc.peek(4)!;
  assertEquals([b.start, b.speed], [4, 1]);
  alloc.take(b);
  // The H devices stay free for a group of their own.
  assertEquals(alloc.peek(2)!.start, 0);
});
