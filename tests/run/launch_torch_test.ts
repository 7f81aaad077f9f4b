// `deno task launch configs/local.yaml` on the PyTorch executor (`executor: torch-cpu`, gloo, float32), as real
// processes: the same losses as the TypeScript CPU executor over the first steps, and an exact resume after SIGKILL
// from its sharded (DCP) checkpoints; a truncated or altered shard and a missing manifest make --resume name what is
// wrong and use the previous checkpoint; an elastic shrink from 4 ranks to 3 continues from the 4-rank checkpoint.

import { assert, assertClose, assertEquals, assertIncludes } from "../assert.ts";
import {
  allExecutorPids,
  killLaunchAt,
  killRankAt,
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

let reference: { losses: number[]; params: Record<string, string> } | undefined;

/** name -> sha256 of the tensor data files of a run's sharded checkpoint (DCP's .metadata holds a save id). */
async function shards(dir: string, step: number): Promise<Record<string, string>> {
  const m = await manifestOf(dir, step);
  assertEquals(m.format, "dcp");
  return Object.fromEntries(m.parts.filter((p) => p.path.endsWith(".distcp")).map((p) => [p.path, p.sha256]));
}

/** The uninterrupted torch-cpu run (made once). */
async function torchReference(): Promise<{ losses: number[]; params: Record<string, string> }> {
  if (reference) return reference;
  const dir = `${tmp}/torch-ref`;
  const r = await launchCli([CONFIG, ...TORCH, "--run-dir", dir]);
  assertEquals(r.code, 0, r.out + r.err);
  assertIncludes(r.err, "4 executors ready on 1 node(s)", "torch-cpu");
  const recs = await ledger(dir);
  assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
  const m = await manifestOf(dir, 6);
  // Each rank wrote its own file of the sharded checkpoint; rank 0 also DCP's metadata and flexsp.json.
  assertEquals(
    m.parts.map((p) => [p.rank, p.path]),
    [
      [0, "dcp/__0_0.distcp"],
      [0, "dcp/.metadata"],
      [0, "dcp/flexsp.json"],
      ...[1, 2, 3].map((r) => [
        r,
        `dcp/__${r}_0.distcp`,
      ]),
    ],
  );
  reference = { losses: recs.map((x) => x.loss), params: await shards(dir, 6) };
  return reference;
}

let cpuDir: string | undefined;

/** The same run on the TypeScript CPU executors (made once). */
async function cpuRun(): Promise<string> {
  if (cpuDir) return cpuDir;
  const dir = `${tmp}/cpu`;
  const r = await launchCli([CONFIG, ...FAST, "--set", "cluster.nodes[0].executor=cpu", "--run-dir", dir]);
  assertEquals(r.code, 0, r.out + r.err);
  return cpuDir = dir;
}

Deno.test({
  name: "launch torch-cpu: the same losses as the cpu executor within 1e-4 over 5 steps, plans and all",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    const cpu = await ledger(await cpuRun());
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
    assertEquals(await shards(dir, 6), ref.params, "identical parameters");
  },
});

Deno.test({
  name: "launch torch-cpu, training.checkpoint_async: bit-identical to synchronous checkpoints; a rank SIGKILLed " +
    "while step 4's is written leaves none, and --resume uses step 2's",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    const ASYNC = [...TORCH, "--set", "training.checkpoint_async=true"];
    const dir = `${tmp}/async`;
    const r = await launchCli([CONFIG, ...ASYNC, "--run-dir", dir]);
    assertEquals(r.code, 0, r.out + r.err);
    assertEquals((await ledger(dir)).map((x) => x.loss), ref.losses, "bit-identical losses");
    for (const step of [2, 4]) {
      assertEquals(await shards(dir, step), await shards(`${tmp}/torch-ref`, step), `step ${step}: the same state`);
    }
    assertEquals(await shards(dir, 6), ref.params, "identical parameters");
    // Rank 1 dies once its files of step 4 are written, before the directory is renamed: step 4 never counts.
    const killed = `${tmp}/async-killed`;
    const k = await launchCli([CONFIG, ...ASYNC, "--run-dir", killed], {
      FLEXSP_SAVE_FAULT: "1:exit",
      FLEXSP_SAVE_FAULT_STEP: "4",
    });
    assert(k.code !== 0, `the run fails: ${k.err}`);
    assertIncludes(k.err, "killed by signal KILL");
    const rk = await launchCli([CONFIG, ...ASYNC, "--resume", killed]);
    assertEquals(rk.code, 0, rk.out + rk.err);
    assertIncludes(rk.err, "checkpoint step-00000004: no manifest", "resumed from checkpoint step-00000002");
    assertEquals((await ledger(killed)).map((x) => x.loss), ref.losses, "bit-identical losses");
    assertEquals(await shards(killed, 6), ref.params, "identical parameters");
  },
});

