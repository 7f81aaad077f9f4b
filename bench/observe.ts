// Benchmark of watching a run: what the observer adds to each step on a paper-sized step (64 ranks, 8 micro-batches
// of 16 SP groups, 512 sequences): straggler detection, the TensorBoard write (to a real file), the state update,
// a /metrics exposition and a dashboard snapshot (its JSON size), over 2,000 steps of history.

import type { LedgerRecord } from "../orchestrator/ledger/ledger.ts";
import { RunMetrics } from "../orchestrator/run/observe/metrics.ts";
import { tensorboardScalars } from "../orchestrator/run/observe/observer.ts";
import { RunState } from "../orchestrator/run/observe/run_state.ts";
import { StragglerDetector } from "../orchestrator/run/observe/stragglers.ts";
import { TensorBoardWriter } from "../orchestrator/run/observe/tensorboard_writer.ts";

const TITLE = "observe: per-step cost of the observer (64 ranks, 8 micro-batches x 16 groups, 512 sequences)";
const WORLD = 64;

function record(step: number): LedgerRecord {
  let id = 0;
  const microBatches = Array.from({ length: 8 }, () => ({
    predictedMs: 1000,
    measuredMs: 1100,
    groups: Array.from({ length: 16 }, (_, g) => ({
      degree: 4,
      ranks: [4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3],
      sequences: Array.from({ length: 4 }, () => id++),
      indices: Array.from({ length: 4 }, (_, k) => k),
      lengths: Array.from({ length: 4 }, (_, k) => 4096 + 512 * k),
      predictedMs: 900 + g,
      measuredMs: 950 + ((g * 37 + step) % 100),
      loss: 3,
      tokens: 16000,
    })),
  }));
  return {
    step,
    time: new Date().toISOString(),
    loss: 3 - step / 1e4,
    tokens: 512 * 5000,
    targetTokens: 512 * 4999,
    sequences: Array.from({ length: 512 }, (_, i) => ({ id: i, doc: i, offset: 0, length: 4096 })),
    epoch: 0,
    lr: 3e-4,
    predictedMs: 8000,
    measuredMs: 8800,
    microBatchMs: 8800,
    wallMs: 8900,
    overheadMs: 100,
    dispatchMs: 2,
    tokensPerS: 287_000,
    solveMs: 300,
    planWaitMs: 0,
    solveHidden: true,
    planSource: "solved",
    worldSize: WORLD,
    strategy: "flexsp",
    lowerBoundMs: 7000,
    dropped: [],
    plan: { strategy: "flexsp", microBatches },
    gradNorm: 1.2,
    mfu: 0.41,
    tflopsPerDevice: 128,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Runs the benchmark. */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-bench-observe-" });
  const state = new RunState({
    runId: "bench",
    name: "bench",
    runDir: dir,
    totalSteps: 100_000,
    model: "gpt-7b",
    configText: "",
    fingerprintHash: "",
    datasetHash: "",
    profileHash: "",
    profileSource: "",
    resumeCommand: "",
  });
  state.ranks = Array.from({ length: WORLD }, (_, r) => ({
    rank: r,
    host: `gpu${r >> 3}`,
    node: `node ${r >> 3}`,
    device: r % 8,
    deviceName: `cuda:${r % 8} NVIDIA A100-SXM4-40GB`,
    peakTflops: 312,
  }));
  state.nodes = Array.from({ length: 8 }, (_, n) => ({ host: `gpu${n}`, name: `node ${n}`, up: true }));
  const metrics = new RunMetrics(state);
  const det = new StragglerDetector({ factor: 2, steps: 3, minMs: 50 });
  const tb = new TensorBoardWriter(`${dir}/tensorboard`);
  const steps = 2000;
  const perStep: number[] = [], detect: number[] = [], tbMs: number[] = [];
  for (let s = 1; s <= steps; s++) {
    const r = record(s);
    const t0 = performance.now();
    det.observe(r, state.ranks);
    const t1 = performance.now();
    await tb.scalars(s, tensorboardScalars(r));
    const t2 = performance.now();
    metrics.step(r);
    state.addRecord(r);
    const t3 = performance.now();
    perStep.push(t3 - t0);
    detect.push(t1 - t0);
    tbMs.push(t2 - t1);
  }
  tb.close();
  const scrape: number[] = [], snap: number[] = [];
  let bytes = 0, metricsBytes = 0;
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    metricsBytes = (await metrics.text()).length;
    const t1 = performance.now();
    bytes = JSON.stringify(state.snapshot()).length;
    snap.push(performance.now() - t1);
    scrape.push(t1 - t0);
  }
  await Deno.remove(dir, { recursive: true });
  const rows = [
    { what: "observer per step (detect + TensorBoard + state)", "median ms": r3(median(perStep)) },
    { what: "  straggler detection", "median ms": r3(median(detect)) },
    { what: "  TensorBoard write (file)", "median ms": r3(median(tbMs)) },
    { what: `/metrics exposition (${metricsBytes} bytes)`, "median ms": r3(median(scrape)) },
    { what: `dashboard snapshot JSON, ${steps} steps (${bytes} bytes)`, "median ms": r3(median(snap)) },
  ];
  return {
    title: TITLE,
    rows,
    json: {
      steps,
      world: WORLD,
      perStepMs: median(perStep),
      detectMs: median(detect),
      tensorboardMs: median(tbMs),
      metricsMs: median(scrape),
      metricsBytes,
      snapshotMs: median(snap),
      snapshotBytes: bytes,
    },
  };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
