// The parts of run observation on their own: CRC32C's check value, TensorBoard files read back by TensorBoard's own
// reader (and cut on a re-executed step), FLOPs against a hand count, device peaks (none for CPUs), straggler
// detection that tells a slow rank from a slow cluster, the dashboard's 401, and the observe: config section.

import { assert, assertClose, assertEquals, assertThrows } from "../assert.ts";
import { crc32c, TensorBoardWriter } from "../../orchestrator/run/observe/tensorboard_writer.ts";
import { sequenceFlops, stepThroughput } from "../../orchestrator/run/observe/flops.ts";
import { devicePeakTflops } from "../../orchestrator/run/observe/device_peaks.ts";
import { medianWithoutOne, StragglerDetector } from "../../orchestrator/run/observe/stragglers.ts";
import { RunState } from "../../orchestrator/run/observe/run_state.ts";
import { RunMetrics } from "../../orchestrator/run/observe/metrics.ts";
import { serveDashboard } from "../../orchestrator/run/observe/dashboard_server.ts";
import { parseConfig } from "../../orchestrator/config/load.ts";
import { observeConfig } from "../../orchestrator/run/observe/observe_config.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import type { LedgerRecord } from "../../orchestrator/ledger/ledger.ts";
import { observeOraclesMissing, readTensorBoard } from "./observe_harness.ts";

