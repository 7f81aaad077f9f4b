// The scopes of a step plan (ExecutorStepPlan.scope): the whole plan ("all") is split once per step into one plan
// per node ("node": the groups that involve that node's ranks, what the orchestrator sends each agent), and each
// agent cuts its node's plan into one plan per local rank ("rank": that rank's own group in every micro-batch, what
// an executor receives). Bytes the orchestrator writes per step are then the sum over groups of the group's size
// times the nodes it spans: O(sequences + ranks), not O(sequences × ranks). Coverage (the groups of every
// micro-batch partition all ranks) is checked here, on the whole plan, since no executor sees it any more.

import type { ExecutorStepPlan, GroupAssignment } from "./protocol.ts";

/**
 * Splits a whole plan into one node plan per node, each already serialised as the `plan` JSON of a node `step`
 * (each group is serialised once, however many nodes it spans). `nodeOf[rank]` is the node index of each rank.
 * Throws when a micro-batch's groups do not partition the ranks `[0, nodeOf.length)`.
 */
export function nodePlanJsons(plan: ExecutorStepPlan, nodeOf: readonly number[], nodes: number): string[] {
  const world = nodeOf.length;
  const where = `step plan ${plan.step}`;
  const perNode: string[][] = Array.from({ length: nodes }, () => []);
  const owner = new Int32Array(world);
  const seen = new Int32Array(nodes).fill(-1);
  plan.microBatches.forEach((mb, i) => {
    owner.fill(-1);
    const lists: string[][] = Array.from({ length: nodes }, () => []);
    mb.groups.forEach((g, gi) => {
      for (const r of g.ranks) {
        if (!(r >= 0 && r < world) || !Number.isInteger(r)) {
          throw new Error(`${where}, micro-batch ${i}, group ${gi}: rank ${r} outside [0, ${world})`);
        }
        if (owner[r] >= 0) {
          throw new Error(`${where}, micro-batch ${i}, group ${gi}: rank ${r} also in group ${owner[r]}`);
        }
        owner[r] = gi;
      }
      const json = JSON.stringify(g);
      for (const r of g.ranks) {
        const n = nodeOf[r];
        if (seen[n] === gi) continue;
        seen[n] = gi;
        lists[n].push(json);
      }
    });
    seen.fill(-1);
    const missing = [...owner].flatMap((o, r) => (o < 0 ? [r] : []));
    if (missing.length) {
      throw new Error(
        `${where}, micro-batch ${i}: rank(s) ${
          missing.join(", ")
        } are in no group (groups must cover all ${world} ranks)`,
      );
    }
    for (let n = 0; n < nodes; n++) perNode[n].push(`{"groups":[${lists[n].join(",")}]}`);
  });
  const head = `{"step":${plan.step},"lr":${
    JSON.stringify(plan.lr)
  },"globalTokens":${plan.globalTokens},"scope":"node",`;
  return perNode.map((mbs) => `${head}"microBatches":[${mbs.join(",")}]}`);
}

/** The plan of one rank (scope "rank"): its own group in every micro-batch of a node (or whole) plan. */
export function rankPlan(plan: ExecutorStepPlan, rank: number): ExecutorStepPlan {
  const microBatches = plan.microBatches.map((mb, i) => {
    const g: GroupAssignment | undefined = mb.groups.find((g) => g.ranks.includes(rank));
    if (!g) throw new Error(`step plan ${plan.step}, micro-batch ${i}: rank ${rank} is in no group`);
    return { groups: [g] };
  });
  return { step: plan.step, lr: plan.lr, globalTokens: plan.globalTokens, scope: "rank", microBatches };
}
