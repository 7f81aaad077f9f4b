// Real executor processes driven through the protocol and connected by the real TCP data plane on 127.0.0.1:
// end-to-end steps with bit-identical parameters across ranks, a heterogeneous SP plan checked against
// degree-1 on every group, checkpoint save/load, and the bad-input cases (bad plan, killed peer, wrong secret).

import type { ExecutorStepPlan } from "../../core/protocol.ts";
import { decodeState } from "../../kernels/checkpoint.ts";
import { CpuBackend } from "../../kernels/cpu/backend.ts";
import { SOLO_GROUP } from "../../kernels/group_comm.ts";
import { initParams, paramLayout, Prng } from "../../kernels/model.ts";
import { packGroup, rankSlice } from "../../kernels/packing.ts";
import { fileSource, type TokenSource } from "../../kernels/token_source.ts";
import { UlyssesGpt } from "../../kernels/ulysses_model.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { assert, assertArrayClose, assertEquals, assertIncludes } from "../assert.ts";
import {
  errorsOf,
  ExecutorProc,
  group,
  isType,
  loadAll,
  plan,
  saveAll,
  sequenceMaker,
  startRun,
  stepAll,
  stopAll,
  testInit,
} from "./executor_harness.ts";

const TINY = MODEL_PRESETS["gpt-tiny"];

const seqs = sequenceMaker();

Deno.test("executor processes: 4 ranks, mixed groups, 3 AdamW steps, bit-identical state on every rank, save/load", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-exec-" });
  const procs = await startRun(4, TINY);
  try {
    let firstLoss = 0, lastLoss = 0;
    const s = seqs([90, 33, 64, 17, 120]);
    for (let step = 0; step < 3; step++) {
      const p = plan(step, [
        { groups: [group([0, 1], [s[0], s[1]]), group([2], [s[2]]), group([3], [s[3]])] },
        { groups: [group([0, 1, 2, 3], [s[4]])] },
      ], 3e-3);
      const done = await stepAll(procs, p);
      for (const d of done) assertEquals(d.microBatches.length, 2, "micro-batch reports");
      // Each group reports once (its SP rank 0): tokens add up to the global target count.
      const tokens = done.reduce((a, d) => a + d.microBatches.reduce((b, m) => b + m.tokens, 0), 0);
      assertEquals(tokens, p.globalTokens, "tokens counted once per group");
      assertEquals(done[1].microBatches[0].tokens, 0, "non-zero SP rank reports no tokens");
      const loss = done.reduce((a, d) => a + d.microBatches.reduce((b, m) => b + m.lossSum, 0), 0) / p.globalTokens;
      assert(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
      if (step === 0) firstLoss = loss;
      lastLoss = loss;
      assert(done.every((d) => d.microBatches.every((m) => m.ms > 0)), "measured ms");
    }
    assert(lastLoss < firstLoss, `loss should fall on a repeated batch: ${firstLoss} -> ${lastLoss}`);
    const saved = await saveAll(procs, dir, "after3");
    for (const x of saved) assertEquals(x.sha256, saved[0].sha256, `rank ${x.rank} state differs from rank 0`);
    const st = decodeState(await Deno.readFile(saved[0].path), TINY, saved[0].path);
    assertEquals(st.step, 3, "AdamW step count in checkpoint");
    const init = Float32Array.from(initParams(paramLayout(TINY), 1234));
    assert(st.params.some((x, i) => x !== init[i]), "parameters changed");
    // load the step-3 state into every rank after a 4th step, then save again: identical to the step-3 file.
    await stepAll(procs, plan(3, [{ groups: [group([0, 1, 2, 3], [s[4]])] }]));
    await loadAll(procs, saved[0].path);
    const again = await saveAll(procs, dir, "reloaded");
    for (const x of again) assertEquals(x.sha256, saved[0].sha256, "load restores the exact state");
  } finally {
    await stopAll(procs);
    await Deno.remove(dir, { recursive: true });
  }
});

/** Reference: every group of every micro-batch at degree 1 in one process; returns group losses and m after step 1. */
async function reference(source: TokenSource, p: ExecutorStepPlan, seed: number) {
  const layout = paramLayout(TINY);
  const be = new CpuBackend();
  const grads = be.alloc(layout.total);
  const model = new UlyssesGpt(be, layout, be.upload(initParams(layout, seed)), grads);
  const losses: number[][] = [];
  for (const mb of p.microBatches) {
    const row: number[] = [];
    for (const g of mb.groups) {
      const toks = await Promise.all(g.sequences.map((s) => source.read(s)));
      const packed = packGroup(toks, 1, TINY.maxSeq, TINY.vocab);
      const r = await model.run(rankSlice(packed, 0), SOLO_GROUP, { lossScale: 1 / p.globalTokens });
      row.push(r.lossSum);
    }
    losses.push(row);
  }
  const g = be.downloadF64(grads);
  const norm = Math.sqrt(g.reduce((a, x) => a + x * x, 0));
  const clip = norm > 1 ? 1 / (norm + 1e-6) : 1;
  return { losses, m: g.map((x) => 0.1 * x * clip) };
}

