// The control plane at scale, on SSH test hosts (network namespaces with their own sshd, tests/hosts/test_hosts.ts).
// Cases: 4 and 32 hosts of 4 real CPU executors (gpt-tiny, 16-token sequences, so compute is small), and simulated
// executors (kernels/sim_executor.ts, `training.simulate`) at 4 x 8, 32 x 32 (1,024 ranks) and 128 x 8 (1,024
// ranks) with 4 sequences per rank. Per case:
// - warm launch: agents up on hosts that already hold the bundles, then every executor started and connected;
// - heartbeat traffic of the idle cluster per node: protocol lines and bytes per second both ways;
// - per-step orchestration overhead (ledger overheadMs: step wall time minus the slowest rank's own time) and
//   dispatch time (splitting the plan per node and writing it);
// - the orchestrator's main-thread CPU time per step (Linux schedstat; the planner's worker thread apart);
// - the bytes the orchestrator writes to agents per step (every line, pings included), against the size of the
//   step's whole executor plan (what the dispatch before issue 21 wrote to EVERY rank).
// At 1,024 simulated ranks, the failure path: one host's sshd killed mid-run (32 hosts), and a wave of 16 at once
// (128 hosts): time from the kill to the run's end, and whether the report names each lost host once, grouped.
// Targets (issue 21): overhead < 20 ms at 32 hosts x 4 real executors and < 50 ms at 1,024 simulated ranks; bytes
// per step <= 2x the plan's size; warm launch of 1,024 simulated ranks < 10 s. Needs root (namespaces); skipped
// with a note otherwise. `--quick`, or a plain `deno task bench`: the 4-host cases; `--only scale`: all.
// Runnable alone: `deno run -A bench/scale.ts [--quick]`. On a shared 2-core machine every host's agent and
// executors compete with the orchestrator for the cores: absolute numbers move with the load.

import { canCreateTestHosts, startTestHosts, type TestHosts } from "../tests/hosts/test_hosts.ts";
import { ONE_DEVICE_NODES, writeTrainingConfig } from "../tests/hosts/training_config.ts";
import { killSshd } from "../tests/run/launch_harness.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { ClusterSession, EXECUTOR_SOURCE } from "../orchestrator/cluster/cluster_session.ts";
import { AgentSession } from "../orchestrator/cluster/agent_session.ts";
import { ExecutorPool } from "../orchestrator/cluster/executor_pool.ts";
import { launchRun } from "../orchestrator/run/launch_run.ts";
import type { LedgerRecord } from "../orchestrator/ledger/ledger.ts";
import { buildBuiltinDataset } from "../orchestrator/data/builtin_corpus.ts";
import { encodeMessage, type ExecutorKindName } from "../core/protocol.ts";

const TITLE = "scale: SSH test hosts, real and simulated executors (launch, heartbeats, per-step overhead, bytes)";
const STEPS = 12;
const WARMUP = 3;

interface Case {
  hosts: number;
  devices: number;
  executor: Extract<ExecutorKindName, "cpu" | "sim">;
}

const ALL: Case[] = [
  { hosts: 4, devices: 4, executor: "cpu" },
  { hosts: 32, devices: 4, executor: "cpu" },
  { hosts: 4, devices: 8, executor: "sim" },
  { hosts: 32, devices: 32, executor: "sim" },
  { hosts: 128, devices: 8, executor: "sim" },
];

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

/** CPU time (ms) the calling thread has run, from Linux's schedstat; NaN where it cannot be read. */
function threadCpuMs(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]) / 1e6;
  } catch {
    return NaN;
  }
}

/** Mean increase per step of a counter sampled at each step line, past the warm-up steps. */
function perStep(at: number[], warmup: number): number {
  const xs = at.slice(Math.max(0, warmup - 1));
  return xs.length < 2 ? NaN : (xs.at(-1)! - xs[0]) / (xs.length - 1);
}

