// 1,024 simulated ranks (kernels/sim_executor.ts) on 32 SSH test hosts of 32 devices each: the control plane at the
// planner's scale without models. Launch, steps, then one host's sshd killed mid-run: the run stops with one report
// naming that host, no stack traces. (Timings of this path are in `deno task bench --only scale`.)

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { ONE_DEVICE_NODES, writeTrainingConfig } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { killSshd, ledger, startLaunch } from "./launch_harness.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the 1,024-rank test: ${can.reason}`);

Deno.test({
  name: "1,024 simulated ranks on 32 hosts: steps, one host's sshd killed mid-run, one report naming it",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const data = await Deno.makeTempDir({ prefix: "fxsim-data-" });
    const th = await startTestHosts({ count: 32 });
    try {
      await buildBuiltinDataset("deno-corpus", `${data}/corpus`);
      const base = await th.writeConfig({ devices: 32, executor: "sim", heartbeatTimeoutS: 10, connectTimeoutS: 20 });
      const cfg = await writeTrainingConfig(base, `${th.dir}/sim.yaml`, {
        maxSeq: 64,
        dataset: `${data}/corpus`,
        globalBatch: 1024,
        steps: 1000,
        training: { simulate: "true", checkpoint_interval: 0, on_failure: "stop" },
        planner: { zero_stage: 0, milp: "none", deterministic: true },
        constants: ONE_DEVICE_NODES,
      });
      const victim = th.hosts[7];
      const dir = `${th.dir}/run`;
      const p = startLaunch([cfg, "--run-dir", dir]);
      await p.waitWhileRunning("step    2/1000", 240_000);
      await killSshd(th, victim);
      const r = await p.finish();
      assertEquals(r.code, 2, r.out + r.err);
      assertIncludes(r.err, "1024 executors ready on 32 node(s)", `cause: node 7 (${victim.ip})`, "Resume with:");
      assertEquals(r.err.match(/^error:/gm)?.length, 1, r.err);
      assert(!/^\s+at /m.test(r.err), `no stack trace:\n${r.err}`);
      const steps = (await ledger(dir)).map((x) => x.step);
      assert(steps.length >= 2 && steps[0] === 1, `steps ran: ${steps}`);
    } finally {
      await th.close();
      await Deno.remove(data, { recursive: true }).catch(() => {});
    }
  },
});
