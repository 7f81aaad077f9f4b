// `cluster.scheduler: slurm` on a real Slurm cluster (tests/hosts/slurm_cluster.ts: slurmctld plus 2 slurmd in their
// own network namespaces, 2 and 4 fake GPUs as GRES): `deno task submit` writes and submits the sbatch script; the job
// trains on every node of its allocation (agents via srun, data plane by NodeAddr); a heterogeneous allocation (2 and
// 4 devices) trains; scancel mid-run leaves a checkpoint and the resubmitted script resumes to the same losses; a
// requeue resumes by itself; a node Slurm marks down mid-run is handled by training.on_failure (elastic).

import { canStartSlurm, type SlurmCluster, startSlurmCluster } from "../hosts/slurm_cluster.ts";
import { trainingYaml } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { assert, assertEquals, assertIncludes, eventually } from "../assert.ts";
import { ledger, manifestOf, runCli } from "../run/launch_harness.ts";

const can = canStartSlurm();
if (!can.ok) console.log(`skipping the Slurm tests: ${can.reason}`);

async function submit(sc: SlurmCluster, args: string[]): Promise<{ jobId: string; out: string }> {
  const out = await runCli("submit", args, sc.env);
  const text = out.out + out.err;
  assertEquals(out.code, 0, text);
  const jobId = text.match(/submitted job (\d+)/)?.[1];
  assert(jobId, `no job id in: ${text}`);
  return { jobId, out: text };
}

async function jobLog(dir: string, jobId: string): Promise<string> {
  return await Deno.readTextFile(`${dir}/slurm-${jobId}.out`).catch(() => "");
}

async function waitLog(dir: string, jobId: string, text: string, ms: number): Promise<void> {
  const ok = await eventually(async () => (await jobLog(dir, jobId)).includes(text), ms);
  if (!ok) {
    throw new Error(`job ${jobId} did not print ${JSON.stringify(text)} in ${ms} ms:\n${await jobLog(dir, jobId)}`);
  }
}