/**
 * The size of a step's whole executor plan (`{"type":"step","plan":…}`, what the dispatch before per-node plans
 * wrote to every rank), rebuilt from its ledger record: every group with its ranks, sequence refs and predicted ms.
 */
function planBytes(r: LedgerRecord): number {
  const byId = new Map(r.sequences.map((q) => [q.id, q]));
  const microBatches = r.plan.microBatches.map((mb) => ({
    groups: mb.groups.map((g) => ({
      degree: g.degree,
      ranks: g.ranks,
      sequences: g.sequences.map((id) => ({ id, offset: 1e6 + byId.get(id)!.offset, length: byId.get(id)!.length })),
      ...(g.predictedMs > 0 ? { predictedMs: Math.round(g.predictedMs * 1000) / 1000 } : {}),
    })),
  }));
  const plan = { step: r.step, microBatches, globalTokens: r.targetTokens, lr: r.lr };
  return JSON.stringify({ type: "step", plan }).length;
}

async function launchAgents(path: string, runId: string, dir: string): Promise<ClusterSession> {
  const config = await loadConfig(path);
  const c = await ClusterSession.launch(config, { runId, runDir: dir, executorEntry: EXECUTOR_SOURCE });
  if (c.failures.length) {
    await c.shutdown("bench");
    throw new Error(`launch failed: ${c.failures.map((n) => `${n.name}: ${n.error}`).join("; ")}`);
  }
  return c;
}

/**
 * Heartbeat traffic of an idle cluster over `ms`, per node: every line the agents send (heartbeats, pongs) counted
 * and sized, plus the orchestrator's pings (one per agent per period, each about as long as the pong it gets).
 */
async function heartbeatTraffic(c: ClusterSession, ms: number): Promise<{ linesPerS: number; bytesPerS: number }> {
  let lines = 0, bytes = 0, pongBytes = 0, pongs = 0;
  const offs = c.sessions.map((s) =>
    s.on((ev) => {
      lines++;
      const b = encodeMessage(ev).length;
      bytes += b;
      if (ev.type === "pong") {
        pongs++;
        pongBytes += b;
      }
    })
  );
  await new Promise((r) => setTimeout(r, ms));
  offs.forEach((off) => off());
  const n = c.sessions.length;
  return { linesPerS: (lines + pongs) / (ms / 1000) / n, bytesPerS: (bytes + pongBytes) / (ms / 1000) / n };
}

/** A run's training config on the hosts of `base`: short sequences, `perRank` sequences per rank. */
function trainConfig(th: TestHosts, base: string, c: Case, data: string, steps: number, name: string) {
  const world = c.hosts * c.devices;
  return writeTrainingConfig(base, `${th.dir}/${name}.yaml`, {
    maxSeq: c.executor === "sim" ? 64 : 16,
    dataset: `${data}/corpus`,
    globalBatch: c.executor === "sim" ? 4 * world : world,
    steps,
    training: {
      checkpoint_interval: 0,
      on_failure: "stop",
      ...(c.executor === "sim" ? { simulate: "true" } : {}),
    },
    planner: { zero_stage: 0, milp: "none", deterministic: true },
    constants: ONE_DEVICE_NODES,
  });
}

/** Warm launch (agents, then executors started and connected) of the cluster `base` describes. */
async function warmLaunch(base: string, dir: string): Promise<{ agentsMs: number; totalMs: number }> {
  const cold = await launchAgents(base, "scale-cold", `${dir}/cold`);
  await cold.shutdown("bench");
  const t0 = performance.now();
  const warm = await launchAgents(base, "scale-warm", `${dir}/warm`);
  const agentsMs = performance.now() - t0;
  const config = await loadConfig(base);
  const pool = ExecutorPool.create(warm, { config });
  try {
    await pool.start();
    return { agentsMs, totalMs: performance.now() - t0 };
  } finally {
    pool.stop();
    await warm.shutdown("bench");
  }
}

