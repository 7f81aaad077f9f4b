// `deno task launch` on the embedded default (4 local CPU executors), as real processes: exact resume after SIGKILL
// (with a corrupted and a half-written checkpoint in the way), refused config / dataset changes, Ctrl-C, a crashed
// executor under each failure policy, and the loss falling over the default's first 50 steps.

import { prepareDataset } from "../../orchestrator/data/prepare.ts";
import { MODEL_PRESETS } from "../../core/model_shape.ts";
import { decodeState } from "../../kernels/checkpoint.ts";
import { requestGpuAdapter } from "../../kernels/webgpu/device.ts";
import { ensureXdgRuntimeDir } from "../../kernels/webgpu/device.ts";
import { assert, assertArrayClose, assertClose, assertEquals, assertIncludes } from "../assert.ts";
import {
  allExecutorPids,
  killLaunchAt,
  killRankAt,
  launchCli,
  ledger,
  leftAlive,
  manifestOf,
  shortRun,
  startLaunch,
} from "./launch_harness.ts";

const CONFIG = "configs/local.yaml";
const tmp = await Deno.makeTempDir({ prefix: "flexsp-launch-test-" });
/**
 * The default, shortened: 12 steps of 8 sequences of at most 256 tokens, checkpoints every 3, deterministic plans,
 * the config's inline cost constants (a profile measured for the default's model shape would not match).
 */
const FAST = shortRun(tmp, 12, 3);

let baseline: { losses: number[]; params: string[] } | undefined;

/** The uninterrupted 12-step run every other run is compared with (made once). */
async function reference(): Promise<{ losses: number[]; params: string[] }> {
  if (baseline) return baseline;
  const dir = `${tmp}/reference`;
  const r = await launchCli([CONFIG, ...FAST, "--run-dir", dir]);
  assertEquals(r.code, 0, r.out + r.err);
  const recs = await ledger(dir);
  assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  baseline = { losses: recs.map((x) => x.loss), params: (await manifestOf(dir, 12)).parts.map((p) => p.sha256) };
  return baseline;
}

async function sameAsReference(dir: string, steps = 12): Promise<void> {
  const ref = await reference();
  const recs = await ledger(dir);
  assertEquals(recs.map((x) => x.step), Array.from({ length: steps }, (_, i) => i + 1), "one record per step");
  assertEquals(recs.map((x) => x.loss), ref.losses, "bit-identical losses");
  assertEquals((await manifestOf(dir, 12)).parts.map((p) => p.sha256), ref.params, "identical parameters at the end");
}

Deno.test({
  name: "launch: killed with SIGKILL after step 7 and resumed, bit-identical losses and parameters; a corrupted and " +
    "a half-written checkpoint are skipped",
  sanitizeResources: false,
  fn: async () => {
    const ref = await reference();
    assert(ref.params.every((p) => p === ref.params[0]), "every rank holds the same state");
    const dir = `${tmp}/killed`;
    const killed = await killLaunchAt([CONFIG, ...FAST], dir, "step  7/12", 60_000);
    assertEquals(killed.signal, "SIGKILL");
    // The agent and the executors go away by themselves when the orchestrator dies.
    assertEquals(await leftAlive(await allExecutorPids(dir), 10_000), []);
    // Checkpoint 6 is corrupted (one flipped byte), and a checkpoint 9 was being written (parts, no manifest).
    const part = `${dir}/checkpoints/step-00000006/rank-1.ckpt`;
    const bytes = await Deno.readFile(part);
    bytes[bytes.length - 5] ^= 1;
    await Deno.writeFile(part, bytes);
    await Deno.mkdir(`${dir}/checkpoints/step-00000009`);
    await Deno.writeFile(`${dir}/checkpoints/step-00000009/rank-0.ckpt`, bytes.subarray(0, 1000));
    await Deno.writeTextFile(`${dir}/checkpoints/latest`, "step-00000009\n");

    const r = await launchCli([CONFIG, ...FAST, "--resume", dir]);
    assertEquals(r.code, 0, r.out + r.err);
    assertIncludes(
      r.err,
      "step-00000009: no manifest (the checkpoint was never completed); not used",
      `step-00000006: rank 1 part ${part} does not match its sha256; not used`,
      "resumed from checkpoint step-00000003 (step 3), continuing at step 4",
    );
    assertIncludes(r.out, "step  4/12", "plan replayed", "step 12/12");
    await sameAsReference(dir);
    // The records of steps 4-7 from before the kill were set aside, and their plans replayed.
    const discarded = (await Deno.readTextFile(`${dir}/ledger.discarded.jsonl`)).trim().split("\n");
    assertEquals(discarded.map((l) => JSON.parse(l).step), [4, 5, 6, 7]);
    assertEquals((await ledger(dir)).filter((x) => x.planSource === "replayed").map((x) => x.step), [4, 5, 6, 7]);
  },
});

