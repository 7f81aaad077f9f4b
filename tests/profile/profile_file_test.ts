// The profile file as plan and launch use it: atomic writes, schema errors named by field (hand-edited, stale,
// broken files), the fingerprint check with --force, precedence over inline constants, the hardware check launch
// runs after the inventory, and the "run deno task profile" message when nothing exists.

import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import {
  checkProfileHardware,
  readProfile,
  resolveProfile,
  writeProfile,
} from "../../orchestrator/config/profile_file.ts";
import { clusterKeyOf, compareClusterKeys } from "../../orchestrator/config/profile_fingerprint.ts";
import { cli, fakeNodes, load, noStackTrace, SAMPLE_CONSTANTS, sampleProfile, writeLocalConfig } from "./fixtures.ts";

// deno-lint-ignore no-explicit-any
type Doc = Record<string, any>;

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fxprof-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("profile file: atomic write and read back; inline constants are the fallback until it exists", async () => {
  await withDir(async (dir) => {
    const cfgPath = await writeLocalConfig(dir, {
      extra:
        "profile:\n  constants: { alpha1: 1.0e-6, alpha2: 0.01, act_mb_per_token: 0.01, bandwidth_gbps: { intra: { 2: 1 } } }",
    });
    const config = await load(cfgPath);
    const before = await resolveProfile(config);
    assertEquals(before.source, "inline");
    assertEquals(before.constants.alpha2, 0.01);
    const doc = sampleProfile(config);
    const path = `${dir}/profiles/ptest.json`;
    await writeProfile(path, doc);
    assertEquals([...Deno.readDirSync(`${dir}/profiles`)].map((e) => e.name), ["ptest.json"]);
    assertEquals((await readProfile(path)).constants, SAMPLE_CONSTANTS);
    const after = await resolveProfile(config);
    assertEquals(after.source, "profile");
    assertEquals(after.path, path);
    assertEquals(after.constants.alpha2, SAMPLE_CONSTANTS.alpha2);
    assertEquals(after.constants.bandwidth.inter, { 4: 0.02 });
  });
});

Deno.test("profile file: hand-edited, stale and broken files name the field", async () => {
  await withDir(async (dir) => {
    const config = await load(await writeLocalConfig(dir));
    const path = `${dir}/p.json`;
    const write = (edit: (d: Doc) => void) => {
      const d = JSON.parse(JSON.stringify(sampleProfile(config)));
      edit(d);
      return Deno.writeTextFile(path, JSON.stringify(d));
    };
    const cases: [string, (d: Doc) => void, string][] = [
      ["constants.alpha1 as text", (d) => (d.constants.alpha1 = "fast"), "constants.alpha1: expected a number"],
      ["missing alpha2", (d) => delete d.constants.alpha2, 'constants: missing required key "alpha2"'],
      ["typo key", (d) => (d.constants.alpah1 = 1), 'constants.alpah1: unknown key "alpah1" (did you mean "alpha1"?)'],
      [
        "bad degree",
        (d) => (d.constants.bandwidth_gbps.intra["3"] = 1),
        "constants.bandwidth_gbps.intra.3: keys must be powers of two",
      ],
      [
        "negative bandwidth",
        (d) => (d.constants.bandwidth_gbps.inter["4"] = -1),
        "constants.bandwidth_gbps.inter.4: expected a positive number",
      ],
      [
        "model shape",
        (d) => (d.fingerprint.cluster.model.hidden = "64"),
        "fingerprint.cluster.model.hidden: expected a positive integer",
      ],
      [
        "devices",
        (d) => delete d.fingerprint.cluster.nodes[0].devices,
        'fingerprint.cluster.nodes[0]: missing required key "devices"',
      ],
      [
        "node hostname",
        (d) => (d.fingerprint.nodes[0].hostname = 7),
        "fingerprint.nodes[0].hostname: expected a string",
      ],
      ["no fingerprint", (d) => delete d.fingerprint, "fingerprint: expected a mapping"],
      ["no memory", (d) => delete d.memory, "memory: missing or not a mapping"],
      ["stale schema", (d) => (d.schema = 1), "uses profile schema 1, older than this flexsp's 2 (stale)"],
      ["newer schema", (d) => (d.schema = 9), "newer than this flexsp's 2"],
      ["no schema", (d) => delete d.schema, 'has no valid "schema" field'],
    ];
    for (const [what, edit, expected] of cases) {
      await write(edit);
      const msg = await assertThrows(() => readProfile(path), expected);
      assert(msg.startsWith(`${path}: `) || msg.startsWith(`${path}:`), `${what}: names the file: ${msg}`);
      assertIncludes(msg, "deno task profile");
    }
    await Deno.writeTextFile(path, '{"schema": 2, "constants": {');
    await assertThrows(() => readProfile(path), "not valid JSON");
  });
});

