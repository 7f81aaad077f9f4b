// The PyTorch executor (`executor: torch-cpu`) against the TypeScript CPU executor, in one run on the same cores:
// - training throughput (tokens/s over the steps after warm-up) of `deno task launch configs/local.yaml` on gpt-tiny
//   and gpt-small, the same data and plans (4 executors on the local node), and the ratio torch-cpu / cpu
//   (target: at least 3x on gpt-small);
// - executor pool creation per world size (1, 2, 4 ranks): spawn to every `ready` (process start, `import torch`,
//   model init) and `ready` to every `connected` (the rendezvous and the SP-group pool), from the events as the
//   orchestrator receives them, plus whatever per-degree group timings the executors report in those events;
// - per-step orchestration overhead on torch-cpu (wall time from dispatch to the last result minus the slowest
//   rank's own step time), on 16-token sequences so that compute does not hide it (target: under 5 ms).
// On a shared 2-core machine the absolute numbers move with the load; the ratios come from back-to-back runs.
// Runnable alone: `deno run -A bench/torch.ts [--quick]`.

import { launchRun } from "../orchestrator/run/launch_run.ts";
import type { LedgerRecord } from "../orchestrator/ledger/ledger.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { ClusterSession } from "../orchestrator/cluster/cluster_session.ts";
import { ExecutorPool } from "../orchestrator/cluster/executor_pool.ts";
import type { AgentEvent, PoolDegreeTiming } from "../core/protocol.ts";

const CONFIG = new URL("../configs/local.yaml", import.meta.url).pathname;
const QUICK = Deno.args.includes("--quick");
const TITLE = "torch: the PyTorch executor (torch-cpu) vs the TypeScript CPU executor, same cores";

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

async function train(sets: string[], dir: string): Promise<LedgerRecord[]> {
  const r = await launchRun({
    configPath: CONFIG,
    sets,
    runDir: dir,
    force: true,
    signals: false,
    log: () => {},
    print: () => {},
  });
  if (r.code !== 0) throw new Error(`launch ${sets.join(" ")} ended with code ${r.code}`);
  return r.records;
}

function throughput(records: LedgerRecord[], warmup: number) {
  const rs = records.slice(warmup);
  const tokens = rs.reduce((s, r) => s + r.tokens, 0);
  const wall = rs.reduce((s, r) => s + r.wallMs, 0);
  return {
    steps: rs.length,
    tokensPerS: tokens / (wall / 1000),
    stepMs: mean(rs.map((r) => r.measuredMs)),
    overheadMean: mean(rs.map((r) => r.overheadMs)),
    overheadP50: pct(rs.map((r) => r.overheadMs), 0.5),
    overheadP95: pct(rs.map((r) => r.overheadMs), 0.95),
    losses: records.map((r) => r.loss),
  };
}

/** Standard fields of `ready` / `connected`; anything else an executor adds (group pool timings) is reported. */
const STANDARD = new Set(["v", "type", "rank", "kind", "device", "endpoint"]);

/** The SP-group pool's creation time per degree as rank 0 reports it in `connected` (`pool`, core/protocol.ts). */
function groupTimes(reported: Record<string, unknown>[]): string {
  const r0 = reported.find((r) => r.event === "connected" && r.rank === 0);
  const pool = Array.isArray(r0?.pool) ? r0.pool as PoolDegreeTiming[] : [];
  return pool.length ? `; SP groups: ${pool.map((p) => `d${p.degree} ${r1(p.ms)} ms`).join(", ")}` : "";
}

/** Starts a torch-cpu pool of `world` ranks and times its phases from the events. */
async function poolCreation(world: number, dir: string) {
  const config = await loadConfig(CONFIG, [
    "cluster.nodes[0].executor=torch-cpu",
    `cluster.nodes[0].devices=${world}`,
    `profile.path=${dir}/none.json`,
  ]);
  const cluster = await ClusterSession.launch(config, { runId: `bench-torch-${world}`, runDir: dir });
  if (cluster.failures.length) throw new Error(cluster.failures.map((f) => f.error).join("; "));
  const readyAt: number[] = [], connectedAt: number[] = [];
  const extras: Record<string, unknown>[] = [];
  let t0 = 0;
  const off = cluster.sessions[0].on((ev: AgentEvent) => {
    if (ev.type !== "from_executor") return;
    const m = ev.msg;
    if (m.type !== "ready" && m.type !== "connected") return;
    (m.type === "ready" ? readyAt : connectedAt).push(performance.now() - t0);
    const extra = Object.fromEntries(Object.entries(m).filter(([k]) => !STANDARD.has(k)));
    if (Object.keys(extra).length) extras.push({ event: m.type, rank: ev.rank, ...extra });
  });
  const pool = ExecutorPool.create(cluster, { config });
  try {
    t0 = performance.now();
    await pool.start();
    const totalMs = performance.now() - t0;
    const ready = Math.max(...readyAt);
    const connected = connectedAt.length ? Math.max(...connectedAt) : ready;
    return { world, spawnToReadyMs: ready, readyToConnectedMs: connected - ready, totalMs, reported: extras };
  } finally {
    off();
    pool.stop();
    await cluster.shutdown("bench over");
  }
}