Deno.test({
  name: "launch torch-cpu --resume: a truncated or altered shard, a missing manifest: named, the previous one used",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ref = await torchReference();
    const copy = async (name: string) => {
      const dir = `${tmp}/${name}`;
      await new Deno.Command("cp", { args: ["-r", `${tmp}/torch-ref`, dir] }).output();
      return dir;
    };
    const ck = (dir: string, step: number) => `${dir}/checkpoints/step-${String(step).padStart(8, "0")}`;
    // Step 6's shard of rank 1 truncated: resumed from step 4, steps 5 and 6 as before.
    const a = await copy("truncated");
    const shard = `${ck(a, 6)}/dcp/__1_0.distcp`;
    await Deno.truncate(shard, (await Deno.stat(shard)).size - 100);
    const ra = await launchCli([CONFIG, ...TORCH, "--resume", a]);
    assertEquals(ra.code, 0, ra.out + ra.err);
    assertIncludes(
      ra.err,
      "/checkpoints/step-00000006/dcp/__1_0.distcp has",
      "resumed from checkpoint step-00000004",
    );
    assertEquals((await ledger(a)).map((x) => x.loss), ref.losses, "bit-identical losses");
    // Step 6 without its manifest, step 4's shard of rank 2 altered (same size): resumed from step 2.
    const b = await copy("altered");
    await Deno.remove(`${ck(b, 6)}/manifest.json`);
    const bad = `${ck(b, 4)}/dcp/__2_0.distcp`;
    const bytes = await Deno.readFile(bad);
    bytes[bytes.length >> 1] ^= 1;
    await Deno.writeFile(bad, bytes);
    const rb = await launchCli([CONFIG, ...TORCH, "--resume", b]);
    assertEquals(rb.code, 0, rb.out + rb.err);
    assertIncludes(
      rb.err,
      "checkpoint step-00000006: no manifest",
      "/checkpoints/step-00000004/dcp/__2_0.distcp does not match its sha256",
      "resumed from checkpoint step-00000002",
    );
    assertEquals((await ledger(b)).map((x) => x.loss), ref.losses, "bit-identical losses");
    assertEquals(await shards(b, 6), ref.params, "identical parameters");
  },
});

Deno.test({
  name: "launch --resume --force across executor kinds: each kind's checkpoints are refused by the other, by name",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    await torchReference();
    const copy = `${tmp}/torch-ref-for-cpu`;
    await new Deno.Command("cp", { args: ["-r", `${tmp}/torch-ref`, copy] }).output();
    // Two more steps than the finished runs took, so that a checkpoint is loaded.
    const more = ["--set", "training.steps=8"];
    const flat = await launchCli([CONFIG, ...TORCH, ...more, "--resume", await cpuRun(), "--force"]);
    assertEquals(flat.code, 1, flat.err);
    assertIncludes(
      flat.err,
      "checkpoint step-00000006 cannot be used: it is in the TypeScript executors' flat format (executor: cpu or " +
        "webgpu) and this run's torch-cpu executors read the torch executors' sharded format",
      "no checkpoint of",
    );
    const sharded = await launchCli([
      CONFIG,
      ...FAST,
      "--set",
      "cluster.nodes[0].executor=cpu",
      ...more,
      "--resume",
      copy,
      "--force",
    ]);
    assertEquals(sharded.code, 1, sharded.err);
    assertIncludes(sharded.err, "it is in the torch executors' sharded format (executor: torch-cpu or cuda) and this");
  },
});

Deno.test({
  name: "launch torch-cpu, on_failure elastic: 4 ranks shrink to 3 and continue from the 4-rank sharded checkpoint",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const dir = `${tmp}/elastic`;
    const r = await killRankAt([CONFIG, ...TORCH, "--set", "training.on_failure=elastic"], dir, "step 4/6", 120_000, 3);
    assertEquals(r.code, 0, r.out + r.err);
    assertIncludes(
      r.err,
      "elastic restart 1/3: without the device of rank 3 on node 0 (localhost), on 3 device(s)",
      "resumed from checkpoint step-0000000",
    );
    const recs = await ledger(dir);
    assertEquals(recs.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
    assertEquals([recs[0].worldSize, recs[5].worldSize], [4, 3]);
    assert(recs[5].loss < recs[0].loss, `still learning: ${recs.map((x) => x.loss)}`);
    assertEquals((await manifestOf(dir, 6)).parts.filter((p) => p.path.endsWith(".distcp")).length, 3);
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