Deno.test("profile file: a different cluster or model is refused unless forced; edited constants warn", async () => {
  await withDir(async (dir) => {
    const cfgPath = await writeLocalConfig(dir, { nodes: [2] });
    const config = await load(cfgPath);
    await writeProfile(`${dir}/profiles/ptest.json`, sampleProfile(config));
    const other = await load(cfgPath, ["cluster.nodes[0].devices=4", "model.preset=gpt-small"]);
    const msg = await assertThrows(() => resolveProfile(other));
    assertIncludes(
      msg,
      `${dir}/profiles/ptest.json was measured on another cluster or model than ${cfgPath}`,
      "model.layers: profiled 2, config has 4",
      "model.hidden: profiled 64, config has 128",
      "cluster.nodes[0].devices: profiled 2, config has 4",
      "--force",
    );
    const warnings: string[] = [];
    const forced = await resolveProfile(other, { force: true, warn: (l) => warnings.push(l) });
    assertEquals(forced.source, "profile");
    assertIncludes(warnings.join("\n"), "used anyway because of --force");

    const edited = sampleProfile(config);
    edited.constants = { ...edited.constants, alpha2: 0.9 };
    await writeProfile(`${dir}/profiles/ptest.json`, edited);
    const w2: string[] = [];
    await resolveProfile(config, { warn: (l) => w2.push(l) });
    assertIncludes(w2.join("\n"), "edited by hand after profiling");
  });
});

Deno.test("profile file: a llama-family model does not reuse a profile of the GPT of the same size", async () => {
  await withDir(async (dir) => {
    const gpt = await load(await writeLocalConfig(dir, { nodes: [2] }));
    // A GPT's key keeps the six fields it always had, so existing profiles keep their fingerprint.
    assertEquals(Object.keys(clusterKeyOf(gpt).model).sort(), [
      "checkpointing",
      "heads",
      "hidden",
      "layers",
      "maxSeq",
      "vocab",
    ]);
    const llama = structuredClone(gpt);
    Object.assign(llama.model, { family: "llama", kvHeads: 2, intermediate: 172 });
    assertEquals(compareClusterKeys(clusterKeyOf(gpt), clusterKeyOf(llama)), [
      "model.family: profiled gpt, config has llama",
      "model.kv_heads: profiled none, config has 2",
      "model.head_dim: profiled none, config has 16",
      "model.intermediate: profiled none, config has 172",
    ]);
    const narrower = structuredClone(llama);
    narrower.model.intermediate = 128;
    assertEquals(compareClusterKeys(clusterKeyOf(llama), clusterKeyOf(narrower)), [
      "model.intermediate: profiled 172, config has 128",
    ]);
    assertEquals(compareClusterKeys(clusterKeyOf(llama), clusterKeyOf(structuredClone(llama))), []);
    // A llama profile's key passes the file's strict schema and is found again for the same model.
    const path = `${dir}/profiles/llama.json`;
    await writeProfile(path, sampleProfile(llama));
    assertEquals((await readProfile(path)).fingerprint.cluster.model.intermediate, 172);
  });
});

