// How orchestration cost grows with the host count: 4, 8, 16 and 32 SSH test hosts (network namespaces with their
// own sshd, tests/hosts/test_hosts.ts), one CPU device each, gpt-tiny. Per host count:
// - launch cold (fresh hosts: connect, probe, upload the agent and executor bundles, agent hello) and warm (the same
//   hosts again: nothing to upload), agents only (ClusterSession.launch);
// - heartbeat traffic of the idle cluster: protocol lines per second both ways, and their bytes;
// - per-step orchestration overhead of `launch` (ledger overheadMs: step wall time minus the slowest rank's own step
//   time, i.e. dispatch, collect, parsing, the loop) and dispatch time, on 16-token sequences so compute is small;
// - the orchestrator's main-thread CPU time per step (Linux schedstat): its own cost, which does not depend on how
//   the hosts' processes are scheduled (with every host on this machine it includes the kernel's loopback delivery).
// Targets (issue 14): warm launch of 32 hosts < 3 s; per-step overhead growing no worse than linearly, < 20 ms at 32.
// Needs root (namespaces); skipped with a note otherwise. `--quick`, or a plain `deno task bench` (all parts): 4 and 8
// hosts; `--only scale`: 4 to 32. Runnable alone:
// `deno run -A bench/scale.ts [--quick]`. On a shared 2-core machine 32 agents and 32 executors compete for the
// cores, so absolute numbers move with the load; the ratios between host counts are what the table is for.

import { canCreateTestHosts, startTestHosts } from "../tests/hosts/test_hosts.ts";
import { ONE_DEVICE_NODES, writeTrainingConfig } from "../tests/hosts/training_config.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { ClusterSession, EXECUTOR_SOURCE } from "../orchestrator/cluster/cluster_session.ts";
import { launchRun } from "../orchestrator/run/launch_run.ts";
import { buildBuiltinDataset } from "../orchestrator/data/builtin_corpus.ts";
import { encodeMessage } from "../core/protocol.ts";

const TITLE = "scale: SSH test hosts, one CPU device each (launch, heartbeats, per-step overhead)";
const STEPS = 10;
const WARMUP = 3;

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

/** Mean CPU per step between step lines, past the warm-up steps. */
function cpuPerStep(at: number[], warmup: number): number {
  const xs = at.slice(Math.max(0, warmup - 1));
  return xs.length < 2 ? NaN : (xs.at(-1)! - xs[0]) / (xs.length - 1);
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
 * Heartbeat traffic of an idle cluster over `ms`: every line the agents send (heartbeats, pongs) counted and sized,
 * doubled for the orchestrator's pings, one per agent per period, each about as long as the pong it gets.
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
  return { linesPerS: (lines + pongs) / (ms / 1000), bytesPerS: (bytes + pongBytes) / (ms / 1000) };
}

/** Runs the benchmark. */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const can = canCreateTestHosts();
  if (!can.ok) return { title: TITLE, rows: [{ note: `skipped: ${can.reason}` }], json: { skipped: can.reason } };
  // The full sweep (several minutes on 2 cores) runs when asked for: `--only scale` or this file alone.
  const asked = import.meta.main || Deno.args.includes("scale");
  const counts = Deno.args.includes("--quick") || !asked ? [4, 8] : [4, 8, 16, 32];
  const rows: Record<string, string | number>[] = [];
  const json: Record<string, unknown> = { steps: STEPS, warmup: WARMUP, counts };
  const data = await Deno.makeTempDir({ prefix: "flexsp-bench-scale-" });
  try {
    // Outside /root, which each test host has of its own: every host sees this dataset, nothing is copied.
    await buildBuiltinDataset("deno-corpus", `${data}/corpus`);
    for (const n of counts) {
      const th = await startTestHosts({ count: n });
      try {
        const base = await th.writeConfig({ devices: 1, executor: "cpu", heartbeatTimeoutS: 10, connectTimeoutS: 20 });
        const cold = await launchAgents(base, "scale-cold", `${th.dir}/cold`);
        const coldMs = cold.launchMs;
        await cold.shutdown("bench");
        const warm = await launchAgents(base, "scale-warm", `${th.dir}/warm`);
        const warmMs = warm.launchMs;
        const hb = await heartbeatTraffic(warm, 4000);
        await warm.shutdown("bench");

        const cfg = await writeTrainingConfig(base, `${th.dir}/train.yaml`, {
          maxSeq: 16,
          dataset: `${data}/corpus`,
          globalBatch: n,
          steps: STEPS,
          training: { checkpoint_interval: 0 },
          planner: { zero_stage: 0, milp: "none", deterministic: true },
          constants: ONE_DEVICE_NODES,
        });
        const t0 = performance.now();
        // The orchestrator's main-thread CPU time at each step line (printed on that thread once a step is done).
        const cpuAtStep: number[] = [];
        const r = await launchRun({
          configPath: cfg,
          runDir: `${th.dir}/run`,
          signals: false,
          log: () => {},
          print: () => cpuAtStep.push(threadCpuMs()),
        });
        const runMs = performance.now() - t0;
        if (r.code !== 0) throw new Error(`launch on ${n} hosts ended with code ${r.code}`);
        const rs = r.records.slice(WARMUP);
        const over = rs.map((x) => x.overheadMs);
        const s = {
          hosts: n,
          coldLaunchMs: coldMs,
          warmLaunchMs: warmMs,
          heartbeatLinesPerS: hb.linesPerS,
          heartbeatBytesPerS: hb.bytesPerS,
          overheadMean: mean(over),
          overheadP50: pct(over, 0.5),
          overheadP95: pct(over, 0.95),
          dispatchMs: mean(rs.map((x) => x.dispatchMs)),
          orchestratorCpuMsPerStep: cpuPerStep(cpuAtStep, WARMUP),
          stepMs: mean(rs.map((x) => x.wallMs)),
          runMs,
        };
        json[`hosts${n}`] = s;
        rows.push({
          hosts: n,
          "cold launch s": r2(coldMs / 1000),
          "warm launch s": r2(warmMs / 1000),
          "heartbeat lines/s (bytes/s)": `${r1(hb.linesPerS)} (${Math.round(hb.bytesPerS)})`,
          "overhead ms mean/p50/p95": `${r2(s.overheadMean)} / ${r2(s.overheadP50)} / ${r2(s.overheadP95)}`,
          "dispatch ms": r2(s.dispatchMs),
          "orchestrator CPU ms/step": Number.isFinite(s.orchestratorCpuMsPerStep)
            ? r1(s.orchestratorCpuMsPerStep)
            : "n/a",
          "step wall ms": r1(s.stepMs),
        });
      } finally {
        await th.close();
      }
    }
    // Growth relative to the smallest count: cost per host should stay flat (linear growth) or fall.
    const first = json[`hosts${counts[0]}`] as { overheadMean: number; warmLaunchMs: number };
    for (const row of rows) {
      const s = json[`hosts${row.hosts}`] as { overheadMean: number; warmLaunchMs: number; hosts: number };
      const k = s.hosts / counts[0];
      row["overhead growth (x, linear = hosts ratio)"] = `${r2(s.overheadMean / first.overheadMean)} (${k})`;
      row["warm launch growth (x)"] = r2(s.warmLaunchMs / first.warmLaunchMs);
    }
    json.targets = "warm launch of 32 hosts < 3 s; per-step overhead no worse than linear, < 20 ms at 32 hosts";
  } finally {
    await Deno.remove(data, { recursive: true }).catch(() => {});
  }
  return { title: TITLE, rows, json };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
