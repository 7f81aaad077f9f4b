// `deno task profile` on local clusters with real agents and CPU executors: a whole quick profile (compute fit,
// memory, all-to-all inside and across nodes, the node-pair matrix, the per-degree validation, the report, planned
// steps replayed into a ledger that --check reads, and plan using the result); and the failures: a device that fails
// the compute benchmark (an error, a crash), a node that cannot be reached, a node lost mid-profile.

import { assert, assertClose, assertEquals, assertIncludes } from "../assert.ts";
import { readProfile } from "../../orchestrator/config/profile_file.ts";
import { runProfile } from "../../orchestrator/profile/profiler.ts";
import { defaultGrid } from "../../orchestrator/profile/compute_grid.ts";
import { paramLayout } from "../../kernels/model.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { UserError } from "../../orchestrator/errors.ts";
import { cli, load, noStackTrace, writeLocalConfig } from "./fixtures.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Executor and agent processes of this repository still running (children of this test's runs). */
function strayProcesses(marker: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      const env = Deno.readTextFileSync(`/proc/${e.name}/environ`);
      if (env.includes(marker) && /executor_main|agents\/agent/.test(cmd)) out.push(`${e.name}: ${cmd}`);
    } catch { /* gone or not ours */ }
  }
  return out;
}

Deno.test({
  name: "profile: a local 2-node cluster end to end (quick grid), then plan and --check use the results",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxprof-local-" });
    try {
      const cfg = await writeLocalConfig(dir, { nodes: [2, 2] });
      const out = `${dir}/out/profile.json`;
      const r = await cli("profile", [cfg, "--quick", "--out", out, "--fidelity", "3", "--run-dir", `${dir}/run`]);
      assertEquals(r.code, 0, r.out + r.err);
      noStackTrace(r.out + r.err);
      // Progress on stderr, the summary on stdout.
      assertIncludes(r.err, "compute: round 1/2 done", "network: degree 2", "validation: degree 4", "fidelity: step 2");
      assertIncludes(r.out, "compute: ms = α1·Σs² + α2·Σs + β1", "held-out max err", "memory (buffers)", "node pairs");
      assertIncludes(r.out, `wrote ${out}`, `report ${dir}/out/profile.html`, "prediction check of");

      const doc = await readProfile(out);
      // Two unpinned executors per node on this machine's cores: the profile says they compete.
      assertIncludes(doc.warnings.join("\n"), "its 2 executors are not pinned and may run on the same cores");
      assertEquals(doc.fingerprint.cluster.nodes.map((n) => n.devices), [2, 2]);
      assertEquals(doc.fingerprint.nodes.map((n) => n.hostname), [Deno.hostname(), Deno.hostname()]);
      assertEquals(doc.fingerprint.nodes.flatMap((n) => n.devices).length, 4);
      const t = doc.compute.deviceTypes;
      assertEquals(t.length, 1);
      assertEquals(t[0].ranks, [0, 1, 2, 3]);
      assert(t[0].fit.r2 > 0.5 && t[0].heldOut.points > 0, `fit ${JSON.stringify(t[0].fit)}`);
      assert(doc.constants.alpha1 > 0 || doc.constants.alpha2 > 0, "a non-trivial compute model");
      // One sample per rank, point and round: 2 rounds (--quick), plus at most 2 more while the machine's load
      // changes; the profile records how many ran.
      const rounds = doc.compute.grid.repeats;
      assert(rounds >= 2 && rounds <= 4, `rounds ${rounds}`);
      assertEquals(new Set(doc.compute.samples.map((s) => s.round)).size, rounds);
      assertEquals(doc.compute.samples.length, 4 * rounds * doc.compute.grid.points.length);
      // Memory comes from buffer accounting: exact, not timing-dependent.
      const layout = paramLayout(MODEL_PRESETS["gpt-tiny"]);
      assertClose(doc.memory.modelStateMb, (16 * layout.total) / 2 ** 20, 1e-9);
      assert(doc.memory.actMbPerToken > 0.005 && doc.memory.actMbPerToken < 0.05, `act ${doc.memory.actMbPerToken}`);
      assert(doc.memory.actFit.r2 > 0.99, `memory fit R² ${doc.memory.actFit.r2}`);
      assert(doc.memory.tokenCapacity > 1000, `capacity ${doc.memory.tokenCapacity}`);
      // Network: degree 2 stays inside a node, degree 4 spans both; the pair matrix covers both nodes.
      assertEquals(doc.network.alltoall.map((a) => `${a.degree}:${a.spans}`), ["2:false", "4:true"]);
      assertEquals(Object.keys(doc.constants.bandwidth_gbps.intra), ["2"]);
      assertEquals(Object.keys(doc.constants.bandwidth_gbps.inter), ["4"]);
      const p = doc.network.p2p!;
      assertEquals(p.ranks, [0, 2]);
      assert(p.gbps.flat().every((v) => v !== null && v > 0), `matrix ${JSON.stringify(p.gbps)}`);
      assertEquals(
        doc.validation!.points.map((v) => v.degree),
        [1, 1, 2, 2, 4, 4],
      );
      // The fitted real-step terms: the step's fixed cost always (a step does an all-reduce and an optimizer step),
      // the degree-1 fit, and the planner's own plans' errors, stored and printed.
      assert(doc.constants.step_ms! > 0, `step_ms ${doc.constants.step_ms}`);
      assert(doc.validation!.degreeOne!.computeScale > 0, JSON.stringify(doc.validation!.degreeOne));
      assertEquals(doc.validation!.planned!.steps, 3);
      assert(doc.validation!.planned!.step.medianAbs >= 0, JSON.stringify(doc.validation!.planned));
      assertIncludes(r.out, "the planner's own plans, 3 step(s) run: step time median |error|");
      const html = await Deno.readTextFile(`${dir}/out/profile.html`);
      assert((html.match(/<svg/g) ?? []).length >= 7, "compute, validation, memory, 2 network, 2 matrix, steps");

      // The replayed steps: launch's ledger format, read back by --check.
      const runDir = r.out.match(/prediction check of (\S+)\/ledger\.jsonl/)![1];
      assertEquals(runDir, `${dir}/run`);
      const ledger = (await Deno.readTextFile(`${runDir}/ledger.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
      assertEquals(ledger.length, 3);
      for (const e of ledger) {
        assert(e.predictedMs > 0 && e.measuredMs > 0 && Number.isFinite(e.loss), JSON.stringify(e).slice(0, 200));
        for (const g of e.plan.microBatches.flatMap((m: { groups: unknown[] }) => m.groups)) {
          assert(g.measuredMs > 0 && Array.isArray(g.ranks), "every group measured");
        }
      }
      const check = await cli("profile", ["--check", runDir, cfg]);
      assertEquals(check.code, 0, check.err);
      assertIncludes(check.out, "3 step(s)", "step time:  median |error|");
      const stepErr = Number(check.out.match(/step time: +median \|error\| ([\d.]+)%/)![1]) / 100;
      // Accuracy needs a steady machine: bound it (loosely: three steps; `deno task bench --only profile` measures
      // it properly) unless the profile itself saw the machine's load change (other work on a shared machine).
      const f = doc.compute.roundFactors ?? [1];
      const solo = doc.validation!.points.filter((v) => v.degree === 1).map((v) => Math.abs(v.relErr));
      const after = Number(r.err.match(/the devices ran at ([\d.]+)x their validation speed/)![1]);
      const steady = Math.max(...f) / Math.min(...f) < 1.15 && Math.max(...solo) < 0.2 && Math.abs(after - 1) < 0.15;
      if (steady) assert(stepErr < 0.4, `median step error ${stepErr} on a steady machine\n${r.out}`);
      else console.log(`(machine load changed during the profile; median step error ${stepErr} not checked)`);

      // plan uses the new profile (its fingerprint matches this config).
      const plan = await cli("plan", [cfg, "--steps", "1", "--json", "--set", `profile.path=${out}`]);
      assertEquals(plan.code, 0, plan.err);
      assertEquals(plan.err, "", "plan prints no warning about a profile it just got");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "profile: a device that fails the compute benchmark is named, and nothing is written",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxprof-fault-" });
    try {
      const cfg = await writeLocalConfig(dir, { nodes: [2] });
      const out = `${dir}/p.json`;
      const args = [cfg, "--quick", "--out", out, "--run-dir", `${dir}/run`];
      const err = await cli("profile", args, { FLEXSP_PROFILE_FAULT: "1:error" });
      assertEquals(err.code, 1, err.out + err.err);
      assertIncludes(
        err.err,
        "error: compute benchmark (round 1 of 2): rank 1 (node 0 (localhost), device 1: cpu:1 cpu (TypeScript " +
          "reference, f32)) failed: injected fault (FLEXSP_PROFILE_FAULT)",
        "(ranks 0 stopped because of it)",
      );
      noStackTrace(err.err);
      assert(!(await exists(out)), "no profile written");

      const crash = await cli("profile", args, { FLEXSP_PROFILE_FAULT: "0:exit" });
      assertEquals(crash.code, 1, crash.out + crash.err);
      assertIncludes(crash.err, "rank 0 (node 0 (localhost), device 0", "exited with code 3", "injected fault");
      noStackTrace(crash.err);
      assert(!(await exists(out)), "no profile written");
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["ptest.yaml", "run"], "no temporary files");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "profile: an unreachable node stops the profile before anything runs; a node lost mid-profile is named",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxprof-lost-" });
    try {
      await new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/key`] }).output();
      const cfg = `${dir}/u.yaml`;
      await Deno.writeTextFile(
        cfg,
        [
          "name: u",
          "cluster:",
          "  connect_timeout_s: 2",
          "  nodes:",
          "    - { host: localhost, transport: local, devices: 1, executor: cpu }",
          `    - { host: 127.0.0.1, port: 1, identity: ${dir}/key, host_key_policy: accept-new, devices: 1, executor: cpu }`,
          "model: { preset: gpt-tiny, checkpointing: none }",
          "planner: { memory_budget_gb: 0.25 }",
          "",
        ].join("\n"),
      );
      const r = await cli("profile", [cfg, "--quick", "--out", `${dir}/p.json`, "--run-dir", `${dir}/run`]);
      assertEquals(r.code, 1, r.out + r.err);
      assertIncludes(
        r.err,
        "error: cannot profile: 1 of 2 node(s) did not start:\n  node 1 (127.0.0.1): ",
        "every node of",
        "must be up to profile it",
      );
      noStackTrace(r.err);
      assert(!(await exists(`${dir}/p.json`)));

      // A node whose agent dies while the network is measured.
      const marker = `FXLOST${crypto.randomUUID().slice(0, 8)}`;
      Deno.env.set("FLEXSP_TEST_MARKER", marker);
      const config = await load(await writeLocalConfig(dir, { nodes: [1, 1], name: "lost" }));
      const lines: string[] = [];
      let error: unknown;
      try {
        await runProfile(config, {
          grid: { ...defaultGrid(config.model.maxSeq, "quick"), lengths: [64], counts: [1], repeats: 1 },
          timeoutMs: 60_000,
          say: (l) => lines.push(l),
          runDir: `${dir}/run`,
          env: { FLEXSP_TEST_MARKER: marker },
          onPhase: (phase, cluster) => {
            if (phase === "network") Deno.kill(cluster.nodes[1].session!.agentPid!, "SIGKILL");
          },
        });
      } catch (e) {
        error = e;
      } finally {
        Deno.env.delete("FLEXSP_TEST_MARKER");
      }
      assert(error instanceof UserError, `expected a UserError, got ${error}`);
      assertIncludes((error as Error).message, "node 1 (localhost) was lost");
      assertIncludes(lines.join("\n"), "compute: round 1/1 done");
      let left: string[] = [];
      for (let i = 0; i < 50; i++) {
        left = strayProcesses(marker);
        if (left.length === 0) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assertEquals(left, [], "every agent and executor of the run has exited");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
