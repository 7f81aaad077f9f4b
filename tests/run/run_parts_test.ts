// The pieces of the step loop that need no cluster: executor plans and ledger records from plans and results,
// plan replay, the ledger cut on resume, the checkpoint store (complete / half-written / corrupted, retention),
// config fingerprints and the learning-rate schedule.

import { CheckpointStore, type ManifestPart, type OrchestratorState } from "../../orchestrator/run/checkpoint_store.ts";
import { configFingerprint, diffFingerprints } from "../../orchestrator/run/fingerprint.ts";
import { readLedger, truncateLedger } from "../../orchestrator/ledger/ledger.ts";
import { learningRate } from "../../orchestrator/run/lr_schedule.ts";
import { replayPlan, type StepDone, stepRecord, toExecutorPlan } from "../../orchestrator/ledger/step_record.ts";
import { parseConfig } from "../../orchestrator/config/load.ts";
import type { Plan } from "../../orchestrator/planner/plan_types.ts";
import type { Batch } from "../../orchestrator/data/sampler.ts";
import { assert, assertEquals } from "../assert.ts";

const batch: Batch = { ids: [40, 41, 42, 43], offsets: [0, 100, 300, 310], lengths: [100, 200, 10, 50], epoch: 2 };
const plan: Plan = {
  strategy: "flexsp",
  microBatches: [
    {
      predictedMs: 9,
      groups: [
        { degree: 2, ranks: [0, 1], sequences: [1], lengths: [200], predictedMs: 9, spansNodes: false },
        { degree: 1, ranks: [2], sequences: [0, 2], lengths: [100, 10], predictedMs: 5, spansNodes: false },
      ],
    },
    {
      predictedMs: 3,
      groups: [{ degree: 1, ranks: [0], sequences: [3], lengths: [50], predictedMs: 3, spansNodes: false }],
    },
  ],
  predictedMs: 12,
  solveMs: 4,
  lowerBoundMs: 10,
  dropped: [],
  details: {},
};

const done = (rank: number, mbs: [number, number, number][], ms: number): StepDone => ({
  type: "step_done",
  rank,
  step: 5,
  microBatches: mbs.map(([m, lossSum, tokens]) => ({ ms: m, lossSum, tokens })),
  ms,
});

Deno.test("executor plan: sequence refs from the batch, idle ranks get empty groups, globalTokens = sum(len - 1)", () => {
  const x = toExecutorPlan(5, plan, batch, 0.001, 4);
  assertEquals(x.globalTokens, 99 + 199 + 9 + 49);
  assertEquals(x.microBatches[0].groups.map((g) => g.ranks), [[0, 1], [2], [3]]);
  assertEquals(x.microBatches[1].groups.map((g) => g.ranks), [[0], [1], [2], [3]]);
  assertEquals(x.microBatches[0].groups[1].sequences, [
    { id: 40, offset: 0, length: 100 },
    { id: 42, offset: 300, length: 10 },
  ]);
  assertEquals(x.lr, 0.001);
});

Deno.test("executor plan: an idle group of any degree becomes degree-1 groups; groups carry their predicted ms", () => {
  const idle: Plan = {
    ...plan,
    microBatches: [{
      predictedMs: 9,
      groups: [
        { degree: 2, ranks: [0, 1], sequences: [1], lengths: [200], predictedMs: 9, spansNodes: false },
        { degree: 2, ranks: [2, 3], sequences: [], lengths: [], predictedMs: 0, spansNodes: false },
      ],
    }],
  };
  const x = toExecutorPlan(5, idle, batch, 0.001, 4);
  assertEquals(x.microBatches[0].groups.map((g) => [g.degree, g.ranks, g.predictedMs]), [
    [2, [0, 1], 9],
    [1, [2], undefined],
    [1, [3], undefined],
  ]);
});

Deno.test("ledger record: loss summed over ranks, group time = max over its ranks, overhead = wall - slowest rank", () => {
  const results = [
    done(0, [[8, 100, 199], [3, 30, 49]], 14),
    done(1, [[9, 0, 0], [0.1, 0, 0]], 15),
    done(2, [[5, 50, 108], [0.1, 0, 0]], 13),
    done(3, [[0.1, 0, 0], [0.1, 0, 0]], 12),
  ];
  const r = stepRecord(5, plan, batch, 0.001, results, {
    wallMs: 17,
    dispatchMs: 0.2,
    solveMs: 4,
    planWaitMs: 0,
    solveHidden: true,
    planSource: "solved",
  });
  assertEquals(r.loss, (100 + 30 + 50) / (199 + 49 + 108));
  assertEquals([r.tokens, r.targetTokens, r.sequences.length, r.epoch], [360, 356, 4, 2]);
  assertEquals([r.measuredMs, r.wallMs, r.overheadMs, r.microBatchMs], [15, 17, 2, 9 + 3]);
  const g0 = r.plan.microBatches[0].groups[0];
  assertEquals([g0.measuredMs, g0.sequences, g0.indices, g0.lengths, g0.tokens], [9, [41], [1], [200], 199]);
  assertEquals(g0.loss, 100 / 199);
  for (const k of ["step", "loss", "tokens", "predictedMs", "measuredMs", "plan", "solveMs", "solveHidden"]) {
    assert(k in r, `ledger record has ${k}`);
  }
  // Replaying the record on the same batch gives the same executor plan; on another batch or world size, nothing.
  const replayed = replayPlan(JSON.parse(JSON.stringify(r)), batch, 4)!;
  assertEquals(toExecutorPlan(5, replayed, batch, 0.001, 4), toExecutorPlan(5, plan, batch, 0.001, 4));
  assertEquals(replayPlan(r, { ...batch, ids: [40, 41, 99, 43] }, 4), undefined);
  assertEquals(replayPlan(r, batch, 3), undefined);
});

