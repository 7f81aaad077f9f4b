// Impossible sizes are refused before any executor starts, against the node's inventory (here: more executors than
// the node's memory holds), and failure reports stay readable at any rank count: a lost node of 100,000 ranks is
// one short line of ranges, not a list of every rank.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { failureReport } from "../../orchestrator/run/failure_report.ts";
import type { Fault, RankPlace } from "../../orchestrator/cluster/fault.ts";
import type { NodeLaunch } from "../../orchestrator/cluster/cluster_session.ts";
import { launchCli, shortRun } from "./launch_harness.ts";

Deno.test("a node lost with 100,000 ranks: the report names them as ranges on short lines", () => {
  const node = { name: "node 0 (h0)", config: { host: "h0" } } as unknown as NodeLaunch;
  const places: RankPlace[] = Array.from({ length: 100_000 }, (_, r) => ({ rank: r, node, device: r, kind: "cpu" }));
  const lost: Fault = { kind: "node_lost", node, reason: "node lost: boom", detail: "boom", atMs: 0 };
  const report = failureReport("step 3", [lost], places);
  assertIncludes(report, "cause: node 0 (h0), hostname h0: 100000 ranks 0-99999 (devices 0-99999, cpu)");
  assert(report.length < 300, `${report.length} characters`);
  const few = failureReport("step 3", [lost], places.slice(0, 2));
  assertIncludes(few, "rank 0 (device 0, cpu), rank 1 (device 1, cpu)");
});

Deno.test({
  name: "devices=100000 on one machine: refused before any executor starts, naming the node's memory",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-sizes-" });
    try {
      const r = await launchCli([
        "configs/local.yaml",
        ...shortRun(tmp, 2, 1, ["cluster.nodes[0].devices=100000"]),
        "--run-dir",
        `${tmp}/run`,
      ]);
      assertEquals(r.code, 1, r.err);
      assertIncludes(
        r.err,
        "devices: 100000 cpu executors need at least 5000 GB of host memory",
        "set devices to at most",
      );
      assert(!r.err.includes("executors ready"), r.err);
      assertEquals(await Deno.stat(`${tmp}/run/logs`).then((s) => s.isDirectory, () => false), false, "no executor");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
