// Hosts whose sshd has no `Subsystem sftp` (common on hardened hosts): the bootstrap uploads Deno and the bundles
// over an exec channel (temporary file, sha256 checked there, renamed) into the same cache, and `deno task nodes`
// and `deno task launch` work on them.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { TWO_NODES_OF_TWO, writeTrainingConfig } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { ClusterSession } from "../../orchestrator/cluster/cluster_session.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { launchCli, ledger, nodesCli } from "../run/launch_harness.ts";

const FAKE = `${REPO_ROOT}/tests/agents/fixtures/fake_executor.ts`;
const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the no-SFTP test-host tests: ${can.reason}`);

Deno.test({
  name: "hosts without SFTP: uploads over an exec channel, verified; nodes and launch work",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // Under /root, which every test host hides behind its own home, so the dataset must be copied (a HOME elsewhere,
    // e.g. under /tmp, would be visible to the hosts at the same path and skip the copy).
    const home = await Deno.makeTempDir({ dir: "/root", prefix: ".flexsp-nosftp-" });
    // Host 0: no SFTP and no Deno (so the Deno binary itself goes over the exec channel); host 1: no SFTP.
    const th = await startTestHosts({ count: 2, deno: { 0: "missing" }, sftp: { 0: false, 1: false } });
    try {
      const sshdConf = await Deno.readTextFile(`${th.dir}/h1/sshd.conf`);
      assert(!/Subsystem/.test(sshdConf), "the test host has no SFTP subsystem");
      const base = await th.writeConfig({ devices: 2, executor: "cpu", heartbeatTimeoutS: 3 });

      await t.step("cold bootstrap uploads Deno and the bundles without SFTP; a warm one uploads nothing", async () => {
        const config = await loadConfig(base);
        const c1 = await ClusterSession.launch(config, { runId: "n1", runDir: `${th.dir}/run`, executorEntry: FAKE });
        try {
          assertEquals(c1.failures.map((f) => f.error), []);
          assertEquals(c1.nodes.map((n) => n.boot!.denoUploaded), [true, false]);
          const deno = c1.nodes[0].boot!.uploads.find((u) => u.what === "deno")!;
          assertEquals(deno.bytes, (await Deno.stat(Deno.execPath())).size);
          assertEquals(c1.nodes.map((n) => n.inventory!.hostname), ["fxh1", "fxh2"]);
        } finally {
          await c1.shutdown("step done");
        }
        const c2 = await ClusterSession.launch(config, { runId: "n2", runDir: `${th.dir}/run`, executorEntry: FAKE });
        try {
          assertEquals(c2.failures.map((f) => f.error), []);
          assertEquals(c2.nodes.map((n) => n.boot!.uploads.length), [0, 0]);
        } finally {
          await c2.shutdown("step done");
        }
        // No temporary upload file is left behind in the cache.
        const left = await new Deno.Command("find", { args: [`${th.hosts[0].home}/.cache`, "-name", "*.part-*"] })
          .output();
        assertEquals(new TextDecoder().decode(left.stdout), "");
      });

      await t.step("deno task nodes: inventory table, exit 0", async () => {
        const r = await nodesCli([base]);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.out, "fxh1", "fxh2", "all nodes match the config");
        assert(!/SFTP failed/.test(r.out + r.err), r.out + r.err);
      });

      await t.step("deno task launch: 2 steps on 4 ranks of 2 nodes, the dataset copied without SFTP", async () => {
        await buildBuiltinDataset("deno-corpus", `${home}/corpus`);
        const cfg = await writeTrainingConfig(base, `${th.dir}/launch.yaml`, {
          maxSeq: 256,
          dataset: `${home}/corpus`,
          globalBatch: 8,
          steps: 2,
          constants: TWO_NODES_OF_TWO,
        });
        const r = await launchCli([cfg, "--run-dir", `${th.dir}/launch`]);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.err, "copying the dataset", "4 executors ready on 2 node(s)");
        const recs = await ledger(`${th.dir}/launch`);
        assertEquals(recs.map((x) => x.step), [1, 2]);
        assert(recs.every((x) => Number.isFinite(x.loss)), `losses ${recs.map((x) => x.loss)}`);
      });
      assertEquals(await th.waitNoStrays(10_000), "");
    } finally {
      await th.close();
      await Deno.remove(home, { recursive: true }).catch(() => {});
    }
  },
});