Deno.test("observe: CRC32C check value", () => {
  assertEquals(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

Deno.test({
  name: "observe: TensorBoard reads the event files; a re-executed step replaces the later ones",
  ignore: observeOraclesMissing !== undefined,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-tb-" });
  try {
    const w = new TensorBoardWriter(dir);
    for (let s = 1; s <= 5; s++) await w.scalars(s, [["train/loss", 5 - s / 10], ["train/lr", 1e-3 * s]]);
    w.close();
    // A resumed run: a new writer learns the steps already there, then re-executes from step 4.
    const w2 = new TensorBoardWriter(dir);
    const have = await w2.existingSteps();
    assertEquals(have, [1, 2, 3, 4, 5]);
    w2.lastStep = have[have.length - 1];
    for (let s = 4; s <= 6; s++) await w2.scalars(s, [["train/loss", 100 + s]]);
    w2.close();
    const tb = await readTensorBoard(dir);
    assertEquals(tb["train/loss"].map(([s]) => s), [1, 2, 3, 4, 5, 6]);
    assertEquals(tb["train/loss"].map(([, v]) => v), [4.9, 4.8, 4.7, 104, 105, 106].map(Math.fround));
    assertEquals(tb["train/lr"].map(([s]) => s), [1, 2, 3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("observe: model FLOPs per sequence match a hand count; MFU is n/a without a peak", () => {
  const m = MODEL_PRESETS["gpt-7b"];
  const s = 4096;
  // Forward per token: 24·h² per layer of matmuls + 4·s·h attention, 2·h·V LM head; training is 3x forward.
  const fwd = s * (m.layers * (24 * m.hidden ** 2 + 4 * s * m.hidden) + 2 * m.hidden * m.vocab);
  assertClose(sequenceFlops(m, s), 3 * fwd, 1e-12 * fwd);
  const t = stepThroughput(1e12 * 4, 1000, [1, 1, 2, 4]);
  assertClose(t.tflopsPerDevice, 1, 1e-12);
  assertClose(t.mfu!, 4 / 8, 1e-12);
  assertEquals(stepThroughput(1e12, 1000, [312, null]).mfu, null);
});

Deno.test("observe: device peaks from the table and the config, none for CPUs", () => {
  assertEquals(devicePeakTflops("cuda:0 NVIDIA A100-SXM4-80GB"), 312);
  assertEquals(devicePeakTflops("cuda:3 NVIDIA H100 PCIe"), 756);
  assertEquals(devicePeakTflops("cuda:3 NVIDIA H100 80GB HBM3"), 989);
  assertEquals(devicePeakTflops("cpu:2 cpu (TypeScript reference, f32)"), null);
  assertEquals(devicePeakTflops("webgpu:0 llvmpipe (LLVM 15.0.6, 256 bits)"), null);
  assertEquals(devicePeakTflops("cpu:2 cpu", { cpu: 0.5 }), 0.5);
  assertEquals(devicePeakTflops("cuda:0 NVIDIA A100", { a100: 280 }), 280);
});

function rec(step: number, groups: { ranks: number[]; measured: number; predicted: number }[]): LedgerRecord {
  return {
    step,
    plan: {
      strategy: "flexsp",
      microBatches: [{
        predictedMs: 0,
        measuredMs: 0,
        groups: groups.map((g) => ({
          degree: g.ranks.length,
          ranks: g.ranks,
          sequences: [1],
          indices: [0],
          lengths: [100],
          predictedMs: g.predicted,
          measuredMs: g.measured,
          loss: 1,
          tokens: 99,
        })),
      }],
    },
  } as unknown as LedgerRecord;
}

Deno.test("observe: a rank slow for k steps in a row is a straggler; a cluster slower than predicted is not", () => {
  const ranks = [0, 1, 2, 3].map((r) => ({
    rank: r,
    host: r < 2 ? "gpu0" : "gpu1",
    node: "",
    device: r % 2,
    deviceName: `cuda:${r % 2} NVIDIA A100`,
    peakTflops: 312,
  }));
  const d = new StragglerDetector({ factor: 2, steps: 3, minMs: 50 });
  // Everyone 3x slower than predicted: a stale cost model, not a straggler.
  for (let s = 1; s <= 4; s++) {
    assertEquals(
      d.observe(rec(s, [0, 1, 2, 3].map((r) => ({ ranks: [r], measured: 300, predicted: 100 }))), ranks),
      [],
    );
  }
  // Rank 3 at 8x for three steps, regrouped each step: reported once, with host, device and peers elsewhere first.
  const shapes = [[[0], [1], [2], [3]], [[0, 1], [2], [3]], [[0], [1], [2, 3]]];
  const reports = [];
  for (let s = 5; s <= 8; s++) {
    const groups = shapes[s % 3].map((g) => ({ ranks: g, measured: g.includes(3) ? 800 : 300, predicted: 100 }));
    reports.push(...d.observe(rec(s, groups), ranks));
  }
  assertEquals(reports.map((r) => r.rank), [3]);
  assertEquals([reports[0].host, reports[0].device, reports[0].step], ["gpu1", 1, 7]);
  assertEquals(reports[0].peers.map((p) => p.host), ["gpu0", "gpu0", "gpu1"]);
  assert(reports[0].text.includes("rank 3 on gpu1"), reports[0].text);
  assert(d.active.has(3));
});

Deno.test("observe: the dashboard answers 401 without the token and serves /metrics with it", async () => {
  const st = new RunState({
    runId: "r",
    name: "n",
    runDir: "/x",
    totalSteps: 3,
    model: "m",
    configText: "",
    fingerprintHash: "f",
    datasetHash: "d",
    profileHash: "p",
    profileSource: "s",
    resumeCommand: "c",
  });
  const d = serveDashboard(st, new RunMetrics(st));
  try {
    const url = new URL(d.url);
    assertEquals(url.hostname, "127.0.0.1");
    const no = await fetch(new URL("/metrics", url));
    await no.body?.cancel();
    assertEquals(no.status, 401);
    const bearer = await fetch(new URL("/metrics", url), { headers: { authorization: `Bearer ${d.token}` } });
    assert((await bearer.text()).includes("flexsp_step 0"));
  } finally {
    await d.close();
  }
});

Deno.test("observe: the observe section is checked and stays out of the resume fingerprint", async () => {
  const base = await Deno.readTextFile("configs/local.yaml");
  const c = parseConfig(base + "observe:\n  straggler_factor: 3\n  peak_tflops: { cpu: 0.1 }\n", "x.yaml");
  assertEquals(observeConfig(c).stragglerFactor, 3);
  assertEquals(observeConfig(c).peakTflops, { cpu: 0.1 });
  const msg = await assertThrows(() => parseConfig(base + "observe:\n  hang_factor: -1\n", "x.yaml"));
  assert(msg.includes("observe.hang_factor"), msg);
  const { configFingerprint } = await import("../../orchestrator/run/fingerprint.ts");
  assertEquals(configFingerprint(c), configFingerprint(parseConfig(base, "x.yaml")));
});

Deno.test("stragglers: the median of the other ranks' ratios, computed once per step, equals removing each in turn", () => {
  const cases = [[], [2], [1, 3], [1, 1, 1, 5], [4, 1, 3, 1, 2, 2, 9], [0.5, 2, 2, 2, 1.5, 3, 0.5, 7]];
  for (const xs of cases) {
    const f = medianWithoutOne(xs);
    xs.forEach((v, i) => {
      const others = xs.filter((_, j) => j !== i).sort((a, b) => a - b);
      const expected = others.length ? others[Math.floor((others.length - 1) / 2)] : 1;
      assertEquals(f(v), expected, `${xs} without index ${i}`);
    });
  }
});
