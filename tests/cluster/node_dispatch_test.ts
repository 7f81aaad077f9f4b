// Per-node dispatch through real local agents and simulated executors (kernels/sim_executor.ts): one step line per
// node whose bytes do not grow with the node's rank count (counted on the agent channels), every rank's `step_done`
// back (collected per node by the agent), and an executor that exits mid-step reported as itself, the node's other
// answers arriving first, so the failure settles at once.

import type { ExecutorStepPlan, GroupAssignment } from "../../core/protocol.ts";
import { parseConfig } from "../../orchestrator/config/load.ts";
import { ClusterSession, EXECUTOR_SOURCE } from "../../orchestrator/cluster/cluster_session.ts";
import { ExecutorPool, FaultError } from "../../orchestrator/cluster/executor_pool.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";

/** Two local nodes of `devices` simulated executors each. */
function simConfig(devices: number) {
  const node = `    - host: localhost\n      transport: local\n      devices: ${devices}\n      executor: sim\n`;
  return parseConfig(
    `cluster:\n  nodes:\n${node}${node}model:\n  preset: gpt-tiny\ntraining:\n  simulate: true\n`,
    "sim.yaml",
  );
}

/** 256 short sequences on degree-1 groups over `world` ranks, 2 ms each. */
function planOf(step: number, world: number): ExecutorStepPlan {
  const groups: GroupAssignment[] = Array.from({ length: world }, (_, r) => ({ degree: 1, ranks: [r], sequences: [] }));
  for (let k = 0; k < 256; k++) groups[k % world].sequences.push({ id: k, offset: 1024 * k, length: 64 + k % 700 });
  for (const g of groups) g.predictedMs = 2;
  const globalTokens = groups.flatMap((g) => g.sequences).reduce((a, s) => a + s.length - 1, 0);
  return { step, lr: 1e-3, globalTokens, microBatches: [{ groups }] };
}

async function withPool(
  devices: number,
  env: Record<string, string>,
  fn: (pool: ExecutorPool, cluster: ClusterSession) => Promise<void>,
): Promise<void> {
  const config = simConfig(devices);
  const dir = await Deno.makeTempDir({ prefix: "flexsp-dispatch-" });
  const cluster = await ClusterSession.launch(config, {
    runId: "dispatch",
    runDir: dir,
    executorEntry: EXECUTOR_SOURCE,
  });
  const pool = ExecutorPool.create(cluster, { config, env });
  try {
    assertEquals(cluster.failures.map((f) => f.error), []);
    await pool.start();
    await fn(pool, cluster);
  } finally {
    pool.stop();
    await cluster.shutdown("test over");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "node dispatch: one step line per node, bytes not growing with ranks per node, every rank answers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const perStep = new Map<number, { bytes: number; planBytes: number }>();
    for (const devices of [2, 16]) {
      await withPool(devices, {}, async (pool, cluster) => {
        const world = 2 * devices;
        const sent = () => cluster.sessions.reduce((a, s) => a + s.bytesSent, 0);
        for (let step = 1; step <= 3; step++) {
          const plan = planOf(step, world);
          const before = sent();
          const { done } = await pool.step(plan, 30_000);
          perStep.set(devices, { bytes: sent() - before, planBytes: JSON.stringify(plan).length });
          assertEquals(done.map((d) => d.rank), [...Array(world).keys()]);
          const tokens = done.reduce((a, d) => a + d.microBatches[0].tokens, 0);
          assertEquals(tokens, plan.globalTokens, "each group's tokens reported once");
          assert(done.every((d) => d.ms >= 2), "each rank slept its group's predicted time");
        }
      });
    }
    const [small, large] = [perStep.get(2)!, perStep.get(16)!];
    for (const [d, x] of perStep) {
      assert(x.bytes <= 2 * x.planBytes, `${d} ranks per node: ${x.bytes} bytes per step, plan ${x.planBytes}`);
    }
    // 8x the ranks per node: the old dispatch wrote 8x the bytes; now only the ranks' own entries are added.
    assert(large.bytes < 1.25 * small.bytes, `bytes per step ${small.bytes} at 2 ranks per node, ${large.bytes} at 16`);
  },
});

Deno.test({
  name: "node dispatch: a simulated executor exiting mid-step is the reported fault; its node's answers still arrive",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withPool(4, { FLEXSP_STEP_FAULT: "5:exit" }, async (pool) => {
      const t0 = performance.now();
      const err = await pool.step(planOf(1, 8), 30_000).then(() => undefined, (e) => e);
      assert(err instanceof FaultError, `expected a fault, got ${err}`);
      await pool.settled();
      assert(performance.now() - t0 < 5_000, "settled without waiting for a timeout");
      assertEquals(pool.cause?.rank, 5);
      assertIncludes(pool.cause!.reason, "executor exited with code 3");
    });
  },
});