Deno.test({
  name: "launch: resume refuses a changed config or dataset (naming what changed) unless --force",
  sanitizeResources: false,
  fn: async () => {
    await reference();
    const dir = `${tmp}/reference`;
    const lr = await launchCli([CONFIG, ...FAST, "--set", "training.lr=0.001", "--resume", dir]);
    assertEquals(lr.code, 1, lr.err);
    assertIncludes(
      lr.err,
      `cannot resume ${await Deno.realPath(dir)}`,
      "config training.lr: 0.003 -> 0.001",
      "--force",
    );
    assert(!lr.err.includes("    at "), "no stack trace");
    await Deno.writeTextFile(`${tmp}/other.txt`, "another corpus\n\nwith other documents\n");
    await prepareDataset({ input: `${tmp}/other.txt`, out: `${tmp}/other` });
    const ds = await launchCli([CONFIG, ...FAST, "--set", `training.dataset=${tmp}/other`, "--resume", dir]);
    assertEquals(ds.code, 1, ds.err);
    assertIncludes(ds.err, "dataset: content hash");
    // Forced: it loads the last checkpoint; the run had finished, so there is nothing left to do.
    const forced = await launchCli([CONFIG, ...FAST, "--set", "training.lr=0.001", "--resume", dir, "--force"]);
    assertEquals(forced.code, 0, forced.err);
    assertIncludes(forced.err, "warning: resuming with changes (--force)", "already finished at step 12");
    // Every complete checkpoint damaged: the run is not silently started over.
    const damaged = `${tmp}/damaged`;
    await new Deno.Command("cp", { args: ["-r", dir, damaged] }).output();
    for await (const e of Deno.readDir(`${damaged}/checkpoints`)) {
      if (!e.isDirectory) continue;
      const m = JSON.parse(await Deno.readTextFile(`${damaged}/checkpoints/${e.name}/manifest.json`));
      for (const part of m.parts) part.path = part.path.replace(await Deno.realPath(dir), damaged);
      await Deno.writeTextFile(`${damaged}/checkpoints/${e.name}/manifest.json`, JSON.stringify(m));
      await Deno.writeTextFile(`${damaged}/checkpoints/${e.name}/rank-0.ckpt`, "garbage");
    }
    const none = await launchCli([CONFIG, ...FAST, "--resume", damaged]);
    assertEquals(none.code, 1, none.err);
    assertIncludes(none.err, "has 7 bytes, manifest says", "no usable checkpoint in ");
  },
});

Deno.test({
  name: "launch: Ctrl-C finishes the step, checkpoints and exits 130 with the resume command; resume completes",
  sanitizeResources: false,
  fn: async () => {
    const dir = `${tmp}/interrupted`;
    const p = startLaunch([CONFIG, ...FAST, "--run-dir", dir]);
    await p.waitFor("step  4/12", 60_000);
    p.child.kill("SIGINT");
    const r = await p.finish();
    assertEquals(r.code, 130, r.err);
    const last = (await ledger(dir)).at(-1)!.step;
    assertIncludes(
      r.err,
      `stopped after step ${last}; the last checkpoint is step ${last}. Resume with:`,
      `--resume ${await Deno.realPath(dir)}`,
    );
    const resumed = await launchCli([CONFIG, ...FAST, "--resume", dir]);
    assertEquals(resumed.code, 0, resumed.err);
    await sameAsReference(dir);
  },
});

