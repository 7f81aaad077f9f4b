// A hung rank: with one executor stopped (SIGSTOP) mid-run, the step fails after `training.step_timeout`, not ten
// minutes, and the report blames the stopped rank (its agent's heartbeats say the process is stopped), not a peer
// that timed out waiting for it; no executor is left behind. Also the `auto` timeout's rule and the rank ranges that
// keep such reports readable at any rank count.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { AUTO_STEP_TIMEOUT_MIN_MS, stepTimeoutMs } from "../../orchestrator/run/train_attempt.ts";
import { rankRanges } from "../../orchestrator/cluster/fault.ts";
import { allExecutorPids, executorPid, leftAlive, shortRun, startLaunch } from "./launch_harness.ts";

Deno.test("step timeout: seconds as set; auto is 50 x predicted, at least two minutes; rank ranges", () => {
  assertEquals(stepTimeoutMs(7, 10_000), 7_000);
  assertEquals(stepTimeoutMs("auto", 100), AUTO_STEP_TIMEOUT_MIN_MS);
  assertEquals(stepTimeoutMs("auto", 10_000), 500_000);
  assertEquals(rankRanges([5, 0, 1, 2, 3, 7, 8, 10, 11, 12, 13]), "0-3, 5, 7, 8, 10-13");
  assertEquals(rankRanges(Array.from({ length: 100_000 }, (_, i) => i)), "0-99999");
});

/** Launches, SIGSTOPs rank 1's executor after step 2, and returns how the run ended and how long it took. */
async function stopRankOne(tmp: string, sets: string[], env: Record<string, string> = {}) {
  const dir = `${tmp}/run`;
  const p = startLaunch([
    "configs/local.yaml",
    ...shortRun(tmp, 30, 10, ["training.on_failure=stop", ...sets]),
    "--run-dir",
    dir,
  ], env);
  await p.waitFor("step  2/30", 120_000);
  const pid = await executorPid(dir, 1);
  const pids = await allExecutorPids(dir);
  Deno.kill(pid, "SIGSTOP");
  const t0 = Date.now();
  const r = await p.finish();
  return { ...r, s: (Date.now() - t0) / 1000, pids };
}

Deno.test({
  name: "a SIGSTOPped executor: the step fails after training.step_timeout and the stopped rank is blamed",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-hung-" });
    try {
      const r = await stopRankOne(tmp, ["training.step_timeout=8", "observe.hang_min_s=4"]);
      assertEquals(r.code, 2, r.err);
      assert(r.s < 60, `failed after ${r.s} s`);
      assertIncludes(
        r.err,
        "failed: rank 1: no answer to step",
        "not finished: the process of rank 1 on localhost is stopped (SIGSTOP or a debugger",
        "within 8 s: the process of rank 1 is stopped (SIGSTOP or a debugger",
        "Resume with:",
      );
      assertEquals(await leftAlive(r.pids, 10_000), [], "no executor left behind");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "a SIGSTOPped executor whose peers' data plane times out first: the stopped rank is blamed, not the peers",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-hung-dp-" });
    try {
      const r = await stopRankOne(tmp, ["training.step_timeout=120"], { FLEXSP_DP_OP_TIMEOUT_MS: "6000" });
      assertEquals(r.code, 2, r.err);
      assertIncludes(r.err, "failed: rank 1: the process of rank 1 is stopped", "timed out waiting for it");
      assertEquals(await leftAlive(r.pids, 10_000), [], "no executor left behind");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