/** Steps of a run: overhead, dispatch, orchestrator CPU and bytes per step, plan size. */
async function steady(cfg: string, runDir: string) {
  const cpuAt: number[] = [];
  const bytesAt: number[] = [];
  const logged: string[] = [];
  const r = await launchRun({
    configPath: cfg,
    runDir,
    signals: false,
    log: (l) => logged.push(l),
    print: () => {
      cpuAt.push(threadCpuMs());
      bytesAt.push(AgentSession.bytesSentTotal);
    },
  });
  if (r.code !== 0) {
    const why = logged.filter((l) => /error|lost|failed/i.test(l)).slice(0, 3).join(" | ");
    throw new Error(`run ${cfg} ended with code ${r.code}: ${why}`);
  }
  const rs = r.records.slice(WARMUP);
  const over = rs.map((x) => x.overheadMs);
  return {
    overheadMean: mean(over),
    overheadP50: pct(over, 0.5),
    overheadP95: pct(over, 0.95),
    dispatchMs: mean(rs.map((x) => x.dispatchMs)),
    cpuMsPerStep: perStep(cpuAt, WARMUP),
    bytesPerStep: perStep(bytesAt, WARMUP),
    planBytes: mean(rs.map(planBytes)),
    stepMs: mean(rs.map((x) => x.wallMs)),
  };
}

/**
 * Kills the sshd of `victims` once the run has done 3 steps; returns the time from the kill to the run's end and
 * the report's lines, with whether each victim is named exactly once and all on one line.
 */
async function failurePath(th: TestHosts, cfg: string, runDir: string, victims: number[]) {
  const lines: string[] = [];
  let killedAt = 0;
  let steps = 0;
  const killing: Promise<void>[] = [];
  const r = await launchRun({
    configPath: cfg,
    runDir,
    signals: false,
    log: (l) => lines.push(l),
    print: () => {
      if (++steps === 3) {
        killedAt = performance.now();
        killing.push(Promise.all(victims.map((i) => killSshd(th, th.hosts[i]))).then(() => {}));
      }
    },
  });
  const endMs = performance.now() - killedAt;
  await Promise.all(killing);
  // The report: from its first line (`... failed: ...`) on; the live `node N: LOST: ...` progress lines come before.
  const all = lines.join("\n").split("\n");
  const report = all.slice(Math.max(0, all.findIndex((l) => / failed: /.test(l))));
  const text = report.join("\n");
  const names = victims.map((i) => `node ${i} (${th.hosts[i].ip})`);
  const once = names.every((n) => text.split(n).length - 1 === 1);
  const grouped = victims.length < 2 || report.some((l) => names.every((n) => l.includes(n)));
  return { code: r.code, endMs, once, grouped, report };
}

