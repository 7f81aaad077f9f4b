// The scopes of a step plan (core/plan_scope.ts): a node plan holds exactly the groups that involve the node's ranks,
// each rank's plan gives the executor the same group and SP rank as the whole plan did, a plan whose groups do not
// cover every rank is refused before anything is sent, and the bytes of all node plans together stay within 2x the
// plan's own size however many ranks each node has (the old dispatch wrote the whole plan to every rank).

import type { ExecutorStepPlan, GroupAssignment } from "../../core/protocol.ts";
import { nodePlanJsons, rankPlan } from "../../core/plan_scope.ts";
import { checkPlan } from "../../kernels/step_plan.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { assert, assertEquals, assertThrows } from "../assert.ts";

const SHAPE = { ...MODEL_PRESETS["gpt-tiny"], heads: 16, maxSeq: 4096 };

/**
 * A plan over `nodes` nodes of `perNode` ranks shaped as FlexSP plans are: one large group over the first half of
 * the ranks (spanning nodes when there are several) holding a few long sequences, pairs or solos on the rest holding
 * the many short ones.
 */
function planOf(nodes: number, perNode: number, sequences: number): ExecutorStepPlan {
  const world = nodes * perNode;
  const half = Math.max(1, world / 2);
  const big: GroupAssignment = { degree: half, ranks: Array.from({ length: half }, (_, i) => i), sequences: [] };
  const small: GroupAssignment[] = [];
  for (let r = half; r < world; r += 2) {
    small.push(
      r + 1 < world && perNode > 1
        ? { degree: 2, ranks: [r, r + 1], sequences: [] }
        : { degree: 1, ranks: [r], sequences: [] },
    );
    if (perNode === 1 && r + 1 < world) small.push({ degree: 1, ranks: [r + 1], sequences: [] });
  }
  for (let k = 0; k < sequences; k++) {
    const long = k < 2;
    (long ? big : small[k % small.length]).sequences.push({
      id: 1000 + k,
      offset: 4096 * k,
      length: long ? 4000 : 100 + (k * 37) % 900,
    });
  }
  const groups = [big, ...small];
  const globalTokens = groups.flatMap((g) => g.sequences).reduce((a, s) => a + s.length - 1, 0);
  return { step: 3, lr: 1e-3, globalTokens, microBatches: [{ groups }, { groups: [...groups].reverse() }] };
}

const nodeOfRanks = (nodes: number, perNode: number) =>
  Array.from({ length: nodes * perNode }, (_, r) => Math.floor(r / perNode));

Deno.test("node plans: each node gets exactly the groups with one of its ranks; rank plans match the whole plan", () => {
  const plan = planOf(4, 4, 64);
  const nodeOf = nodeOfRanks(4, 4);
  const jsons = nodePlanJsons(plan, nodeOf, 4);
  assertEquals(jsons.length, 4);
  for (let n = 0; n < 4; n++) {
    const np = JSON.parse(jsons[n]) as ExecutorStepPlan;
    assertEquals(np.scope, "node");
    assertEquals([np.step, np.lr, np.globalTokens], [plan.step, plan.lr, plan.globalTokens]);
    plan.microBatches.forEach((mb, i) => {
      const expected = mb.groups.filter((g) => g.ranks.some((r) => nodeOf[r] === n));
      assertEquals(np.microBatches[i].groups, expected, `node ${n}, micro-batch ${i}`);
    });
    for (let r = 0; r < 16; r++) {
      if (nodeOf[r] !== n) continue;
      const mine = checkPlan(rankPlan(np, r), r, 16, SHAPE);
      const whole = checkPlan(plan, r, 16, SHAPE);
      assertEquals(mine, whole, `rank ${r}: same groups and SP ranks as in the whole plan`);
    }
  }
});

Deno.test("node plans: groups that miss a rank or hold one twice are refused before anything is sent", async () => {
  const plan = planOf(2, 2, 4);
  const gap: ExecutorStepPlan = { ...plan, microBatches: [{ groups: plan.microBatches[0].groups.slice(1) }] };
  await assertThrows(() => nodePlanJsons(gap, nodeOfRanks(2, 2), 2), "rank(s) 0, 1 are in no group");
  const twice: ExecutorStepPlan = {
    ...plan,
    microBatches: [{ groups: [...plan.microBatches[0].groups, { degree: 1, ranks: [3], sequences: [] }] }],
  };
  await assertThrows(() => nodePlanJsons(twice, nodeOfRanks(2, 2), 2), "rank 3 also in group");
  await assertThrows(
    () => rankPlan(JSON.parse(nodePlanJsons(plan, nodeOfRanks(2, 2), 2)[1]), 0),
    "rank 0 is in no group",
  );
});

Deno.test("node plans: their bytes stay within 2x the plan's size at 1, 8 and 32 ranks per node", () => {
  for (const perNode of [1, 8, 32]) {
    const plan = planOf(8, perNode, 512);
    const planBytes = JSON.stringify(plan).length;
    const bytes = nodePlanJsons(plan, nodeOfRanks(8, perNode), 8).reduce((a, j) => a + j.length, 0);
    const old = planBytes * 8 * perNode; // the whole plan to every rank
    assert(bytes <= 2 * planBytes, `${perNode} ranks per node: ${bytes} bytes for a plan of ${planBytes}`);
    assert(bytes < old, `${perNode} ranks per node: ${bytes} bytes, the old dispatch ${old}`);
  }
});
