// Validation of an executor step plan. Every rank checks the plan it gets the same way, so a bad plan (a degree
// that does not divide the head count, a rank missing from a micro-batch, a rank in two groups, an over-long
// sequence) is refused by all ranks of a group at once with the same clear message, before any collective could
// hang. A plan of scope "rank" (core/plan_scope.ts: what an agent hands each executor) holds only the rank's own
// group per micro-batch; the orchestrator checked that the whole plan's groups cover every rank.

import type { ExecutorStepPlan, GroupAssignment } from "../core/protocol.ts";
import type { ModelShape } from "./model.ts";

/** This rank's part of one micro-batch. */
export interface MyGroup {
  group: GroupAssignment;
  /** Position of this rank in `group.ranks`. */
  spRank: number;
}

/** Validates `plan` for a run of `worldSize` ranks; returns this rank's group in every micro-batch. */
export function checkPlan(plan: ExecutorStepPlan, rank: number, worldSize: number, shape: ModelShape): MyGroup[] {
  const where = `step plan ${plan?.step}`;
  if (!plan || !Number.isInteger(plan.step) || plan.step < 0) throw new Error(`${where}: bad step number`);
  if (!Array.isArray(plan.microBatches) || plan.microBatches.length === 0) {
    throw new Error(`${where}: needs at least one micro-batch`);
  }
  if (!(plan.globalTokens > 0)) throw new Error(`${where}: globalTokens must be positive, got ${plan.globalTokens}`);
  if (!(Number.isFinite(plan.lr) && plan.lr >= 0)) throw new Error(`${where}: bad learning rate ${plan.lr}`);
  return plan.microBatches.map((mb, i) => {
    const at = `${where}, micro-batch ${i}`;
    if (!mb || !Array.isArray(mb.groups)) throw new Error(`${at}: missing groups`);
    const owner = new Array<number>(worldSize).fill(-1);
    let mine: MyGroup | undefined;
    mb.groups.forEach((g, gi) => {
      const gat = `${at}, group ${gi}`;
      if (!Array.isArray(g.ranks) || !Number.isInteger(g.degree) || g.degree < 1 || g.ranks.length !== g.degree) {
        throw new Error(`${gat}: degree ${g.degree} does not match its ${g.ranks?.length} ranks`);
      }
      if (shape.heads % g.degree !== 0) {
        throw new Error(
          `${gat}: SP degree ${g.degree} does not divide the model's ${shape.heads} attention heads ` +
            `(Ulysses needs heads divisible by the degree)`,
        );
      }
      g.ranks.forEach((r, k) => {
        if (!Number.isInteger(r) || r < 0 || r >= worldSize) {
          throw new Error(`${gat}: rank ${r} outside [0, ${worldSize})`);
        }
        if (owner[r] >= 0) throw new Error(`${gat}: rank ${r} is also in group ${owner[r]}`);
        owner[r] = gi;
        if (r === rank) mine = { group: g, spRank: k };
      });
      if (!Array.isArray(g.sequences)) throw new Error(`${gat}: missing sequences`);
      for (const s of g.sequences) {
        if (!Number.isInteger(s.length) || s.length < 1 || s.length > shape.maxSeq) {
          throw new Error(`${gat}: sequence ${s.id} has length ${s.length}; the model accepts 1..${shape.maxSeq}`);
        }
        if (!Number.isInteger(s.offset) || s.offset < 0) throw new Error(`${gat}: sequence ${s.id} has bad offset`);
      }
    });
    if (plan.scope === "rank") {
      if (!mine) throw new Error(`${at}: rank ${rank} is in no group of its plan`);
      return mine;
    }
    const missing = owner.flatMap((g, r) => (g < 0 ? [r] : []));
    if (missing.length) {
      throw new Error(
        `${at}: rank(s) ${missing.join(", ")} are in no group (groups must cover all ${worldSize} ranks)`,
      );
    }
    return mine!;
  });
}