/** Runs the benchmark. */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const tmp = await Deno.makeTempDir({ prefix: "flexsp-bench-torch-" });
  const rows: Record<string, string | number>[] = [];
  const json: Record<string, unknown> = { quick: QUICK };
  const steps = QUICK ? 6 : 12, warmup = 2;
  try {
    const common = [
      `training.steps=${steps}`,
      "training.checkpoint_interval=0",
      "planner.deterministic=true",
      `profile.path=${tmp}/none.json`,
    ];
    const models = [{ preset: "gpt-tiny", maxSeq: 1024 }, { preset: "gpt-small", maxSeq: 2048 }];
    const throughputJson: Record<string, unknown> = {};
    for (const m of models) {
      const per: Record<string, ReturnType<typeof throughput>> = {};
      for (const kind of ["cpu", "torch-cpu"]) {
        const sets = [...common, `model.preset=${m.preset}`, `model.max_seq=${m.maxSeq}`];
        const recs = await train([...sets, `cluster.nodes[0].executor=${kind}`], `${tmp}/${m.preset}-${kind}`);
        per[kind] = throughput(recs, warmup);
      }
      const ratio = per["torch-cpu"].tokensPerS / per.cpu.tokensPerS;
      const maxLossDiff = Math.max(...per.cpu.losses.map((l, i) => Math.abs(l - per["torch-cpu"].losses[i])));
      throughputJson[m.preset] = { ...per, ratio, maxLossDiff };
      rows.push({
        measure: `train ${m.preset} (4 executors, ${steps - warmup} steps)`,
        cpu: `${Math.round(per.cpu.tokensPerS)} tok/s`,
        "torch-cpu": `${Math.round(per["torch-cpu"].tokensPerS)} tok/s`,
        "torch-cpu / cpu": `${r2(ratio)}x`,
        note: `step ${Math.round(per.cpu.stepMs)} vs ${Math.round(per["torch-cpu"].stepMs)} ms; |loss diff| <= ${
          maxLossDiff.toExponential(1)
        }${m.preset === "gpt-small" ? "; target >= 3x" : ""}`,
      });
    }
    json.throughput = throughputJson;

    const pools = [];
    for (const world of [1, 2, 4]) {
      const p = await poolCreation(world, `${tmp}/pool-${world}`);
      pools.push(p);
      rows.push({
        measure: `pool creation, world ${world}`,
        cpu: "",
        "torch-cpu": `${Math.round(p.totalMs)} ms`,
        "torch-cpu / cpu": "",
        note: `spawn -> ready ${Math.round(p.spawnToReadyMs)} ms, ready -> connected ${
          Math.round(p.readyToConnectedMs)
        } ms${groupTimes(p.reported)}`,
      });
    }
    json.poolCreation = pools;

    // Overhead alone: 4 sequences of at most 16 tokens per step, static plans.
    const tiny = throughput(
      await train([
        "training.checkpoint_interval=0",
        `training.steps=${QUICK ? 15 : 40}`,
        "training.global_batch=4",
        "model.max_seq=16",
        "planner.strategy=static",
        `profile.path=${tmp}/none.json`,
        "cluster.nodes[0].executor=torch-cpu",
      ], `${tmp}/tiny`),
      3,
    );
    json.overhead = tiny;
    rows.push({
      measure: "orchestration overhead per step (16-token sequences)",
      cpu: "",
      "torch-cpu": `${r2(tiny.overheadMean)} ms`,
      "torch-cpu / cpu": "",
      note: `p50 ${r2(tiny.overheadP50)} ms, p95 ${r2(tiny.overheadP95)} ms, step ${r1(tiny.stepMs)} ms; target < 5 ms`,
    });
    json.targets = {
      "gpt-small torch-cpu / cpu": ">= 3",
      "orchestration overhead ms": "< 5",
    };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return { title: TITLE, rows, json };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
