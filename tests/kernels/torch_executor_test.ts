// The executor harness tests of the TypeScript executors, run against the PyTorch executor
// (kernels/torch/executor_main.py --kind torch-cpu, gloo on 127.0.0.1, one torch thread per process): initial
// parameters bit-identical to kernels/model.ts, a mixed SP plan equal to the TypeScript degree-1 reference, AdamW
// steps with exact sharded (DCP) save/load, an altered checkpoint refused by every rank, bad plans refused, a killed peer
// failing the others fast, and a wrong secret refused at the rendezvous. Skipped, with the reason, without torch.

import type { ExecutorStepPlan } from "../../core/protocol.ts";
import { decodeState } from "../../kernels/checkpoint.ts";
import { CpuBackend } from "../../kernels/cpu/backend.ts";
import { SOLO_GROUP } from "../../kernels/group_comm.ts";
import { initParams, paramLayout, Prng } from "../../kernels/model.ts";
import { packGroup, rankSlice } from "../../kernels/packing.ts";
import { fileSource } from "../../kernels/token_source.ts";
import { UlyssesGpt } from "../../kernels/ulysses_model.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { torchPython } from "../agents/torch_fixtures.ts";
import { torchModuleCommand } from "../../core/torch_package.ts";
import { assert, assertArrayClose, assertBitEqual, assertEquals } from "../assert.ts";
import {
  errorsOf,
  ExecutorProc,
  group,
  isType,
  plan,
  sequenceMaker,
  startRun,
  stepAll,
  stopAll,
  testInit,
} from "./executor_harness.ts";

const TINY = MODEL_PRESETS["gpt-tiny"];
const PACKAGE = new URL("../../kernels/torch", import.meta.url).pathname;
const MAIN = torchModuleCommand(PACKAGE, "executor_main", Deno.env.get("PYTHONPATH"));
const torch = await torchPython();
const ignore = !torch.ok;
if (!torch.ok) console.warn(`skipping the torch executor tests: ${torch.reason}`);
const command = (
  rank: number,
) => [torch.ok ? torch.python : "python3", ...MAIN.args, "--kind", "torch-cpu", "--device", `${rank}`];
const ENV = { FLEXSP_THREADS: "1", ...MAIN.env };
// Starting torch takes seconds per process, much longer on a busy machine.
const START_MS = 180_000;

const seqs = sequenceMaker();

type Saved = { path: string; files: { name: string; bytes: number; sha256: string }[] };

/** Every rank saves into the sharded checkpoint directory `dir/tag`. */
async function saveAll(procs: ExecutorProc[], dir: string, tag: string): Promise<Saved[]> {
  await Promise.all(procs.map((x) => x.send({ type: "save", path: `${dir}/${tag}` })));
  return await Promise.all(procs.map((x) => x.next(isType("saved"), 60_000, "saved"))) as Saved[];
}

/** Every file of a checkpoint, as the manifest lists them. */
const filesOf = (saved: Saved[]) => saved.flatMap((x) => x.files);

/** Every rank loads the checkpoint of `saved`. */
async function loadAll(procs: ExecutorProc[], saved: Saved[]): Promise<void> {
  await Promise.all(procs.map((x) => x.send({ type: "load", path: saved[0].path, files: filesOf(saved) })));
  await Promise.all(procs.map((x) => x.next(isType("loaded"), 60_000, "loaded")));
}

/** name -> sha256 of the tensor data files (DCP's .metadata holds a save id). */
const dataFiles = (saved: Saved[]) =>
  Object.fromEntries(filesOf(saved).filter((f) => f.name.endsWith(".distcp")).map((f) => [f.name, f.sha256]));

/** The whole state of a sharded checkpoint, converted to the flat format by `python3 -m kernels.torch.dcp_export --flat`. */
async function stateOf(saved: Saved[]) {
  const out = `${saved[0].path}.flat`;
  const exporter = torchModuleCommand(PACKAGE, "dcp_export", Deno.env.get("PYTHONPATH"));
  const r = await new Deno.Command(torch.ok ? torch.python : "python3", {
    args: [...exporter.args, saved[0].path, out, "--flat"],
    env: exporter.env,
  })
    .output();
  assert(r.success, new TextDecoder().decode(r.stderr));
  return decodeState(await Deno.readFile(out), TINY, out);
}