Deno.test("executor processes: heterogeneous plan (SP 4 + 2 + 2, then 2 + 2 + 4) on 8 ranks equals degree 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-het-" });
  // A real uint16 token file.
  const rng = new Prng(77);
  const tokensPath = `${dir}/tokens.bin`;
  const data = Uint16Array.from({ length: 3000 }, () => rng.int(TINY.vocab));
  await Deno.writeFile(tokensPath, new Uint8Array(data.buffer));
  const s = seqs([300, 57, 129, 200, 31, 99, 160, 1, 64, 250, 77, 180], 5);
  const p = plan(0, [
    {
      groups: [group([0, 1, 2, 3], [s[0], s[1], s[2]]), group([4, 5], [s[3], s[4]]), group([6, 7], [s[5], s[6], s[7]])],
    },
    { groups: [group([0, 1], [s[8]]), group([2, 3], [s[9], s[10]]), group([4, 5, 6, 7], [s[11]])] },
  ]);
  const procs = await startRun(8, TINY, { init: () => ({ dataset: { tokensPath, tokenBytes: 2 } }) });
  try {
    const done = await stepAll(procs, p);
    const source = await fileSource(tokensPath, 2);
    const ref = await reference(source, p, testInit(0, 8, TINY).seed);
    source.close();
    p.microBatches.forEach((mb, i) =>
      mb.groups.forEach((g, gi) => {
        const lead = done[g.ranks[0]].microBatches[i];
        assertArrayClose([lead.lossSum], [ref.losses[i][gi]], 0, 2e-5, `mb ${i} group ${gi} loss`);
        assertEquals(lead.tokens, g.sequences.reduce((a, x) => a + x.length - 1, 0), "group tokens");
        for (const r of g.ranks.slice(1)) assertEquals(done[r].microBatches[i].lossSum, 0, "reported once");
      })
    );
    const saved = await saveAll(procs, dir, "het");
    for (const x of saved) assertEquals(x.sha256, saved[0].sha256, `rank ${x.rank} state differs`);
    const st = decodeState(await Deno.readFile(saved[0].path), TINY, saved[0].path);
    const scale = ref.m.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    assert(scale > 0, "non-zero gradient");
    // m after one AdamW step is (1-β1)·clip·gradient: the all-reduced gradient of the whole heterogeneous step.
    assertArrayClose(st.m, ref.m, 2e-4 * scale, 1e-3, "first moment (= clipped mean gradient) vs degree-1 reference");
  } finally {
    await stopAll(procs);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("executor processes: bad plans are refused by every rank with the same clear error, no hang", async () => {
  const procs = await startRun(3, TINY);
  try {
    const s = seqs([20, 30, 40]);
    const bad: [ExecutorStepPlan, RegExp][] = [
      [plan(0, [{ groups: [group([0, 1, 2], [s[0]])] }]), /SP degree 3 does not divide the model's 4 attention heads/],
      [plan(0, [{ groups: [group([0, 1], [s[0]])] }]), /rank\(s\) 2 are in no group/],
      [
        plan(0, [{ groups: [group([0, 1], [s[0]]), group([1, 2], [s[1]])] }]),
        /degree 2 does not match|rank 1 is also in group 0/,
      ],
      [
        plan(0, [{ groups: [group([0], [{ id: 1, offset: 0, length: 5000 }]), group([1], []), group([2], [])] }]),
        /length 5000/,
      ],
    ];
    for (const [p, re] of bad) {
      const errs = await errorsOf(procs, p);
      for (const e of errs) {
        assert(re.test(e.message), `unexpected message: ${e.message}`);
        assertEquals(e.fatal, false, "a refused plan is not fatal");
        assertEquals(e.echo, false, "a refused plan is the rank's own error, not an echo");
      }
    }
    // The executors are still usable.
    const done = await stepAll(
      procs,
      plan(0, [{ groups: [group([0], [s[0]]), group([1], [s[1]]), group([2], [s[2]])] }]),
    );
    assertEquals(done.length, 3);
  } finally {
    await stopAll(procs);
  }
});

Deno.test("executor processes: a peer killed mid-step makes the others fail fast with a fatal error", async () => {
  // Rank 2 exits inside the step (fault injection), while the others wait for it in the group's first collective.
  const procs = await startRun(4, TINY, { env: { FLEXSP_STEP_FAULT: "2:exit" } });
  try {
    const s = seqs([1000, 1000, 1000, 1000]);
    const p = plan(0, [{ groups: [group([0, 1, 2, 3], [s[0], s[1], s[2], s[3]])] }]);
    const t0 = Date.now();
    await Promise.all(procs.map((x) => x.send({ type: "step", plan: p })));
    assertEquals((await procs[2].status).code, 3, "rank 2 exits at the injected fault");
    for (const x of [procs[0], procs[1], procs[3]]) {
      const e = await x.next(isType("error"), 15_000, "error after peer loss");
      assert(e.fatal, "peer loss is fatal");
      assertEquals(e.echo, true, "a peer's loss noticed over the data plane is an echo");
      assert(/rank \d+ (disconnected|aborted|closed|connection failed)/.test(e.message), `message: ${e.message}`);
      const st = await x.status;
      assertEquals(st.code, 1, "exits 1 after a fatal error");
    }
    assert(Date.now() - t0 < 15_000, "no hang");
  } finally {
    await stopAll(procs);
  }
});

Deno.test("executor processes: a rank's own step error is no echo; its peers' errors, from its abort, are", async () => {
  const procs = await startRun(4, TINY, { env: { FLEXSP_STEP_FAULT: "1:error" } });
  try {
    const s = seqs([1000, 1000, 1000, 1000]);
    const p = plan(0, [{ groups: [group([0, 1, 2, 3], [s[0], s[1], s[2], s[3]])] }]);
    await Promise.all(procs.map((x) => x.send({ type: "step", plan: p })));
    const errs = await Promise.all(procs.map((x) => x.next(isType("error"), 15_000, "step error")));
    assertEquals(errs.map((e) => [e.fatal, e.echo]), [[true, true], [true, false], [true, true], [true, true]]);
    assertIncludes(errs[1].message, "injected fault (FLEXSP_STEP_FAULT)");
  } finally {
    await stopAll(procs);
  }
});

Deno.test("executor processes: a wrong secret fails the rendezvous with clear errors on both sides", async () => {
  const env = { FLEXSP_DP_CONNECT_TIMEOUT_MS: "2000" };
  const procs = [new ExecutorProc(0, env), new ExecutorProc(1, env)];
  try {
    await procs[0].send({ type: "init", init: testInit(0, 2, TINY) });
    await procs[1].send({ type: "init", init: testInit(1, 2, TINY, { secret: "not-the-run-secret" }) });
    const ready = await Promise.all(procs.map((p) => p.next(isType("ready"), 30_000, "ready")));
    const endpoints = ready.map((e) => e.endpoint);
    await Promise.all(procs.map((p) => p.send({ type: "peers", endpoints })));
    const [e0, e1] = await Promise.all(procs.map((p) => p.next(isType("error"), 10_000, "authentication error")));
    assert(/rank\(s\) 1 did not connect.*wrong secret/.test(e0.message), `listener side: ${e0.message}`);
    assert(/rank 0 rejected this rank: authentication failed: wrong data-plane secret/.test(e1.message), e1.message);
    assert(e0.fatal && e1.fatal, "fatal");
    assert(!procs.some((p) => p.events.some((e) => e.type === "connected")), "nobody connected");
  } finally {
    await stopAll(procs);
  }
});

Deno.test("executor processes: --kind webgpu trains like --kind cpu, or fails with a clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-wg-" });
  const procs = [new ExecutorProc(0, {}, "cpu"), new ExecutorProc(0, {}, "webgpu")];
  try {
    await Promise.all(procs.map((p) => p.send({ type: "init", init: testInit(0, 1, TINY) })));
    const first = await Promise.all(
      procs.map((p) => p.next((e) => e.type === "ready" || e.type === "error", 60_000, "ready")),
    );
    assertEquals(first[0].type, "ready", "cpu executor");
    if (first[1].type === "error") {
      // No backend module or no adapter on this machine: the error must say so.
      assert(/WebGPU executor: /.test(first[1].message) && first[1].fatal, first[1].message);
      return;
    }
    assert(first[1].type === "ready" && first[1].kind === "webgpu", "webgpu ready");
    const s = seqs([200, 65, 1]);
    const p = plan(0, [{ groups: [group([0], s)] }]);
    const done = await Promise.all(procs.map(async (x) => {
      await x.send({ type: "step", plan: p });
      return await x.next(isType("step_done"), 60_000, "step_done");
    }));
    assertArrayClose(
      [done[1].microBatches[0].lossSum],
      [done[0].microBatches[0].lossSum],
      0,
      1e-4,
      "webgpu vs cpu loss",
    );
    await Promise.all(procs.map((x, i) => x.send({ type: "save", path: `${dir}/k${i}.ckpt` })));
    const saved = await Promise.all(procs.map((x) => x.next(isType("saved"), 30_000, "saved")));
    const [a, b] = await Promise.all(saved.map(async (x) => decodeState(await Deno.readFile(x.path), TINY, x.path)));
    const scale = a.m.reduce((acc, x) => Math.max(acc, Math.abs(x)), 0);
    assertArrayClose(b.m, a.m, 1e-3 * scale, 1e-2, "webgpu vs cpu gradient (first moment)");
  } finally {
    await stopAll(procs);
    await Deno.remove(dir, { recursive: true });
  }
});
