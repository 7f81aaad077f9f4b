// `deno task plan` as a user runs it: JSON shape, lengths files, and one-line errors.

import { assert, assertEquals } from "../assert.ts";

async function plan(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "orchestrator/cli/plan.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("plan --json on the paper cluster: every strategy, valid shape, flexsp fastest", async () => {
  const r = await plan("configs/paper-a100-64.yaml", "--steps", "1", "--json", "--set", "planner.milp=none");
  assertEquals(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assertEquals(doc.steps.length, 1);
  const s = doc.steps[0].strategies;
  assertEquals(Object.keys(s).sort(), ["batchada", "flexsp", "static"]);
  for (const p of Object.values(s) as { predictedMs: number; microBatches: { groups: unknown[] }[] }[]) {
    assert(p.predictedMs > 0 && p.microBatches.length > 0);
  }
  const g = s.flexsp.microBatches[0].groups[0];
  for (const key of ["degree", "ranks", "lengths", "predictedMs"]) assert(key in g, `group has ${key}`);
  assert(s.flexsp.predictedMs <= s.static.predictedMs && s.flexsp.predictedMs <= s.batchada.predictedMs);
  assertEquals(s.static.degree, 64);
});

Deno.test("plan --lengths reads a file in order, one step per global batch", async () => {
  const file = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(file, "# lengths\n" + Array.from({ length: 40 }, (_, i) => 100 + 20 * i).join("\n"));
    const r = await plan("configs/local.yaml", "--lengths", file, "--json", "--set", "training.global_batch=16");
    assertEquals(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assertEquals(doc.steps.length, 2);
    const lengths = doc.steps[0].strategies.flexsp.microBatches
      .flatMap((mb: { groups: { lengths: number[] }[] }) => mb.groups.flatMap((g) => g.lengths)).sort(
        (a: number, b: number) => a - b,
      );
    assertEquals(lengths, Array.from({ length: 16 }, (_, i) => 100 + 20 * i));
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("plan errors are one line naming the problem, with exit code 1", async () => {
  const file = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(file, "100\nabc\n");
    const r = await plan("configs/local.yaml", "--lengths", file);
    assertEquals(r.code, 1);
    assertEquals(r.stderr.trim(), `error: ${file}:2: expected a positive integer sequence length, got "abc"`);
    const r2 = await plan("configs/local.yaml", "--set", "cluster.nodes[0].devices=0");
    assertEquals(r2.code, 1);
    assert(r2.stderr.includes("cluster.nodes[0].devices: expected a positive integer, got 0"), r2.stderr);
    assert(!r2.stderr.includes(" at "), "no stack trace");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("plan on a mixed cluster names each group's device type, in the summary, --verbose and --json", async () => {
  const mixed = [4, 5, 6, 7].flatMap((i) => [
    "--set",
    `cluster.nodes[${i}].device_memory_gb=80`,
    "--set",
    `cluster.nodes[${i}].memory_budget_gb=68`,
    "--set",
    `cluster.nodes[${i}].speed=2`,
  ]);
  const args = ["configs/paper-a100-64.yaml", "--steps", "1", "--set", "planner.milp=none", ...mixed];
  const text = await plan(...args, "--verbose");
  assertEquals(text.code, 0, text.stderr);
  assert(
    text.stdout.includes("device types: 4 nodes cuda 40GB (ranks 0-31), 4 nodes cuda 80GB x2 (ranks 32-63)"),
    text.stdout,
  );
  assert(/mb 0 .*\[cuda (40GB|80GB x2)\]/.test(text.stdout), "summary entries name their type");
  // Static SP=64 spans both types: its groups are named mixed.
  assert(text.stdout.includes("(8 nodes, mixed: cuda 40GB + cuda 80GB x2)"), text.stdout);
  assert(/d\d+ ranks 3[2-9]-\d+ \(a100-node[4-7], cuda 80GB x2\)/.test(text.stdout), "verbose groups name the type");
  const json = await plan(...args, "--json");
  assertEquals(json.code, 0, json.stderr);
  const groups = JSON.parse(json.stdout).steps[0].strategies.flexsp.microBatches
    .flatMap((mb: { groups: { ranks: number[]; deviceType: string }[] }) => mb.groups);
  for (const g of groups) {
    const want = g.ranks[g.ranks.length - 1] < 32
      ? "cuda 40GB"
      : g.ranks[0] >= 32
      ? "cuda 80GB x2"
      : "mixed: cuda 40GB + cuda 80GB x2";
    assertEquals(g.deviceType, want, `group ${g.ranks[0]}-${g.ranks[g.ranks.length - 1]}`);
  }
});

Deno.test("plan's text says what each baseline stands for", async () => {
  const file = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(file, Array(8).fill(100).join("\n"));
    const r = await plan("configs/local.yaml", "--lengths", file, "--set", "planner.static_degree=1");
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes("SP=1 (plain data parallelism, 4 data-parallel groups)"), r.stdout);
    assert(r.stdout.includes("best homogeneous degree for this batch"), r.stdout);
    const wide = await plan("configs/local.yaml", "--lengths", file, "--set", "planner.static_degree=2");
    assert(wide.stdout.includes("SP=2 (fixed degree as DeepSpeed-Ulysses / Megatron CP, 2 data-parallel groups)"));
  } finally {
    await Deno.remove(file);
  }
});