Deno.test("ledger cut on resume: later records move to ledger.discarded.jsonl; a torn last line is ignored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines = [1, 2, 3, 4, 5].map((step) => JSON.stringify({ step, loss: step }));
    await Deno.writeTextFile(`${dir}/ledger.jsonl`, lines.join("\n") + "\n" + '{"step":6,"lo');
    const dropped = await truncateLedger(dir, 3);
    assertEquals(dropped.map((r) => r.step), [4, 5]);
    assertEquals((await readLedger(`${dir}/ledger.jsonl`)).map((r) => r.step), [1, 2, 3]);
    assertEquals((await readLedger(`${dir}/ledger.discarded.jsonl`)).map((r) => r.step), [4, 5]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function state(step: number): OrchestratorState {
  return {
    version: 1,
    runId: "r",
    step,
    sampler: { kind: "dataset", seed: 1, epoch: 0, cursor: step * 4, epochRng: 9, sequences: 100 },
    fingerprintHash: "f",
    datasetHash: "d",
    profileHash: "p",
    worldSize: 2,
    ranks: [],
    savedAt: "",
  };
}

Deno.test("checkpoint store: latest only when complete; corrupted or half-written ones are skipped; retention", async () => {
  const root = await Deno.makeTempDir();
  const store = new CheckpointStore(root);
  const save = async (step: number) => {
    const dir = await store.prepare(step);
    const parts: ManifestPart[] = [];
    for (const rank of [0, 1]) {
      const bytes = new TextEncoder().encode(`state of rank ${rank} at ${step}`);
      await Deno.writeFile(`${dir}/rank-${rank}.ckpt`, bytes);
      const sha = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      parts.push({
        rank,
        node: 0,
        host: "h",
        transport: "local",
        path: `${dir}/rank-${rank}.ckpt`,
        sha256: sha,
        bytes: bytes.length,
      });
    }
    await store.commit(state(step), parts);
  };
  const local = () => true;
  try {
    for (const s of [2, 4, 6]) await save(s);
    // Step 8 was being saved when the process died: parts, no manifest.
    await Deno.mkdir(`${root}/step-00000008`);
    await Deno.writeTextFile(`${root}/step-00000008/rank-0.ckpt`, "half");
    assertEquals((await Deno.readTextFile(`${root}/latest`)).trim(), "step-00000006");
    assertEquals(await store.candidates(), ["step-00000006", "step-00000008", "step-00000004", "step-00000002"]);
    const half = await store.verify("step-00000008", local);
    assertEquals(half.ok ? "" : half.reason, "no manifest (the checkpoint was never completed)");
    const good = await store.verify("step-00000006", local);
    assert(good.ok && good.checkpoint.state.sampler.kind === "dataset" && good.checkpoint.state.step === 6);
    // Corrupt one byte of a part (same size): detected.
    const p = `${root}/step-00000006/rank-1.ckpt`;
    const b = await Deno.readFile(p);
    b[3] ^= 0x20;
    await Deno.writeFile(p, b);
    const bad = await store.verify("step-00000006", local);
    assertEquals(bad.ok ? "" : bad.reason, `rank 1 part ${p} does not match its sha256`);
    // Parts on other nodes are left to the executors to check.
    assert((await store.verify("step-00000006", () => false)).ok);
    // A truncated part.
    await Deno.truncate(`${root}/step-00000004/rank-0.ckpt`, 3);
    const short = await store.verify("step-00000004", local);
    assert(!short.ok && short.reason.includes("has 3 bytes"), JSON.stringify(short));
    // A tampered orchestrator part.
    await Deno.writeTextFile(`${root}/step-00000002/orchestrator.json`, JSON.stringify(state(3)));
    const tampered = await store.verify("step-00000002", local);
    assert(!tampered.ok && tampered.reason.includes("orchestrator.json"), JSON.stringify(tampered));
    // Retention: keep the newest 2 complete ones; drop the stale half-written one below them.
    await save(10);
    const removed = await store.prune(2);
    assertEquals(removed.sort(), ["step-00000002", "step-00000004", "step-00000008"]);
    assertEquals(await store.candidates(), ["step-00000010", "step-00000006"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

const CFG = `
cluster: { nodes: [{ host: a, transport: local, devices: 2 }], heartbeat_timeout_s: 5 }
model: { preset: gpt-tiny }
training: { lengths: wikipedia, lr: 0.003, checkpoint_interval: 10 }
planner: { memory_budget_gb: 1 }
`;

Deno.test("config fingerprint: operational keys may change, training keys may not", () => {
  const base = configFingerprint(parseConfig(CFG, "c.yaml"));
  const ops = configFingerprint(parseConfig(CFG, "c.yaml", [
    "training.checkpoint_interval=5",
    "cluster.heartbeat_timeout_s=30",
    "training.on_failure=restart",
    "cluster.nodes[0].port=2222",
  ]));
  assertEquals(diffFingerprints(base, ops), []);
  const math = configFingerprint(parseConfig(CFG, "c.yaml", ["training.lr=0.001", "cluster.nodes[0].devices=4"]));
  assertEquals(diffFingerprints(base, math), ["cluster.nodes[0].devices: 2 -> 4", "training.lr: 0.003 -> 0.001"]);
});

Deno.test("learning rate: linear warmup, cosine decay to a tenth at the last step", () => {
  const t = { lr: 1, warmupSteps: 4, steps: 24 };
  assertEquals([1, 2, 4].map((s) => learningRate(t, s)), [0.25, 0.5, 1]);
  assertEquals(learningRate(t, 14), 0.55);
  assertEquals(learningRate(t, 24), 0.1);
  assert(learningRate(t, 10) > learningRate(t, 11), "decays");
});
