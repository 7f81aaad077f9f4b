// The simulated executor (kernels/sim_executor.ts) through its protocol, in this process: a step sleeps for its
// groups' predicted times and reports each group's tokens once with a plausible loss; jitter is shared by a group's
// members; save and load round-trip its state and refuse a file that is not one; profiling requests are answered.

import { SimExecutor } from "../../kernels/sim_executor.ts";
import type { ExecutorEvent, ExecutorStepPlan } from "../../core/protocol.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { testInit } from "./executor_harness.ts";

const TINY = MODEL_PRESETS["gpt-tiny"];

function sims(n: number, jitter = 0): { sims: SimExecutor[]; events: ExecutorEvent[][] } {
  const events: ExecutorEvent[][] = Array.from({ length: n }, () => []);
  const list = events.map((ev) => new SimExecutor({ device: 0, jitter, env: {} }, (e) => ev.push(e)));
  return { sims: list, events };
}

const plan: ExecutorStepPlan = {
  step: 1,
  lr: 1e-3,
  globalTokens: 99 + 49 + 29,
  microBatches: [{
    groups: [
      { degree: 2, ranks: [0, 1], sequences: [{ id: 1, offset: 0, length: 100 }], predictedMs: 40 },
      { degree: 1, ranks: [2], sequences: [{ id: 2, offset: 100, length: 50 }, { id: 3, offset: 150, length: 30 }] },
    ],
  }],
};

Deno.test("sim executor: sleeps the predicted time, reports each group's tokens once, a plausible loss", async () => {
  const { sims: s, events } = sims(3, 0.2);
  await Promise.all(s.map((x, r) => x.handle({ type: "init", init: testInit(r, 3, TINY) })));
  assertEquals(events.map((e) => e[0].type), ["ready", "ready", "ready"]);
  await Promise.all(s.map((x) => x.handle({ type: "peers", endpoints: [] })));
  const t0 = performance.now();
  await Promise.all(s.map((x) => x.handle({ type: "step", plan })));
  const done = events.map((e) => e.find((x) => x.type === "step_done")!) as Extract<
    ExecutorEvent,
    { type: "step_done" }
  >[];
  assert(performance.now() - t0 >= 40 * 0.8, "slept the group's predicted time (less 20 % jitter at most)");
  assertEquals(done.map((d) => d.microBatches[0].tokens), [99, 0, 49 + 29]);
  assertEquals(done[0].microBatches[0].ms > 30, true);
  assert(Math.abs(done[0].microBatches[0].ms - done[1].microBatches[0].ms) < 15, "group members share their jitter");
  const loss = done.reduce((a, d) => a + d.microBatches[0].lossSum, 0) / plan.globalTokens;
  assert(loss > 0.5 * Math.log(TINY.vocab) && loss < 1.1 * Math.log(TINY.vocab), `plausible loss ${loss}`);
});

Deno.test("sim executor: save and load round-trip; a file that is not its state is refused; profiling answered", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-sim-" });
  try {
    const { sims: [x], events: [ev] } = sims(1);
    await x.handle({ type: "init", init: testInit(0, 1, TINY) });
    await x.handle({
      type: "step",
      plan: { ...plan, microBatches: [{ groups: [{ degree: 1, ranks: [0], sequences: [] }] }] },
    });
    await x.handle({ type: "save", path: `${dir}/a.ckpt` });
    const saved = ev.find((e) => e.type === "saved") as Extract<ExecutorEvent, { type: "saved" }>;
    await x.handle({ type: "load", path: saved.path, sha256: saved.sha256 });
    assert(ev.some((e) => e.type === "loaded"), "loaded");
    await Deno.writeTextFile(`${dir}/b.ckpt`, "not a state");
    await x.handle({ type: "load", path: `${dir}/b.ckpt` });
    const err = ev.findLast((e) => e.type === "error") as Extract<ExecutorEvent, { type: "error" }>;
    assertIncludes(err.message, "load:");
    const request = { id: "p", points: [{ count: 2, length: 64 }], order: [0, 0], warmup: 0, barrier: false };
    await x.handle({ type: "profile_compute", request });
    const pc = ev.find((e) => e.type === "profile_compute_done") as Extract<
      ExecutorEvent,
      { type: "profile_compute_done" }
    >;
    assertEquals(pc.result.samples.map((p) => p.tokens), [128, 128]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