Deno.test({
  name: "launch: a crashed executor stops the step and is named (host, device, group, sequences); policies stop, " +
    "restart and elastic",
  sanitizeResources: false,
  fn: async (t) => {
    await reference();
    await t.step(
      "stop: exit 2 with the report and the resume command; the resume completes the run exactly",
      async () => {
        const dir = `${tmp}/stop`;
        const r = await killRankAt(
          [CONFIG, ...FAST, "--set", "training.on_failure=stop"],
          dir,
          "step  4/12",
          60_000,
          2,
        );
        assertEquals(r.code, 2, r.out + r.err);
        assertIncludes(
          r.err,
          "failed: rank 2: executor killed by signal KILL",
          "cause: node 0 (localhost)",
          "rank 2 (device 2, cpu:2",
          "SP group of degree",
          "with sequences",
          "run stopped (training.on_failure: stop); the last checkpoint is step 3. Resume with:",
          `--resume ${await Deno.realPath(dir)}`,
        );
        assertEquals(await leftAlive(await allExecutorPids(dir), 10_000), []);
        const resumed = await launchCli([CONFIG, ...FAST, "--set", "training.on_failure=stop", "--resume", dir]);
        assertEquals(resumed.code, 0, resumed.err);
        await sameAsReference(dir);
      },
    );
    await t.step("restart: relaunched and resumed automatically, same losses as without the crash", async () => {
      const dir = `${tmp}/restart`;
      const r = await killRankAt(
        [CONFIG, ...FAST, "--set", "training.on_failure=restart"],
        dir,
        "step  5/12",
        60_000,
        1,
      );
      assertEquals(r.code, 0, r.out + r.err);
      assertIncludes(r.err, "rank 1: executor killed by signal KILL", "restart 1/3: relaunching");
      await sameAsReference(dir);
    });
    await t.step("elastic: re-planned on the 3 devices left, from the last checkpoint", async () => {
      const dir = `${tmp}/elastic`;
      const r = await killRankAt(
        [CONFIG, ...FAST, "--set", "training.on_failure=elastic"],
        dir,
        "step  4/12",
        60_000,
        3,
      );
      assertEquals(r.code, 0, r.out + r.err);
      assertIncludes(r.err, "elastic restart 1/3: without the device of rank 3 on node 0 (localhost), on 3 device(s)");
      const recs = await ledger(dir);
      assertEquals(recs.map((x) => x.step), Array.from({ length: 12 }, (_, i) => i + 1));
      assertEquals(recs.at(-1)!.worldSize, 3);
      for (const x of recs.filter((x) => x.worldSize === 3)) {
        const ranks = x.plan.microBatches.flatMap((mb) => mb.groups.flatMap((g) => g.ranks));
        assert(ranks.every((rk) => rk < 3), `step ${x.step} uses only ranks 0-2`);
      }
      assert(recs.at(-1)!.loss < recs[0].loss, "still learning");
    });
  },
});

Deno.test({
  name: "launch: the embedded default (the README's first command) prints a falling loss over its 50 steps",
  sanitizeResources: false,
  fn: async () => {
    const dir = `${tmp}/default`;
    const r = await launchCli([CONFIG, "--run-dir", dir]);
    assertEquals(r.code, 0, r.out + r.err);
    const lines = r.out.trim().split("\n").filter((l) => l.startsWith("step "));
    assertEquals(lines.length, 50);
    const losses = lines.map((l) => Number(/loss (\d+\.\d+)/.exec(l)![1]));
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = losses.slice(-10).reduce((a, b) => a + b) / 10;
    assert(last < first - 1, `mean loss of the last 10 steps ${last} vs first 5 ${first}`);
    assert(losses[0] > 5, `starts near ln(256): ${losses[0]}`);
    assertIncludes(r.err, "data: ", "deno-corpus", "4 executors ready on 1 node(s)", "done: steps 1-50");
    const recs = await ledger(dir);
    assertEquals(recs.map((x) => x.loss.toFixed(4)), losses.map((l) => l.toFixed(4)));
    for (const x of recs) {
      assert(x.tokens > 0 && x.predictedMs > 0 && x.measuredMs > 0, `step ${x.step} has times and tokens`);
      for (const g of x.plan.microBatches.flatMap((mb) => mb.groups)) {
        assert(g.ranks.length === g.degree && g.measuredMs >= 0 && Array.isArray(g.sequences), "group fields");
      }
    }
  },
});

ensureXdgRuntimeDir();
const gpu = await requestGpuAdapter();
if (!gpu) console.log("skipping the WebGPU launch test: no WebGPU adapter");

Deno.test({
  name: "launch on WebGPU executors: killed and resumed, losses and parameters within float tolerance",
  ignore: !gpu,
  sanitizeResources: false,
  fn: async () => {
    const args = [CONFIG, ...FAST, "--set", "training.steps=6", "--set", "cluster.nodes[0].executor=webgpu"];
    const ref = await launchCli([...args, "--run-dir", `${tmp}/webgpu-ref`]);
    assertEquals(ref.code, 0, ref.err);
    assertIncludes(ref.err, "4x webgpu");
    const dir = `${tmp}/webgpu-killed`;
    await killLaunchAt(args, dir, "step 4/6", 60_000);
    const r = await launchCli([...args, "--resume", dir]);
    assertEquals(r.code, 0, r.err);
    assertIncludes(r.err, "resumed from checkpoint step-00000003");
    const a = await ledger(`${tmp}/webgpu-ref`), b = await ledger(dir);
    assertEquals(b.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
    a.forEach((x, i) => assertClose(b[i].loss, x.loss, 1e-5, `step ${x.step} loss`));
    const shape = { ...MODEL_PRESETS["gpt-tiny"], maxSeq: 256 };
    const load = async (d: string) => {
      // Local parts are named relative to their checkpoint directory.
      const part = `${d}/checkpoints/step-00000006/${(await manifestOf(d, 6)).parts[0].path}`;
      return decodeState(await Deno.readFile(part), shape, part).params;
    };
    assertArrayClose(await load(dir), await load(`${tmp}/webgpu-ref`), 1e-5, 1e-4);
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});