Deno.test({
  name: "torch-cpu executor processes: init, a mixed SP plan vs the TypeScript reference, AdamW, save/load, bad plans",
  ignore,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "flexsp-torch-exec-" });
    const rng = new Prng(77);
    const tokensPath = `${dir}/tokens.bin`;
    const data = Uint16Array.from({ length: 3000 }, () => rng.int(TINY.vocab));
    await Deno.writeFile(tokensPath, new Uint8Array(data.buffer));
    const procs = await startRun(4, TINY, {
      env: ENV,
      command,
      timeoutMs: START_MS,
      init: () => ({ dataset: { tokensPath, tokenBytes: 2 } }),
    });
    try {
      const init = await saveAll(procs, dir, "init");
      await t.step("initial parameters are bit-identical to the TypeScript executors'", async () => {
        const st = await stateOf(init);
        assertEquals(st.step, 0);
        assertBitEqual(st.params, initParams(paramLayout(TINY), testInit(0, 4, TINY).seed), "initial parameters");
      });

      await t.step("SP 2+1+1 then 4 equals the TypeScript degree-1 reference (losses and gradient)", async () => {
        const s = seqs([300, 57, 129, 200, 31, 99, 160, 1, 64], 5);
        const p = plan(0, [
          { groups: [group([0, 1], [s[0], s[1], s[2]]), group([2], [s[3], s[4]]), group([3], [s[5], s[6], s[7]])] },
          { groups: [group([0, 1, 2, 3], [s[8]])] },
        ]);
        const done = await stepAll(procs, p);
        // The reference: every group at degree 1 on the TypeScript CPU backend.
        const layout = paramLayout(TINY);
        const be = new CpuBackend();
        const grads = be.alloc(layout.total);
        const model = new UlyssesGpt(be, layout, be.upload(initParams(layout, 1234)), grads);
        const source = await fileSource(tokensPath, 2);
        for (const [i, mb] of p.microBatches.entries()) {
          for (const [gi, g] of mb.groups.entries()) {
            const packed = packGroup(await Promise.all(g.sequences.map((q) => source.read(q))), 1, TINY.maxSeq, 256);
            const r = await model.run(rankSlice(packed, 0), SOLO_GROUP, { lossScale: 1 / p.globalTokens });
            const lead = done[g.ranks[0]].microBatches[i];
            assertArrayClose([lead.lossSum], [r.lossSum], 0, 1e-5, `micro-batch ${i} group ${gi} loss`);
            assertEquals(lead.tokens, packed.targetCount, "group tokens");
            for (const rk of g.ranks.slice(1)) assertEquals(done[rk].microBatches[i].lossSum, 0, "reported once");
          }
        }
        source.close();
        const g = be.downloadF64(grads);
        const norm = Math.sqrt(g.reduce((a, x) => a + x * x, 0));
        const clip = norm > 1 ? 1 / (norm + 1e-6) : 1;
        const refM = g.map((x) => 0.1 * x * clip);
        const st = await stateOf(await saveAll(procs, dir, "mixed"));
        const scale = refM.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
        assertArrayClose(st.m, refM, 1e-4 * scale, 1e-3, "first moment (= clipped mean gradient) vs TypeScript");
      });

      await t.step(
        "3 AdamW steps: the loss falls, load restores the state exactly, an altered checkpoint is refused",
        async () => {
          await loadAll(procs, init);
          const s = seqs([90, 33, 64, 17, 120]);
          const losses: number[] = [];
          for (let step = 0; step < 3; step++) {
            const p = plan(step, [
              { groups: [group([0, 1], [s[0], s[1]]), group([2], [s[2]]), group([3], [s[3]])] },
              { groups: [group([0, 1, 2, 3], [s[4]])] },
            ], 3e-3);
            const done = await stepAll(procs, p);
            const tokens = done.reduce((a, d) => a + d.microBatches.reduce((b, m) => b + m.tokens, 0), 0);
            assertEquals(tokens, p.globalTokens, "tokens counted once per group");
            losses.push(done.reduce((a, d) => a + d.microBatches.reduce((b, m) => b + m.lossSum, 0), 0) / tokens);
            assert(done.every((d) => d.microBatches.every((m) => m.ms > 0)), "measured ms");
          }
          assert(losses[2] < losses[0], `loss should fall on a repeated batch: ${losses}`);
          const saved = await saveAll(procs, dir, "after3");
          assertEquals((await stateOf(saved)).step, 3, "AdamW steps");
          await stepAll(procs, plan(3, [{ groups: [group([0, 1, 2, 3], [s[4]])] }]));
          await loadAll(procs, saved);
          const again = await saveAll(procs, dir, "reloaded");
          assertEquals(dataFiles(again), dataFiles(saved), "load restores the exact state");
          const files = filesOf(saved).map((f) => ({ ...f, sha256: "f".repeat(64) }));
          await Promise.all(procs.map((x) => x.send({ type: "load", path: saved[0].path, files })));
          // Every rank refuses it together; rank 0 alone reports it.
          const e = await procs[0].next(isType("error"), 30_000, "sha mismatch");
          assert(/sha256 [0-9a-f]{12}… is not ffffffffffff…/.test(e.message) && !e.fatal, e.message);
          await loadAll(procs, saved);
        },
      );

      await t.step("bad plans are refused by every rank with the same clear error, no hang", async () => {
        const s = seqs([20, 30, 40]);
        const bad: [ExecutorStepPlan, RegExp][] = [
          [
            plan(0, [{ groups: [group([0, 1, 2], [s[0]]), group([3], [])] }]),
            /SP degree 3 does not divide the model's 4 attention heads/,
          ],
          [plan(0, [{ groups: [group([0, 1], [s[0]]), group([2], [])] }]), /rank\(s\) 3 are in no group/],
          [
            plan(0, [{ groups: [group([0], [s[0]]), group([1, 2], [s[1]]), group([3], [])] }]),
            /ranks \[1, 2\] are not an aligned power-of-two block of the SP-group pool/,
          ],
          [
            plan(0, [{ groups: [group([0, 1, 2, 3], [{ id: 1, offset: 0, length: 5000 }])] }]),
            /length 5000/,
          ],
        ];
        for (const [p, re] of bad) {
          const errs = await errorsOf(procs, p);
          for (const e of errs) {
            assert(re.test(e.message), `unexpected message: ${e.message}`);
            assertEquals(e.fatal, false, "a refused plan is not fatal");
          }
        }
        const done = await stepAll(procs, plan(0, [{ groups: [group([0, 1], [s[0]]), group([2, 3], [s[1], s[2]])] }]));
        assertEquals(done.length, 4, "still usable");
      });
    } finally {
      await stopAll(procs);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "torch-cpu executor processes: a peer killed mid-step makes the others fail fast with a fatal error",
  ignore,
  async fn() {
    // Rank 1 exits inside the step (fault injection), while rank 0 waits for it in the group's first collective.
    const procs = await startRun(2, TINY, {
      env: { ...ENV, FLEXSP_DP_OP_TIMEOUT_MS: "30000", FLEXSP_STEP_FAULT: "1:exit" },
      command,
      timeoutMs: START_MS,
    });
    try {
      const mbs = [{ groups: [group([0, 1], seqs([1024, 1024]))] }];
      const t0 = Date.now();
      await Promise.all(procs.map((x) => x.send({ type: "step", plan: plan(0, mbs) })));
      assertEquals((await procs[1].status).code, 3, "rank 1 exits at the injected fault");
      const e = await procs[0].next(isType("error"), 20_000, "error after peer loss");
      assert(e.fatal, "peer loss is fatal");
      assert(/step 0, micro-batch 0, SP group of degree 2 ranks \[0, 1\]/.test(e.message), e.message);
      assert(/a peer rank disconnected or aborted/.test(e.message), e.message);
      assertEquals((await procs[0].status).code, 1, "exits 1 after a fatal error");
      assert(Date.now() - t0 < 20_000, "no hang");
    } finally {
      await stopAll(procs);
    }
  },
});

