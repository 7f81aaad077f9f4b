// Faults of the PyTorch executor (`executor: torch-cpu`) as a user meets them: a rank that crashes mid-run is named
// (host, device, SP group, sequences), a node whose Python has no torch gets one clear error before anything starts,
// and a bad plan (a rank in no group, a degree that does not divide the heads) is refused with the reason.

import { loadConfig } from "../../orchestrator/config/load.ts";
import { ClusterSession } from "../../orchestrator/cluster/cluster_session.ts";
import { ExecutorPool } from "../../orchestrator/cluster/executor_pool.ts";
import type { ExecutorStepPlan } from "../../core/protocol.ts";
import { assert, assertEquals, assertIncludes, eventually } from "../assert.ts";
import { allExecutorPids, killRankAt, launchCli, leftAlive, REPO_ROOT, runCli, shortRun } from "./launch_harness.ts";
import { pythonWithoutTorch, torchPython } from "../agents/torch_fixtures.ts";

const torch = await torchPython();
if (!torch.ok) console.log(`skipping the torch-cpu fault tests: ${torch.reason}`);

const CONFIG = "configs/local.yaml";
const tmp = await Deno.makeTempDir({ prefix: "flexsp-torch-faults-" });
const FAST = shortRun(tmp, 8, 2, ["cluster.nodes[0].executor=torch-cpu"]);

Deno.test({
  name: "launch torch-cpu: a killed rank is named with host, device, SP group and sequences; exit 2 with resume",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const dir = `${tmp}/stop`;
    // Checkpoints at steps 4 and 8 only: a kill after step 5's line lands in step 6 or 7, never in a checkpoint's
    // save (which has no SP group to name); step 4's checkpoint is there to resume from.
    const args = shortRun(tmp, 8, 4, ["cluster.nodes[0].executor=torch-cpu", "training.on_failure=stop"]);
    const r = await killRankAt([CONFIG, ...args], dir, "step 5/8", 120_000, 2);
    assertEquals(r.code, 2, r.out + r.err);
    assertIncludes(
      r.err,
      "failed: rank 2: executor killed by signal KILL",
      "cause: node 0 (localhost)",
      "rank 2 (device 2, ",
      "SP group of degree",
      "with sequences",
      "run stopped (training.on_failure: stop)",
      `--resume ${await Deno.realPath(dir)}`,
    );
    assertEquals(await leftAlive(await allExecutorPids(dir), 15_000), []);
  },
});

Deno.test({
  name: "launch and profile on torch-cpu: a Python without torch is one clear error naming host, Python and the fix",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const bare = await pythonWithoutTorch(tmp);
    const dir = `${tmp}/no-torch`;
    const r = await launchCli([CONFIG, ...FAST, "--set", `cluster.nodes[0].python=${bare}`, "--run-dir", dir]);
    assertEquals(r.code, 1, r.out + r.err);
    assertIncludes(
      r.err,
      "node 0 (localhost): executor torch-cpu needs PyTorch, but",
      `cluster.nodes[0].python: ${bare}) on localhost has no torch`,
      "-m pip install torch==2.13.0` (a CPU wheel)",
    );
    assert(!/^\s+at /m.test(r.err), `no stack trace:\n${r.err}`);
    assert(!r.out.includes("step 1/"), "no step ran");
    // The same at the start of `deno task profile`.
    const prof = await runCli("profile", [
      CONFIG,
      "--quick",
      "--out",
      `${tmp}/no-torch-profile.json`,
      "--run-dir",
      `${tmp}/no-torch-profile`,
      ...FAST,
      "--set",
      `cluster.nodes[0].python=${bare}`,
    ]);
    const perr = prof.err + prof.out;
    assertEquals(prof.code, 1, perr);
    assertIncludes(perr, `cluster.nodes[0].python: ${bare}) on localhost has no torch`, "pip install torch==2.13.0");
    assert(!/^\s+at /m.test(perr), `no stack trace:\n${perr}`);
  },
});

/**
 * Runs each plan on a 2-rank torch-cpu pool (gpt-tiny with 1 attention head, synthetic tokens) and returns what each
 * step ended with; a pool that a refusal left failed is replaced for the next plan.
 */
async function runPlans(plans: ExecutorStepPlan[]): Promise<string[]> {
  const config = await loadConfig(`${REPO_ROOT}/${CONFIG}`, [
    "cluster.nodes[0].executor=torch-cpu",
    "cluster.nodes[0].devices=2",
    "model.max_seq=64",
    "model.heads=1",
  ]);
  const out: string[] = [];
  let cluster: ClusterSession | undefined, pool: ExecutorPool | undefined;
  const stop = async () => {
    pool?.stop();
    await cluster?.shutdown("test over");
  };
  try {
    for (const plan of plans) {
      if (!pool || pool.failed) {
        await stop();
        cluster = await ClusterSession.launch(config, { runId: "bad-plan", runDir: `${tmp}/pool` });
        assertEquals(cluster.failures.map((f) => f.error), []);
        pool = ExecutorPool.create(cluster, { config });
        await pool.start();
      }
      // Every rank checks the whole plan: after a refusal, let the other ranks' refusals of it arrive first.
      let errors = 0;
      const off = cluster!.sessions[0].on((ev) => {
        if (ev.type === "from_executor" && ev.msg.type === "error") errors++;
      });
      out.push(await pool.step(plan, 60_000).then(() => "accepted", (e) => (e as Error).message));
      if (!pool.failed && errors > 0) await eventually(() => errors >= pool!.worldSize, 10_000);
      off();
    }
  } finally {
    await stop();
  }
  return out;
}

const seq = (id: number, length: number) => ({ id, offset: id * 100, length });

Deno.test({
  name: "torch-cpu executors refuse a bad plan with the reason: a rank in no group, a degree not dividing the heads",
  ignore: !torch.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const [missing, heads, good] = await runPlans([
      {
        step: 1,
        lr: 1e-3,
        globalTokens: 16,
        microBatches: [{ groups: [{ degree: 1, ranks: [0], sequences: [seq(0, 16)] }] }],
      },
      // 1 attention head: SP degree 2 cannot split it.
      {
        step: 1,
        lr: 1e-3,
        globalTokens: 32,
        microBatches: [{ groups: [{ degree: 2, ranks: [0, 1], sequences: [seq(0, 32)] }] }],
      },
      // And a good plan still runs afterwards.
      {
        step: 1,
        lr: 1e-3,
        globalTokens: 30,
        microBatches: [{
          groups: [{ degree: 1, ranks: [0], sequences: [seq(0, 16)] }, {
            degree: 1,
            ranks: [1],
            sequences: [seq(1, 16)],
          }],
        }],
      },
    ]);
    assertIncludes(missing, "rank(s) 1 are in no group");
    assertIncludes(heads, "SP degree 2 does not divide the model's 1 attention heads");
    assertEquals(good, "accepted");
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});
