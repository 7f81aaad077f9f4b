// Checks a plan against the rules every executor relies on; returns a list of violations (empty = valid).

import type { PlanContext } from "./context.ts";
import type { Plan } from "./plan_types.ts";

/** Every rule a plan must follow, checked independently of how it was made. */
export function planViolations(plan: Plan, ctx: PlanContext, lengths: readonly number[]): string[] {
  const errors: string[] = [];
  const n = ctx.topo.devices;
  const seen = new Map<number, number>();
  plan.microBatches.forEach((mb, i) => {
    const owner = new Int32Array(n).fill(-1);
    let maxMs = 0;
    mb.groups.forEach((g, j) => {
      const where = `micro-batch ${i} group ${j}`;
      if (!ctx.degrees.includes(g.degree) && g.sequences.length > 0) {
        errors.push(`${where}: degree ${g.degree} is not allowed (${ctx.degrees.join(", ")})`);
      }
      if ((g.degree & (g.degree - 1)) !== 0) errors.push(`${where}: degree ${g.degree} is not a power of two`);
      if (g.ranks.length !== g.degree) errors.push(`${where}: ${g.ranks.length} ranks for degree ${g.degree}`);
      const start = g.ranks[0];
      if (start % g.degree !== 0) errors.push(`${where}: block starts at ${start}, not a multiple of ${g.degree}`);
      g.ranks.forEach((r, x) => {
        if (r !== start + x) errors.push(`${where}: ranks are not one contiguous block`);
        if (r < 0 || r >= n) errors.push(`${where}: rank ${r} out of range`);
        else if (owner[r] >= 0) errors.push(`micro-batch ${i}: rank ${r} in two groups`);
        else owner[r] = j;
      });
      let tokens = 0;
      g.sequences.forEach((k, x) => {
        seen.set(k, (seen.get(k) ?? 0) + 1);
        if (g.lengths[x] !== lengths[k]) errors.push(`${where}: length of sequence ${k} is wrong`);
        tokens += lengths[k];
      });
      const cap = Math.min(...g.ranks.map((r) => ctx.capacity[r] ?? 0));
      if (tokens > g.degree * cap) {
        errors.push(`${where}: ${tokens} tokens exceed the group's memory (${g.degree} x ${cap} tokens)`);
      }
      const spans = ctx.topo.nodeOf[g.ranks[0]] !== ctx.topo.nodeOf[g.ranks[g.ranks.length - 1]];
      const speed = Math.min(...g.ranks.map((r) => ctx.topo.speed[r]));
      const expected = ctx.cost.groupMs(g.lengths, g.degree, spans, speed);
      if (Math.abs(expected - g.predictedMs) > 1e-6 * Math.max(1, expected)) {
        errors.push(`${where}: predicted ${g.predictedMs} ms, cost model says ${expected} ms`);
      }
      maxMs = Math.max(maxMs, g.predictedMs);
    });
    const missing = [...owner].findIndex((o) => o < 0);
    if (missing >= 0) errors.push(`micro-batch ${i}: rank ${missing} is in no group`);
    if (Math.abs(maxMs - mb.predictedMs) > 1e-6 * Math.max(1, maxMs)) {
      errors.push(`micro-batch ${i}: predicted ${mb.predictedMs} ms but its slowest group takes ${maxMs} ms`);
    }
  });
  const dropped = new Set(plan.dropped);
  lengths.forEach((_, k) => {
    const c = seen.get(k) ?? 0;
    if (dropped.has(k) && c > 0) errors.push(`sequence ${k} is both dropped and planned`);
    if (!dropped.has(k) && c !== 1) errors.push(`sequence ${k} is planned ${c} times`);
  });
  const total = plan.microBatches.reduce((t, mb) => t + mb.predictedMs, 0) +
    (plan.microBatches.length ? ctx.cost.stepMs : 0);
  if (Math.abs(total - plan.predictedMs) > 1e-6 * Math.max(1, total)) {
    errors.push(
      `plan predicts ${plan.predictedMs} ms but its micro-batches (and the step's fixed cost) add up to ${total} ms`,
    );
  }
  if (plan.lowerBoundMs > plan.predictedMs * (1 + 1e-9)) {
    errors.push(`lower bound ${plan.lowerBoundMs} ms exceeds the plan's ${plan.predictedMs} ms`);
  }
  return errors;
}