Deno.test({
  name: "torch-cpu executor processes: a wrong secret fails the rendezvous with clear errors on both sides",
  ignore,
  async fn() {
    const env = { ...ENV, FLEXSP_DP_CONNECT_TIMEOUT_MS: "10000" };
    const procs = [new ExecutorProc(0, env, "cpu", command(0)), new ExecutorProc(1, env, "cpu", command(1))];
    try {
      await procs[0].send({ type: "init", init: testInit(0, 2, TINY) });
      await procs[1].send({ type: "init", init: testInit(1, 2, TINY, { secret: "not-the-run-secret" }) });
      const ready = await Promise.all(procs.map((p) => p.next(isType("ready"), START_MS, "ready")));
      assertEquals(ready[0].kind, "torch-cpu");
      assert(/^torch-cpu \(.+\)$/.test(ready[0].device), ready[0].device);
      assert(ready[0].endpoint.port > 0 && ready[0].endpoint.host === "127.0.0.1", "rank 0 listens on bindHost");
      const endpoints = ready.map((e) => e.endpoint);
      await Promise.all(procs.map((p) => p.send({ type: "peers", endpoints })));
      const [e0, e1] = await Promise.all(procs.map((p) => p.next(isType("error"), 20_000, "authentication error")));
      assert(/rank 1 presented another run's secret \(wrong data-plane secret\)/.test(e0.message), e0.message);
      assert(/rank 0 rejected this rank: wrong data-plane secret/.test(e1.message), e1.message);
      assert(e0.fatal && e1.fatal, "fatal");
      assert(!procs.some((p) => p.events.some((e) => e.type === "connected")), "nobody connected");
    } finally {
      await stopAll(procs);
    }
  },
});