/** Runs the benchmark. */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const can = canCreateTestHosts();
  if (!can.ok) return { title: TITLE, rows: [{ note: `skipped: ${can.reason}` }], json: { skipped: can.reason } };
  // The full sweep (many minutes on 2 cores) runs when asked for: `--only scale` or this file alone.
  const asked = import.meta.main || Deno.args.includes("scale");
  const quick = Deno.args.includes("--quick") || !asked;
  let cases: Case[] = quick ? ALL.filter((c) => c.hosts === 4) : ALL;
  // `--case=128x8-sim` (runnable alone: `deno run -A bench/scale.ts --case=128x8-sim`) runs that case only.
  const only = Deno.args.find((a) => a.startsWith("--case="))?.slice("--case=".length);
  if (only) cases = ALL.filter((c) => `${c.hosts}x${c.devices}-${c.executor}` === only);
  const rows: Record<string, string | number>[] = [];
  const json: Record<string, unknown> = { steps: STEPS, warmup: WARMUP, cases };
  const data = await Deno.makeTempDir({ prefix: "flexsp-bench-scale-" });
  try {
    // Outside /root, which each test host has of its own: every host sees this dataset, nothing is copied.
    await buildBuiltinDataset("deno-corpus", `${data}/corpus`);
    for (const c of cases) {
      const name = `${c.hosts}x${c.devices} ${c.executor}`;
      const th = await startTestHosts({ count: c.hosts });
      const before = rows.length;
      try {
        const base = await th.writeConfig({
          devices: c.devices,
          executor: c.executor,
          // Generous: on a shared 2-core machine 128 agents can be starved for seconds (not a lost node).
          heartbeatTimeoutS: 30,
          connectTimeoutS: 60,
        });
        // The pool needs a whole config (model, and training.simulate for sim executors).
        const poolCfg = await trainConfig(th, base, c, data, STEPS, "pool");
        const launch = await warmLaunch(poolCfg, th.dir);
        const hbCluster = await launchAgents(poolCfg, "scale-hb", `${th.dir}/hb`);
        const hb = await heartbeatTraffic(hbCluster, 4000);
        await hbCluster.shutdown("bench");
        const s = await steady(await trainConfig(th, base, c, data, STEPS, "train"), `${th.dir}/run`);
        const entry: Record<string, unknown> = { ...c, ranks: c.hosts * c.devices, launch, hb, ...s };
        rows.push({
          case: name,
          ranks: c.hosts * c.devices,
          "warm launch s (agents)": `${r2(launch.totalMs / 1000)} (${r2(launch.agentsMs / 1000)})`,
          "heartbeat per node lines/s (bytes/s)": `${r1(hb.linesPerS)} (${Math.round(hb.bytesPerS)})`,
          "overhead ms mean/p50/p95": `${r1(s.overheadMean)} / ${r1(s.overheadP50)} / ${r1(s.overheadP95)}`,
          "dispatch ms": r2(s.dispatchMs),
          "orchestrator CPU ms/step": Number.isFinite(s.cpuMsPerStep) ? r1(s.cpuMsPerStep) : "n/a",
          "bytes/step (plan, x)": `${Math.round(s.bytesPerStep)} (${Math.round(s.planBytes)}, ${
            r2(s.bytesPerStep / s.planBytes)
          }x)`,
          "step wall ms": r1(s.stepMs),
        });
        if (!quick && c.executor === "sim" && c.hosts * c.devices >= 1024) {
          // 1,024 ranks: one node lost on 32 hosts, a wave of 16 on 128 (a killed sshd stays dead for the case).
          const what = c.hosts === 32 ? "one node lost" : "a wave of 16";
          const victims = c.hosts === 32 ? [5] : Array.from({ length: 16 }, (_, i) => 40 + i);
          const fcfg = await trainConfig(th, base, c, data, 1000, "fail");
          const f = await failurePath(th, fcfg, `${th.dir}/fail`, victims);
          entry.failure = f;
          rows.push({
            case: `${name}: ${what}`,
            ranks: c.hosts * c.devices,
            "kill to exit s": r2(f.endMs / 1000),
            "exit code": f.code,
            "each named once": f.once ? "yes" : "NO",
            "grouped on one line": f.grouped ? "yes" : "NO",
          });
        }
        json[name] = entry;
      } catch (e) {
        // One case failing (e.g. the machine runs out of something at 128 hosts) leaves the others' numbers.
        rows.push({ case: name, ranks: c.hosts * c.devices, note: `failed: ${(e as Error).message.split("\n")[0]}` });
        json[name] = { error: (e as Error).message };
      } finally {
        await th.close();
        // Each case's rows as soon as they are known (the sweep takes many minutes).
        for (const row of rows.slice(before)) console.error(`scale: ${JSON.stringify(row)}`);
      }
    }
    json.targets = "overhead < 20 ms at 32 hosts x 4 real executors, < 50 ms at 1,024 simulated ranks; bytes per " +
      "step <= 2x the plan's size; warm launch of 1,024 simulated ranks < 10 s";
  } finally {
    await Deno.remove(data, { recursive: true }).catch(() => {});
  }
  return { title: TITLE, rows, json };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
