// Real executor processes given rank-scoped plans (what an agent hands each executor since per-node dispatch,
// core/plan_scope.ts) compute exactly what they computed from the whole plan: the same losses, token counts and
// gradient norm, bit for bit (learning rate 0, so both steps see the same parameters).

import { rankPlan } from "../../core/plan_scope.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { assertEquals } from "../assert.ts";
import { group, isType, plan, sequenceMaker, startRun, stopAll } from "./executor_harness.ts";

const seqs = sequenceMaker();

Deno.test("executor processes: a rank-scoped plan gives bit-identical results to the whole plan", async () => {
  const procs = await startRun(4, MODEL_PRESETS["gpt-tiny"]);
  try {
    const s = seqs([90, 33, 64, 17, 120, 51]);
    const mbs = [
      { groups: [group([0, 1], [s[0], s[1]]), group([2], [s[2]]), group([3], [s[3], s[5]])] },
      { groups: [group([0, 1, 2, 3], [s[4]])] },
    ];
    const whole = { ...plan(0, mbs, 0), scope: "all" as const };
    const scoped = { ...plan(1, mbs, 0), scope: "node" as const };
    const run = async (planOf: (rank: number) => typeof whole) => {
      await Promise.all(procs.map((p) => p.send({ type: "step", plan: planOf(p.rank) })));
      return await Promise.all(procs.map((p) => p.next(isType("step_done"), 60_000, "step_done")));
    };
    const a = await run(() => whole);
    const b = await run((rank) => rankPlan(scoped, rank) as typeof whole);
    for (let r = 0; r < 4; r++) {
      assertEquals(
        b[r].microBatches.map((m) => [m.lossSum, m.tokens]),
        a[r].microBatches.map((m) => [m.lossSum, m.tokens]),
        `rank ${r}`,
      );
      assertEquals(b[r].gradNorm, a[r].gradNorm, `rank ${r} gradient norm`);
    }
  } finally {
    await stopAll(procs);
  }
});