Deno.test("profile file: launch's hardware check after the inventory", async () => {
  await withDir(async (dir) => {
    const config = await load(await writeLocalConfig(dir));
    await writeProfile(`${dir}/profiles/ptest.json`, sampleProfile(config));
    const resolved = await resolveProfile(config);
    assertEquals(checkProfileHardware(resolved, fakeNodes(config)), []);
    const other = fakeNodes(config, "Other CPU 9000");
    other[0].deno = "9.9.9";
    const msg = await assertThrows(() => checkProfileHardware(resolved, other));
    assertIncludes(
      msg,
      "was measured on other hardware",
      "node 0 (localhost): CPU was Test CPU 3000, is now Other CPU 9000",
    );
    const warnings = checkProfileHardware(resolved, other, { force: true });
    assertIncludes(warnings.join("\n"), "used anyway because of --force", "profiled with Deno");
  });
});

Deno.test("plan: refuses a mismatched profile, --force overrides it, no profile names the command", async () => {
  await withDir(async (dir) => {
    const cfgPath = await writeLocalConfig(dir);
    const config = await load(cfgPath);
    const none = await cli("plan", [cfgPath, "--steps", "1"]);
    assertEquals(none.code, 1, none.err);
    assertIncludes(
      none.err,
      `no cost model: ${dir}/profiles/ptest.json does not exist`,
      `deno task profile ${cfgPath}`,
    );
    noStackTrace(none.err);

    await writeProfile(`${dir}/profiles/ptest.json`, sampleProfile(config));
    const ok = await cli("plan", [cfgPath, "--steps", "1", "--json"]);
    assertEquals(ok.code, 0, ok.err);
    assert(JSON.parse(ok.out).steps.length === 1);

    const bad = await cli("plan", [cfgPath, "--steps", "1", "--set", "cluster.nodes[0].devices=4"]);
    assertEquals(bad.code, 1);
    assertIncludes(bad.err, "cluster.nodes[0].devices: profiled 2, config has 4", "--force");
    noStackTrace(bad.err);
    const forced = await cli("plan", [
      cfgPath,
      "--steps",
      "1",
      "--json",
      "--force",
      "--set",
      "cluster.nodes[0].devices=4",
    ]);
    assertEquals(forced.code, 0, forced.err);
    assertIncludes(forced.err, "used anyway because of --force");

    const doc = JSON.parse(await Deno.readTextFile(`${dir}/profiles/ptest.json`));
    doc.constants.beta1 = "x";
    await Deno.writeTextFile(`${dir}/profiles/ptest.json`, JSON.stringify(doc));
    const broken = await cli("plan", [cfgPath, "--steps", "1"]);
    assertEquals(broken.code, 1);
    assertIncludes(broken.err, `${dir}/profiles/ptest.json: constants.beta1: expected a number, got "x"`);
  });
});

Deno.test("profile file: the fixed costs per micro-batch, group and step load when present and are 0 when absent", async () => {
  await withDir(async (dir) => {
    const config = await load(await writeLocalConfig(dir));
    const path = `${dir}/profiles/ptest.json`;
    // A profile written before these terms existed: no keys, the cost model's terms are 0.
    await writeProfile(path, sampleProfile(config));
    const old = await resolveProfile(config);
    assertEquals(old.constants.microBatchMs, undefined);
    assertEquals(old.constants.groupMs, undefined);
    assertEquals(old.constants.stepMs, undefined);
    const fixed = { ...SAMPLE_CONSTANTS, micro_batch_ms: 12.5, group_ms: { "2": 3, "4": 7.25 }, step_ms: 80 };
    await writeProfile(path, sampleProfile(config, fixed));
    assertEquals((await readProfile(path)).constants, fixed);
    const now = await resolveProfile(config);
    assertEquals(now.constants.microBatchMs, 12.5);
    assertEquals(now.constants.groupMs, { 2: 3, 4: 7.25 });
    assertEquals(now.constants.stepMs, 80);
    // A negative fixed cost is refused by field.
    const bad = JSON.parse(await Deno.readTextFile(path));
    bad.constants.group_ms["4"] = -1;
    await Deno.writeTextFile(path, JSON.stringify(bad));
    const msg = await assertThrows(() => readProfile(path));
    assertIncludes(msg, "group_ms");
  });
});