Deno.test({
  name: "Slurm: sbatch trains on all nodes, heterogeneous GRES, scancel + resubmit, requeue, node down",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const home = await Deno.makeTempDir({ prefix: "fxslurm-data-" });
    const sc = await startSlurmCluster({ gpus: [2, 4] });
    try {
      await buildBuiltinDataset("deno-corpus", `${home}/corpus`);
      const cfg = `${sc.dir}/slurm.yaml`;
      await Deno.writeTextFile(
        cfg,
        [
          "name: slurmtest",
          "cluster:",
          "  scheduler: slurm",
          "  executor: cpu",
          "  connect_timeout_s: 5",
          "  heartbeat_timeout_s: 3",
          "model:",
          "  preset: gpt-tiny",
          ...trainingYaml({
            maxSeq: 256,
            dataset: `${home}/corpus`,
            globalBatch: 8,
            steps: 6,
            training: { checkpoint_interval: 0, resume: "auto" },
            planner: { zero_stage: 0, milp: "none", deterministic: true },
            constants: {
              alpha1: "2.0e-6",
              beta1: 2,
              bandwidth: "{ intra: { 2: 1.0, 4: 0.8 }, inter: { 2: 0.5, 4: 0.4, 8: 0.3 } }",
            },
          }),
          "",
        ].join("\n"),
      );

      let ref: number[] = [];
      await t.step(
        "submit: one device on each of 2 nodes, trains on both (addresses as Slurm knows them)",
        async () => {
          const dir = `${sc.dir}/ref`;
          const { jobId, out } = await submit(sc, [cfg, "--nodes", "2", "--gpus-per-node", "1", "--run-dir", dir]);
          assertIncludes(out, `scancel ${jobId}`, `squeue -j ${jobId}`);
          const script = await Deno.readTextFile(`${dir}/job.sbatch`);
          assertIncludes(
            script,
            "#SBATCH --nodes=2",
            "#SBATCH --gpus-per-node=1",
            "#SBATCH --requeue",
            "--signal=B:TERM@",
          );
          const state = await sc.waitJob(jobId, 120_000);
          const log = await jobLog(dir, jobId);
          assertEquals(state, "COMPLETED", log);
          assertIncludes(
            log,
            `node 0 (fxn1, ${sc.nodes[0].addr})`,
            `node 1 (fxn2, ${sc.nodes[1].addr})`,
            "done: steps 1-6",
          );
          const recs = await ledger(dir);
          assertEquals(recs.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
          ref = recs.map((r) => r.loss);
          assertEquals((await manifestOf(dir, 6)).parts.map((p) => p.host), [sc.nodes[0].addr, sc.nodes[1].addr]);
        },
      );

      await t.step("a heterogeneous allocation (2 and 4 GPUs) trains on 6 devices", async () => {
        const dir = `${sc.dir}/het`;
        const { jobId } = await submit(sc, [
          cfg,
          "--nodes",
          "2",
          "--run-dir",
          dir,
          "--set",
          "training.steps=2",
          "--",
          "--gpus=6",
        ]);
        const state = await sc.waitJob(jobId, 150_000);
        const log = await jobLog(dir, jobId);
        assertEquals(state, "COMPLETED", log);
        assertIncludes(log, "6 executors ready on 2 node(s)", "done: steps 1-2");
        const hosts = (await manifestOf(dir, 2)).parts.map((p) => p.host);
        assertEquals(hosts, [...Array(2).fill(sc.nodes[0].addr), ...Array(4).fill(sc.nodes[1].addr)]);
      });

      await t.step(
        "scancel mid-run leaves a checkpoint; the resubmitted script resumes to the same losses",
        async () => {
          const dir = `${sc.dir}/cancel`;
          const { jobId } = await submit(sc, [cfg, "--nodes", "2", "--gpus-per-node", "1", "--run-dir", dir]);
          await waitLog(dir, jobId, "step 3/6", 120_000);
          await sc.client(["scancel", jobId]);
          await sc.waitJob(jobId, 60_000);
          const log = await jobLog(dir, jobId);
          assertIncludes(log, "SIGTERM: finishing the current step, then saving a checkpoint", "Resume with:");
          const stopped = log.match(/stopped after step (\d+); the last checkpoint is step (\d+)/);
          assert(stopped, log);
          assertEquals(stopped[1], stopped[2], "a checkpoint of the last finished step");
          assert(Number(stopped[1]) < 6, log);
          const again = (await sc.client(["sbatch", "--parsable", `${dir}/job.sbatch`])).trim();
          assertEquals(await sc.waitJob(again, 120_000), "COMPLETED", await jobLog(dir, again));
          assertIncludes(await jobLog(dir, again), "--resume", `resumed from checkpoint step-0000000${stopped[1]}`);
          assertEquals((await ledger(dir)).map((r) => r.loss), ref, "the same losses as without the cancel");
        },
      );

      await t.step("scontrol requeue: the job runs again and resumes by itself", async () => {
        const dir = `${sc.dir}/requeue`;
        const { jobId } = await submit(sc, [cfg, "--nodes", "2", "--gpus-per-node", "1", "--run-dir", dir]);
        await waitLog(dir, jobId, "step 3/6", 120_000);
        await sc.client(["scontrol", "requeue", jobId]);
        // Slurm holds a requeued batch job back for 120 s (BeginTime); let it start as soon as it is pending.
        assertEquals(await sc.waitJob(jobId, 60_000, (s) => s === "PENDING"), "PENDING");
        await sc.client(["scontrol", "update", `JobId=${jobId}`, "StartTime=now"]);
        const state = await sc.waitJob(jobId, 180_000, (s) => s === "COMPLETED" || s === "FAILED" || s === "CANCELLED");
        const log = await jobLog(dir, jobId);
        assertEquals(state, "COMPLETED", log);
        assertIncludes(log, "(restart 1)", "resumed from checkpoint");
        assertEquals((await ledger(dir)).map((r) => r.loss), ref, "the same losses as without the requeue");
      });

      await t.step("a node Slurm marks down mid-run: on_failure elastic continues on the node left", async () => {
        const dir = `${sc.dir}/down`;
        const { jobId } = await submit(sc, [
          cfg,
          "--nodes",
          "2",
          "--gpus-per-node",
          "1",
          "--run-dir",
          dir,
          "--set",
          "training.on_failure=elastic",
          "--set",
          "training.checkpoint_interval=2",
          "--",
          "--no-kill",
        ]);
        await waitLog(dir, jobId, "step 3/6", 120_000);
        await sc.killNode(sc.nodes[1]);
        const state = await sc.waitJob(jobId, 150_000);
        const log = await jobLog(dir, jobId);
        assertEquals(state, "COMPLETED", log);
        assertIncludes(log, `node 1 (fxn2, ${sc.nodes[1].addr})`, "elastic restart 1/3: without", "done: steps");
        let nodes = "";
        const down = await eventually(async () => {
          nodes = await sc.client(["sinfo", "-h", "-N", "-n", "fxn2", "-o", "%t"]);
          return /down/.test(nodes);
        }, 45_000);
        // Slurm shows a node it cannot reach as not responding (`*`) first, then down (after SlurmdTimeout).
        assert(down || /\*/.test(nodes), `Slurm marks fxn2 down or not responding: ${nodes}`);
        assertEquals((await ledger(dir)).at(-1)!.step, 6);
      });
    } finally {
      await sc.close();
      await Deno.remove(home, { recursive: true }).catch(() => {});
    }
  },
});
