// End-to-end benchmark of `deno task launch` on the embedded default's local cluster (4 CPU executors, gpt-tiny,
// the deno-corpus): tokens/s and step time with FlexSP plans against the static-SP and BatchAda plans on the same
// data (same seed, so the same batches), and the per-step orchestration overhead: wall time from dispatching a step
// to holding every rank's result, minus the slowest rank's own step time (so: serialising, the pipes through the
// agent, parsing, the loop; no compute). A last run with tiny sequences isolates the overhead from CPU contention.
//
// Method: each strategy runs `STEPS` steps; the first `WARMUP` (JIT warm-up) are left out of the averages. Runs are
// sequential on one machine; on a shared 2-core machine the executors (4 processes), the agent and the planner
// thread compete for the cores, so absolute numbers move with the load.
// Runnable alone: `deno run -A bench/launch.ts`.

import { launchRun } from "../orchestrator/run/launch_run.ts";
import type { LedgerRecord } from "../orchestrator/ledger/ledger.ts";

const CONFIG = new URL("../configs/local.yaml", import.meta.url).pathname;
const STEPS = 20;
const WARMUP = 3;
const TITLE = "launch: end to end on the local cluster (4 CPU executors, gpt-tiny, deno-corpus)";

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

async function run(sets: string[], dir: string, force = false): Promise<LedgerRecord[]> {
  const r = await launchRun({
    configPath: CONFIG,
    sets,
    runDir: dir,
    force,
    signals: false,
    log: () => {},
    print: () => {},
  });
  if (r.code !== 0) throw new Error(`launch ${sets.join(" ")} ended with code ${r.code}`);
  return r.records;
}

function summarize(records: LedgerRecord[]) {
  const rs = records.slice(WARMUP);
  const tokens = rs.reduce((s, r) => s + r.tokens, 0);
  const wall = rs.reduce((s, r) => s + r.wallMs, 0);
  const over = rs.map((r) => r.overheadMs);
  return {
    steps: rs.length,
    tokensPerS: tokens / (wall / 1000),
    stepMs: mean(rs.map((r) => r.measuredMs)),
    stepP50: pct(rs.map((r) => r.measuredMs), 0.5),
    predictedMs: mean(rs.map((r) => r.predictedMs)),
    solveMs: mean(rs.map((r) => r.solveMs)),
    hidden: rs.filter((r) => r.solveHidden).length,
    overheadMean: mean(over),
    overheadP50: pct(over, 0.5),
    overheadP95: pct(over, 0.95),
    dispatchMs: mean(rs.map((r) => r.dispatchMs)),
    // The SP degrees of the busy groups of each micro-batch, the most frequent first.
    degrees: [
      ...rs.flatMap((r) =>
        r.plan.microBatches.map((mb) => mb.groups.filter((g) => g.sequences.length).map((g) => g.degree).join("+"))
      ).reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<string, number>()),
    ].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, n]) => `${k} (${n})`).join(", "),
    finalLoss: records[records.length - 1].loss,
  };
}

/** Runs the benchmark. */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const tmp = await Deno.makeTempDir({ prefix: "flexsp-bench-launch-" });
  const rows: Record<string, string | number>[] = [];
  const json: Record<string, unknown> = { steps: STEPS, warmup: WARMUP };
  try {
    const common = [`training.steps=${STEPS}`, "training.checkpoint_interval=0"];
    for (const strategy of ["flexsp", "static", "batchada"]) {
      const records = await run([...common, `planner.strategy=${strategy}`], `${tmp}/${strategy}`);
      const s = summarize(records);
      json[strategy] = { ...s, records: records.map((r) => ({ ...r, plan: undefined })) };
      rows.push({
        run: strategy,
        "tokens/s": Math.round(s.tokensPerS),
        "step ms (mean)": Math.round(s.stepMs),
        "step ms (p50)": Math.round(s.stepP50),
        "predicted ms": r1(s.predictedMs),
        "solve ms": r1(s.solveMs),
        "solve hidden": `${s.hidden}/${s.steps}`,
        "overhead ms mean/p50/p95": `${r2(s.overheadMean)} / ${r2(s.overheadP50)} / ${r2(s.overheadP95)}`,
        "dispatch ms": r2(s.dispatchMs),
        "busy SP groups per micro-batch (count)": s.degrees,
      });
    }
    // Overhead alone: 4 sequences of at most 16 tokens per step, static plans (no solve competing for the cores).
    const tiny = await run(
      [
        "training.checkpoint_interval=0",
        "training.steps=40",
        "training.global_batch=4",
        "model.max_seq=16",
        "planner.strategy=static",
      ],
      `${tmp}/tiny`,
      true, // a profile of the default's model shape is used for this other shape anyway
    );
    const t = summarize(tiny);
    json.tinyOverhead = { ...t, records: tiny.map((r) => ({ ...r, plan: undefined })) };
    rows.push({
      run: "overhead only (16-token sequences)",
      "tokens/s": Math.round(t.tokensPerS),
      "step ms (mean)": r2(t.stepMs),
      "step ms (p50)": r2(t.stepP50),
      "predicted ms": r1(t.predictedMs),
      "solve ms": r1(t.solveMs),
      "solve hidden": `${t.hidden}/${t.steps}`,
      "overhead ms mean/p50/p95": `${r2(t.overheadMean)} / ${r2(t.overheadP50)} / ${r2(t.overheadP95)}`,
      "dispatch ms": r2(t.dispatchMs),
      "busy SP groups per micro-batch (count)": t.degrees,
    });
    json.target = "orchestration overhead under 5 ms per step on 4 local devices";
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return { title: TITLE, rows, json };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  const section = await bench();
  printSection(section);
}
