// 32 SSH test hosts (one CPU device each, gpt-tiny on 16-token sequences): launch and a few steps; one host's sshd
// killed mid-run ends the run with one report naming that host; then a wave (sshd gone on five hosts at once) fails
// the next launch with ONE report that groups the five by their common reason and names every one, no stack traces.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { ONE_DEVICE_NODES, writeTrainingConfig } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { killSshd, launchCli, ledger, startLaunch } from "./launch_harness.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the 32-host test: ${can.reason}`);

Deno.test({
  name: "32 hosts: launch and steps, one sshd killed mid-run, a wave of five at launch: one report each",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const data = await Deno.makeTempDir({ prefix: "fxscale-data-" });
    const th = await startTestHosts({ count: 32 });
    try {
      // Outside /root (each host has its own): every host sees the dataset, nothing is copied.
      await buildBuiltinDataset("deno-corpus", `${data}/corpus`);
      const base = await th.writeConfig({ devices: 1, executor: "cpu", heartbeatTimeoutS: 10, connectTimeoutS: 20 });
      const cfg = await writeTrainingConfig(base, `${th.dir}/scale.yaml`, {
        maxSeq: 16,
        dataset: `${data}/corpus`,
        globalBatch: 32,
        steps: 3,
        training: { checkpoint_interval: 2, on_failure: "stop" },
        planner: { zero_stage: 0, milp: "none", deterministic: true },
        constants: ONE_DEVICE_NODES,
      });
      const victim = th.hosts[4];

      await t.step("launch on 32 hosts, steps, one host's sshd killed: one report naming it", async () => {
        const dir = `${th.dir}/run1`;
        const p = startLaunch([cfg, "--run-dir", dir]);
        await p.waitWhileRunning("step 1/3", 240_000);
        await killSshd(th, victim);
        const r = await p.finish();
        assertEquals(r.code, 2, r.out + r.err);
        assertIncludes(r.err, "32 executors ready on 32 node(s)", `cause: node 4 (${victim.ip})`, "Resume with:");
        assertEquals(r.err.match(/^error:/gm)?.length, 1, r.err);
        assert(!/^\s+at /m.test(r.err), `no stack trace:\n${r.err}`);
        const steps = (await ledger(dir)).map((x) => x.step);
        assert(steps.length >= 1 && steps[0] === 1, `steps ran: ${steps}`);
      });

      await t.step("a wave: sshd gone on five hosts, the launch fails with one grouped report", async () => {
        const wave = [victim, ...th.hosts.slice(20, 24)];
        for (const h of wave) await killSshd(th, h);
        const r = await launchCli([cfg, "--run-dir", `${th.dir}/run2`]);
        assertEquals(r.code, 2, r.out + r.err);
        assertIncludes(
          r.err,
          "error: launch failed on 5 of 32 node(s):",
          "5 nodes: cannot connect to <host>:22: connection refused",
          wave.map((h) => `node ${h.index} (${h.ip})`).join(", "),
        );
        assertEquals(r.err.match(/launch failed/g)?.length, 1, r.err);
        assert(!/FAILED|^\s+at /m.test(r.err), `one report, no per-node lines or stack traces:\n${r.err}`);
      });
    } finally {
      await th.close();
      await Deno.remove(data, { recursive: true }).catch(() => {});
    }
  },
});
