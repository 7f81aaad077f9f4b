// `deno task profile` over real SSH on test hosts (network namespaces, tc-shaped links): the network profile tells
// inside-a-host from across-hosts, plans of short sequences then stay inside one host (and would not with the
// opposite network), a host with a slower link is flagged in the node-pair matrix, and an unreachable host stops the
// profile with one clear message.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { runProfile } from "../../orchestrator/profile/profiler.ts";
import { defaultGrid } from "../../orchestrator/profile/compute_grid.ts";
import { storedToConstants } from "../../orchestrator/config/profile_file.ts";
import { formatProfileSummary } from "../../orchestrator/profile/report_text.ts";
import type { StoredConstants } from "../../orchestrator/config/profile_doc.ts";
import { plannerSetup } from "../../orchestrator/planner/from_config.ts";
import { planStep } from "../../orchestrator/planner/plan_step.ts";
import type { Config } from "../../orchestrator/config/types.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { cli, noStackTrace } from "./fixtures.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the SSH profile tests: ${can.reason}`);

/** The groups of a plan as `degree[X if spanning hosts]:lengths`. */
async function planGroups(config: Config, constants: StoredConstants, lengths: number[]): Promise<string[]> {
  const setup = plannerSetup(config, storedToConstants(constants));
  const plan = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, strategy: "flexsp" });
  return plan.microBatches.flatMap((m) =>
    m.groups.filter((g) => g.sequences.length).map((g) =>
      `${g.degree}${g.spansNodes ? "X" : ""}:${g.lengths.join("+")}`
    )
  );
}

Deno.test({
  name: "profile over SSH: shaped links between hosts, plans keep short sequences inside a host, slow links flagged",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const th = await startTestHosts({ count: 3, shaping: { rateMbit: 1000 } });
    try {
      // The third host's link is ten times slower than the others (egress from its namespace).
      const h3 = th.hosts[2];
      const tc = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          h3.netns,
          "tc",
          "qdisc",
          "replace",
          "dev",
          "eth0",
          "root",
          "tbf",
          "rate",
          "100mbit",
          "burst",
          "256kb",
          "latency",
          "50ms",
        ],
      }).output();
      assert(tc.success, new TextDecoder().decode(tc.stderr));
      const path = await th.writeConfig({ devices: 2, executor: "cpu", heartbeatTimeoutS: 20, connectTimeoutS: 10 });
      await Deno.writeTextFile(
        path,
        (await Deno.readTextFile(path)) + "  checkpointing: none\nplanner:\n  memory_budget_gb: 0.25\n  milp: highs\n",
      );
      const config = await loadConfig(path);
      const lines: string[] = [];
      const { doc } = await runProfile(config, {
        grid: defaultGrid(config.model.maxSeq, "quick"),
        timeoutMs: 120_000,
        say: (l) => lines.push(l),
        runDir: `${th.dir}/run`,
      });
      const log = lines.join("\n") + "\n" + formatProfileSummary(doc);
      assertEquals(doc.fingerprint.nodes.map((n) => n.hostname), ["fxh1", "fxh2", "fxh3"]);

      // The network profile sees the difference: degree 2 inside a host, degree 4 across hosts 1 and 2.
      const intra = doc.network.alltoall.find((a) => a.degree === 2 && !a.spans)!;
      const inter = doc.network.alltoall.find((a) => a.degree === 4 && a.spans)!;
      assert(intra && inter, log);
      assert(intra.gbps > 2 * inter.gbps, `inside ${intra.gbps} GB/s vs across ${inter.gbps} GB/s\n${log}`);
      // A 1 Gbit/s link (0.125 GB/s); half of a degree-4 all-to-all stays inside the host and tbf allows bursts, so
      // the per-device figure can exceed the link rate, but stays far below loopback (1-3 GB/s here).
      assert(inter.gbps < 0.35, `1 Gbit/s link measured at ${inter.gbps} GB/s per device`);
      const c = doc.constants;
      assert(c.bandwidth_gbps.intra["2"] > c.bandwidth_gbps.inter["4"], log);

      // Short sequences stay inside one host with the fitted profile. Two sequences on six devices are the telling
      // case: two groups of 2 inside hosts, or one group of 4 across hosts 1 and 2 (the same compute per device;
      // only the network differs).
      const short = [[128, 128], [64, 64], [256, 256], [64, 64, 64, 64, 64, 64, 64, 64]];
      for (const lengths of short) {
        const groups = await planGroups(config, c, lengths);
        assert(groups.every((g) => !g.includes("X")), `${lengths}: ${groups.join(" ")} spans hosts\n${log}`);
      }
      // The locality comes from the measured network: with links across hosts faster than inside, the same
      // batch does span hosts.
      const inverted = structuredClone(c);
      inverted.bandwidth_gbps.inter["4"] = 4 * c.bandwidth_gbps.intra["2"];
      assert((await planGroups(config, inverted, short[0])).some((g) => g.includes("X")), "inverted network spans");

      // The node-pair matrix: fxh3's links are the slow ones.
      const p = doc.network.p2p!;
      assertEquals(p.hosts, th.hosts.map((h) => h.ip));
      // Bandwidth decides here: the latency flag (over twice the best plus 0.5 ms) can also fire for a link that a
      // loaded test machine delays, so the pairs flagged for bandwidth are the ones asserted.
      const slowBw = p.slow.filter((s) => s.a !== s.b && s.why.includes("GB/s")).map((s) => `${s.a}-${s.b}`).sort();
      assertEquals(slowBw, ["0-2", "1-2"], log);
      assert(p.slow.some((s) => s.a === 2 && s.b === 2), `node 2 not named as all-slow\n${log}`);
      assert(p.gbps[0][1]! > 3 * p.gbps[0][2]!, `links ${JSON.stringify(p.gbps)}`);
      assertIncludes(doc.warnings.join("\n"), `every link of node 2 (${h3.ip}) is slow`);

      // An unreachable host: one clear line, nothing written.
      const out = `${th.dir}/p.json`;
      const r = await cli("profile", [
        path,
        "--quick",
        "--out",
        out,
        "--run-dir",
        `${th.dir}/run2`,
        "--set",
        `cluster.nodes[1].host=${th.unreachableIp}`,
        "--set",
        "cluster.connect_timeout_s=1.5",
      ]);
      assertEquals(r.code, 1, r.out + r.err);
      assertIncludes(
        r.err,
        `error: cannot profile: 1 of 3 node(s) did not start:\n  node 1 (${th.unreachableIp}): cannot connect to ` +
          `${th.unreachableIp}:22: no answer within 1.5 s`,
      );
      noStackTrace(r.err);
      assert(!(await Deno.stat(out).then(() => true, () => false)));
    } finally {
      await th.close();
    }
  },
});
