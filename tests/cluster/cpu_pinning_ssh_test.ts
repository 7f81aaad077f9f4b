// cpu_pinning from the cluster config to a running executor on an SSH test host: the config's key reaches the
// bundled agent in its hello, the agent pins each executor to its block of the host's CPUs, and the kernel's
// affinity of the running process (Cpus_allowed_list) is that block.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { ClusterSession } from "../../orchestrator/cluster/cluster_session.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import type { AgentEvent } from "../../core/protocol.ts";
import { autoCpuSets, formatCpuList, ownCpus, processCpus } from "../../core/cpu_list.ts";

/** The kernel's CPU affinity of a running process, as a CPU list. */
const affinity = (pid: number) => formatCpuList(processCpus(pid) ?? []);
import { assert, assertEquals, eventually } from "../assert.ts";

const FAKE = `${REPO_ROOT}/tests/agents/fixtures/fake_executor.ts`;
const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the SSH cpu_pinning test: ${can.reason}`);

Deno.test({
  name: "cpu_pinning: auto on an SSH test host pins each executor to its own block of the host's CPUs",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const th = await startTestHosts({ count: 1 });
    try {
      const config = await loadConfig(await th.writeConfig({ devices: 2, executor: "cpu", cpuPinning: "auto" }));
      assertEquals(config.cluster.nodes[0].cpuPinning, "auto");
      const cluster = await ClusterSession.launch(config, {
        runId: "pin",
        runDir: `${th.dir}/run`,
        executorEntry: FAKE,
      });
      try {
        assertEquals(cluster.failures.map((f) => f.error), []);
        const session = cluster.sessions[0];
        session.send({ type: "spawn", executors: [0, 1].map((d) => ({ rank: d, device: d, kind: "cpu" })) });
        const spawned = await session.waitFor(
          (ev: AgentEvent): ev is Extract<AgentEvent, { type: "spawned" }> => ev.type === "spawned",
          20000,
          "spawned",
        );
        // The test host shares this machine's CPUs (a network namespace, not a CPU one).
        const want = autoCpuSets(ownCpus(), 2).map(formatCpuList);
        assertEquals(spawned.executors.map((e) => [e.cpus, e.pinned]), want.map((w) => [w, true]));
        for (const e of spawned.executors) {
          const ok = await eventually(() => affinity(e.pid) === want[e.device], 5000);
          assert(ok, `rank ${e.rank} (pid ${e.pid}) runs on ${affinity(e.pid)}, expected ${want[e.device]}`);
        }
      } finally {
        await cluster.shutdown("test over");
      }
    } finally {
      await th.close();
    }
  },
});
