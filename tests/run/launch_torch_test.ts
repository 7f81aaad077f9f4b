// `deno task launch configs/local.yaml` on the PyTorch executor (`executor: torch-cpu`, gloo, float32), as real
// processes: the same losses as the TypeScript CPU executor over the first steps, and an exact resume after SIGKILL.

import { assert, assertClose, assertEquals, assertIncludes } from "../assert.ts";
import {
  allExecutorPids,
  killLaunchAt,
  launchCli,
  ledger,
  leftAlive,
  manifestOf,
  runCli,
  shortRun,
} from "./launch_harness.ts";
import { torchPython } from "../agents/torch_fixtures.ts";

const torch = await torchPython();
if (!torch.ok) console.log(`skipping the torch-cpu launch tests: ${torch.reason}`);

const CONFIG = "configs/local.yaml";
const tmp = await Deno.makeTempDir({ prefix: "flexsp-launch-torch-" });
/** The default, shortened: 6 steps of 8 sequences of at most 256 tokens, checkpoints every 2, deterministic plans. */
const FAST = shortRun(tmp, 6, 2);
const TORCH = [...FAST, "--set", "cluster.nodes[0].executor=torch-cpu"];

let reference: { losses: number[]; params: string[] } | undefined;

/** The uninterrupted torch-cpu run (made once). */
async function torchReference(): Promise<{ losses: number[]; params: string[] }> {
  if (reference) return reference;
  const dir = `${tmp}/torch-ref`;
  const r = await launchCli([CONFIG, ...TORCH, "--run-dir", dir]);
  assertEquals(r.code, 0, r.out + r.err);
  assertIncludes(r.err, "4 executors ready on 1 node(s)", "torch-cpu");
  const recs = await ledger(dir);
  assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
  reference = { losses: recs.map((x) => x.loss), params: (await manifestOf(dir, 6)).parts.map((p) => p.sha256) };
  return reference;
}

Deno.test({
  name: "launch torch-cpu: the same losses as the cpu executor within 1e-4 over 5 steps, plans and all",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    const dir = `${tmp}/cpu`;
    const r = await launchCli([CONFIG, ...FAST, "--set", "cluster.nodes[0].executor=cpu", "--run-dir", dir]);
    assertEquals(r.code, 0, r.out + r.err);
    const cpu = await ledger(dir);
    const torchRecs = await ledger(`${tmp}/torch-ref`);
    for (let i = 0; i < 5; i++) {
      assertEquals(
        torchRecs[i].plan.microBatches.map((mb) => mb.groups.map((g) => g.ranks)),
        cpu[i].plan.microBatches
          .map((mb) => mb.groups.map((g) => g.ranks)),
        `step ${i + 1}: same plan`,
      );
      assertClose(ref.losses[i], cpu[i].loss, 1e-4, `step ${i + 1} loss`);
    }
    assert(ref.losses[4] < ref.losses[0], `the loss falls: ${ref.losses}`);
    assert(torchRecs.some((x) => x.plan.microBatches.some((mb) => mb.groups.some((g) => g.degree > 1))), "SP > 1 ran");
  },
});

Deno.test({
  name: "launch torch-cpu: SIGKILL after step 4, then --resume: bit-identical losses and parameters",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    assert(ref.params.every((p) => p === ref.params[0]), "every rank holds the same state");
    const dir = `${tmp}/killed`;
    const killed = await killLaunchAt([CONFIG, ...TORCH], dir, "step 4/6", 120_000);
    assertEquals(killed.signal, "SIGKILL");
    assertEquals(await leftAlive(await allExecutorPids(dir), 15_000), [], "the Python executors went away");
    const r = await launchCli([CONFIG, ...TORCH, "--resume", dir]);
    assertEquals(r.code, 0, r.out + r.err);
    assertIncludes(r.err, "resumed from checkpoint step-0000000");
    const recs = await ledger(dir);
    assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
    assertEquals(recs.map((x) => x.loss), ref.losses, "bit-identical losses");
    assertEquals((await manifestOf(dir, 6)).parts.map((x) => x.sha256), ref.params, "identical parameters");
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});

/** A torch-cpu run of the shortened default with `sets` on top: its launch output and ledger. */
async function variant(name: string, sets: string[]) {
  const dir = `${tmp}/${name}`;
  const r = await launchCli([CONFIG, ...TORCH, ...sets.flatMap((s) => ["--set", s]), "--run-dir", dir]);
  assertEquals(r.code, 0, r.out + r.err);
  return { dir, err: r.err, recs: await ledger(dir) };
}

Deno.test({
  name: "launch torch-cpu, training.precision bf16: the log names the kernel and dtype, the loss falls near fp32's",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    const { err, recs } = await variant("bf16", ["training.precision=bf16"]);
    assertIncludes(err, "attention: sdpa (bfloat16)", "(4 ranks)");
    assert(recs[5].loss < recs[0].loss, `the loss falls: ${recs.map((x) => x.loss)}`);
    // bf16 compute with float32 master weights and float32 gradient reduction: within 2% of the float32 run.
    for (let i = 0; i < 6; i++) assertClose(recs[i].loss, ref.losses[i], 2e-2, `step ${i + 1} loss vs fp32`);
  },
});

Deno.test({
  name: "launch torch-cpu, gpt under planner.zero_stage 3 (FSDP2): the losses of ZeRO-0 within 1e-5",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    const { dir, recs } = await variant("zero3", ["planner.zero_stage=3"]);
    for (let i = 0; i < 6; i++) assertClose(recs[i].loss, ref.losses[i], 1e-5, `step ${i + 1} loss vs ZeRO-0`);
    const node = `${dir}/logs/node0-localhost`;
    const logs = await Array.fromAsync(Deno.readDir(node));
    const text = (await Promise.all(logs.filter((e) => e.isFile).map((e) => Deno.readTextFile(`${node}/${e.name}`))))
      .join("\n");
    assertIncludes(text, "ZeRO-3 (FSDP2): ");
  },
});

Deno.test({
  name: "profile torch-cpu under planner.zero_stage 3: every rank runs the grid in lockstep, the profile is written",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const out = `${tmp}/zero3-profile.json`;
    const r = await runCli("profile", [
      CONFIG,
      "--quick",
      "--out",
      out,
      "--run-dir",
      `${tmp}/zero3-profile-run`,
      "--set",
      "cluster.nodes[0].executor=torch-cpu",
      "--set",
      "model.max_seq=256",
      "--set",
      "planner.zero_stage=3",
    ]);
    assertEquals(r.code, 0, r.out + r.err);
    const doc = JSON.parse(await Deno.readTextFile(out));
    assert(doc.constants.alpha1 > 0 || doc.constants.alpha2 > 0, "a non-trivial compute model");
  },
});
