// `deno task launch` on 2 SSH test hosts (network namespaces with their own sshd, 2 CPU devices each, so groups of 4
// span both nodes): the dataset is copied to hosts that cannot see it, and an agent SIGKILLed mid-step stops the step,
// is named, and under policy `stop` the run exits with the resume command (the resume, past a damaged checkpoint part
// on a node, then matches an uninterrupted run bit for bit), under `restart` the run relaunches and resumes by itself
// with the same losses.

import { canCreateTestHosts, startTestHosts, type TestHost, type TestHosts } from "../hosts/test_hosts.ts";
import { TWO_NODES_OF_TWO, writeTrainingConfig } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { launchCli, ledger, manifestOf, startLaunch } from "./launch_harness.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the SSH launch tests: ${can.reason}`);

/** The agent process of a test host (its bundled agent script), if one runs. */
async function agentPid(th: TestHosts, h: TestHost): Promise<number | undefined> {
  for (const pid of await th.pids(h)) {
    const cmd = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
    if (cmd.includes("/bundles/agent-")) return pid;
  }
  return undefined;
}

Deno.test({
  name: "launch over SSH: agent killed mid-step, policies stop (then --resume) and restart, exact losses",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // A dataset under /root: every test host has its own /root, so it is copied to them (whatever HOME is).
    const home = await Deno.makeTempDir({ dir: "/root", prefix: ".flexsp-launch-test-" });
    const th = await startTestHosts({ count: 2 });
    try {
      await buildBuiltinDataset("deno-corpus", `${home}/corpus`);
      const base = await th.writeConfig({ devices: 2, executor: "cpu", heartbeatTimeoutS: 3 });
      const cfg = await writeTrainingConfig(base, `${th.dir}/launch.yaml`, {
        maxSeq: 256,
        dataset: `${home}/corpus`,
        globalBatch: 8,
        steps: 8,
        training: { checkpoint_interval: 2 },
        planner: { deterministic: true },
        constants: TWO_NODES_OF_TWO,
      });
      const policy = (p: string) => ["--set", `training.on_failure=${p}`];

      let ref: { losses: number[]; params: string[] } | undefined;
      await t.step("uninterrupted: 8 steps on 4 ranks of 2 nodes; the dataset is copied to both hosts", async () => {
        const r = await launchCli([cfg, ...policy("stop"), "--run-dir", `${th.dir}/ref`]);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.err, `node 0 (${th.hosts[0].ip}): copying the dataset`, "4 executors ready on 2 node(s)");
        const recs = await ledger(`${th.dir}/ref`);
        assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6, 7, 8]);
        ref = {
          losses: recs.map((x) => x.loss),
          params: (await manifestOf(`${th.dir}/ref`, 8)).parts.map((p) => p.sha256),
        };
        assertEquals((await manifestOf(`${th.dir}/ref`, 8)).parts.map((p) => p.host), [
          th.hosts[0].ip,
          th.hosts[0].ip,
          th.hosts[1].ip,
          th.hosts[1].ip,
        ]);
        assertEquals(await th.waitNoStrays(10_000), "");
      });

      await t.step(
        "policy stop: the lost node is named, exit 2 with the resume command; the resume is exact",
        async () => {
          const dir = `${th.dir}/stop`;
          const p = startLaunch([cfg, ...policy("stop"), "--run-dir", dir]);
          await p.waitFor("step 5/8", 90_000);
          const pid = await agentPid(th, th.hosts[1]);
          assert(pid, "the agent of host 2 runs");
          Deno.kill(pid, "SIGKILL");
          const r = await p.finish();
          assertEquals(r.code, 2, r.out + r.err);
          assertIncludes(
            r.err,
            `node lost: the agent was killed by signal KILL`,
            `cause: node 1 (${th.hosts[1].ip}), hostname fxh2: rank 2 (device 0`,
            "rank 3 (device 1",
            "with sequences",
            "run stopped (training.on_failure: stop); the last checkpoint is step 4. Resume with:",
            "--resume ",
          );
          assertEquals(await th.waitNoStrays(15_000), "");
          // Rank 2's part of checkpoint 4 lives on host 2 (in its own /root), out of the orchestrator's reach: damage
          // it there; the executor that loads it checks it against the manifest and refuses it.
          const part = (await manifestOf(dir, 4)).parts.find((x) => x.rank === 2)!;
          assertEquals([part.transport, part.host], ["ssh", th.hosts[1].ip]);
          const outside = part.path.replace(/^\/root\//, `${th.hosts[1].home}/`);
          const bytes = await Deno.readFile(outside);
          bytes[bytes.length - 3] ^= 1;
          await Deno.writeFile(outside, bytes);
          const resumed = await launchCli([cfg, ...policy("stop"), "--resume", dir]);
          assertEquals(resumed.code, 0, resumed.err);
          assertIncludes(
            resumed.err,
            "checkpoint step-00000004 refused by rank 2: load: ",
            "resumed from checkpoint step-00000002",
          );
          const recs = await ledger(dir);
          assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6, 7, 8]);
          assertEquals(recs.map((x) => x.loss), ref!.losses, "bit-identical losses");
          assertEquals((await manifestOf(dir, 8)).parts.map((p) => p.sha256), ref!.params, "identical parameters");
        },
      );

      await t.step("policy restart: relaunched and resumed by itself, the same losses", async () => {
        const dir = `${th.dir}/restart`;
        const p = startLaunch([cfg, ...policy("restart"), "--run-dir", dir]);
        await p.waitFor("step 3/8", 90_000);
        const pid = await agentPid(th, th.hosts[0]);
        assert(pid, "the agent of host 1 runs");
        Deno.kill(pid, "SIGKILL");
        const r = await p.finish();
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.err, `node 0 (${th.hosts[0].ip})`, "node lost", "restart 1/3: relaunching");
        const recs = await ledger(dir);
        assertEquals(recs.map((x) => x.loss), ref!.losses, "bit-identical losses");
        assertEquals((await manifestOf(dir, 8)).parts.map((p) => p.sha256), ref!.params, "identical parameters");
        assertEquals(await th.waitNoStrays(15_000), "");
      });
    } finally {
      await th.close();
      await Deno.remove(home, { recursive: true }).catch(() => {});
    }
  },
});
