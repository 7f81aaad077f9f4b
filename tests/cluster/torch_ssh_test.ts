// The PyTorch executor on an SSH node (a test host: its own network namespace, sshd and /root): the bootstrap
// uploads the kernels/torch package once (named by content hash), the inventory reports the node's Python as the
// uploaded probe sees it, and a node whose Python has no torch is one clear problem before any executor starts.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { nodesCli } from "../run/launch_harness.ts";

const can = canCreateTestHosts();
const skip = can.ok ? undefined : `skipping the torch SSH test: ${can.reason}`;
if (skip) console.log(skip);

interface Report {
  nodes: { ok: boolean; executor: string; uploads: { what: string }[]; python?: { torch: string | null } }[];
  problems: string[];
}

/** The system Python a test host sees (its /root is its own, so a Python under /root is not there). */
const SYSTEM_PYTHON = "/usr/bin/python3";
const systemHasTorch = await new Deno.Command(SYSTEM_PYTHON, { args: ["-c", "import torch"], stderr: "null" }).output()
  .then((o) => o.success, () => false);

Deno.test({
  name: "torch-cpu over SSH: the package is uploaded once by hash and probes the node's Python from there; a " +
    "Python without torch is one problem (with torch: executors start from the package)",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const th = await startTestHosts({ count: 1 });
    try {
      const cfg = await th.writeConfig({ devices: 2, executor: "torch-cpu", nodeExtra: `python: ${SYSTEM_PYTHON}` });
      const cold = await nodesCli([cfg, "--json", "--pings", "2", "--executors"]);
      const a: Report = JSON.parse(cold.out);
      assert(
        (a.nodes[0].uploads ?? []).some((u) => u.what === "torch"),
        `the torch package was uploaded: ${cold.out}${cold.err}`,
      );
      const py = a.nodes[0].python as { python: string | null; executable: string | null; torch: string | null };
      assert(/^3\.\d+/.test(py.python ?? ""), `the probe ran on the node from the uploaded package: ${cold.out}`);
      assertEquals(py.executable, SYSTEM_PYTHON);
      if (systemHasTorch) {
        assertEquals(cold.code, 0, cold.out + cold.err);
        assertIncludes(cold.err, "every executor is ready");
      } else {
        assertEquals(cold.code, 1, cold.out + cold.err);
        assertEquals(py.torch, null);
        assertEquals(a.problems.length, 1, cold.out);
        assertIncludes(
          a.problems[0],
          `node 0 (${th.hosts[0].ip}): executor torch-cpu needs PyTorch, but ${SYSTEM_PYTHON} (Python 3.`,
          `on ${th.hosts[0].ip} has no torch (No module named 'torch')`,
          `\`${SYSTEM_PYTHON} -m pip install torch==2.13.0\``,
        );
        assertIncludes(cold.err, "not starting executors: fix the problems below first");
      }
      const warm = await nodesCli([cfg, "--json", "--pings", "2"]);
      assertEquals((JSON.parse(warm.out) as Report).nodes[0].uploads, [], "a warm start uploads nothing");
      assertEquals(await th.waitNoStrays(10_000), "");
    } finally {
      await th.close();
    }
  },
});
