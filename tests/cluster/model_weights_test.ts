// model.from weights checked before anything starts (orchestrator/cluster/model_weights.ts): a whole directory
// passes; a model.safetensors cut at a tensor boundary (the case: the last tensor's bytes gone, its header
// entry intact), cut mid-tensor, with data_offsets that do not fit the shape, an unsupported dtype, a missing
// tensor or a tensor of another shape is refused with one error naming the file and the tensor; `launch` refuses
// such a directory before the run directory exists; a TypeScript executor with a llama-family model is refused at
// config load.

import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import { readSafetensorsHeader, verifyModelWeights } from "../../orchestrator/cluster/model_weights.ts";
import { encodeSafetensors } from "../../orchestrator/run/hf_export.ts";
import { hfConfigOf, shapeFromHfConfig } from "../../core/hf_config.ts";
import { llamaLayout } from "../../core/llama_layout.ts";
import { UserError } from "../../orchestrator/errors.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { launchCli, shortRun } from "../run/launch_harness.ts";

const SHAPE = shapeFromHfConfig({
  model_type: "llama",
  num_hidden_layers: 2,
  hidden_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 96,
  vocab_size: 128,
  max_position_embeddings: 256,
}, "config.json");

/** A tiny llama directory (config.json + model.safetensors of seeded values); `edit` may change the slices. */
async function tinyModel(dir: string, edit = (s: ReturnType<typeof llamaLayout>["slices"]) => s): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(hfConfigOf(SHAPE)));
  const parts = edit(llamaLayout(SHAPE).slices).map((slice, i) => {
    const f = new Float32Array(slice.shape.reduce((a, b) => a * b, 1)).map((_, j) => Math.sin(i + j));
    return { slice, data: new Uint8Array(f.buffer) };
  });
  await Deno.writeFile(`${dir}/model.safetensors`, encodeSafetensors(parts, "float32"));
  return `${dir}/model.safetensors`;
}

/** The tensor stored last in `path`: its name and byte range. */
async function lastTensor(path: string) {
  const entries = [...(await readSafetensorsHeader(path)).entries()];
  const [name, e] = entries.reduce((a, b) => b[1].end > a[1].end ? b : a);
  return { name, begin: e.begin, end: e.end };
}

/** Rewrites the header of `path` with `edit` applied, keeping the data bytes. */
async function editHeader(path: string, edit: (h: Record<string, { dtype: string; data_offsets: number[] }>) => void) {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  const hb = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + hb.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(bytes.subarray(8 + n), 8 + hb.length);
  await Deno.writeFile(path, out);
}

async function refused(dir: string): Promise<string> {
  try {
    await verifyModelWeights(dir, SHAPE);
  } catch (e) {
    assert(e instanceof UserError, String(e));
    return e.message;
  }
  throw new Error(`${dir}: accepted`);
}

Deno.test("model.from weights: a whole directory passes; each corruption is named with its file and tensor", async () => {
  const root = await Deno.makeTempDir({ prefix: "flexsp-weights-" });
  try {
    const ok = `${root}/ok`;
    await tinyModel(ok);
    await verifyModelWeights(ok, SHAPE);

    const cut = await tinyModel(`${root}/cut`);
    const last = await lastTensor(cut);
    assertEquals(last.name, "lm_head.weight");
    await Deno.truncate(cut, last.begin);
    assertEquals(
      await refused(`${root}/cut`),
      `model.from: ${cut}: truncated: tensor lm_head.weight ends at byte ${last.end} of a ${last.begin}-byte file ` +
        `(${last.end - last.begin} bytes missing): re-download it`,
    );

    const mid = await tinyModel(`${root}/mid`);
    await Deno.truncate(mid, last.begin + 248);
    assert((await refused(`${root}/mid`)).startsWith(`model.from: ${mid}: truncated: tensor lm_head.weight ends at`));

    const offs = await tinyModel(`${root}/offs`);
    await editHeader(offs, (h) => h["model.norm.weight"].data_offsets[1] -= 4);
    assert((await refused(`${root}/offs`)).startsWith(`model.from: ${offs}: tensor model.norm.weight: data_offsets`));

    const dtype = await tinyModel(`${root}/dtype`);
    await editHeader(dtype, (h) => h["model.norm.weight"].dtype = "I8");
    assertEquals(
      await refused(`${root}/dtype`),
      `model.from: ${dtype}: tensor model.norm.weight has dtype I8 (supported: F32, F16, BF16, F64)`,
    );

    await tinyModel(`${root}/missing`, (s) => s.filter((x) => x.name !== "model.layers.1.mlp.up_proj.weight"));
    assert((await refused(`${root}/missing`)).includes("lack 1 tensor(s)"));
    assert((await refused(`${root}/missing`)).includes("model.layers.1.mlp.up_proj.weight"));

    await tinyModel(
      `${root}/shape`,
      (s) => s.map((x) => x.name === "model.norm.weight" ? { ...x, shape: [32, 2] } : x),
    );
    assertEquals(
      await refused(`${root}/shape`),
      `model.from: ${root}/shape/model.safetensors: tensor model.norm.weight has shape [32, 2], ` +
        `${root}/shape/config.json implies [64]`,
    );

    const junk = await tinyModel(`${root}/junk`);
    const bytes = await Deno.readFile(junk);
    bytes[9] = 0xff;
    await Deno.writeFile(junk, bytes);
    assert((await refused(`${root}/junk`)).startsWith(`model.from: ${junk}: corrupt safetensors header`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("launch with a truncated model.from: refused before the run directory exists, no resume line", async () => {
  const root = await Deno.makeTempDir({ prefix: "flexsp-weights-launch-" });
  try {
    const path = await tinyModel(`${root}/model`);
    await Deno.truncate(path, (await lastTensor(path)).begin);
    const r = await launchCli([
      "configs/local.yaml",
      ...shortRun(root, 2, 1, [`model.from=${root}/model`, "cluster.nodes[0].executor=torch-cpu"]),
      "--run-dir",
      `${root}/run`,
    ]);
    assertEquals(r.code, 1, r.err);
    assert(r.err.includes(`${path}: truncated: tensor lm_head.weight`), r.err);
    assert(!r.err.includes("--resume"), r.err);
    assertEquals(await Deno.stat(`${root}/run`).then(() => true, () => false), false);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("model.from with a TypeScript executor is refused at config load, naming the node's executor", async () => {
  const root = await Deno.makeTempDir({ prefix: "flexsp-weights-ts-" });
  try {
    await tinyModel(`${root}/model`);
    const msg = await assertThrows(
      () => loadConfig("configs/local.yaml", [`model.from=${root}/model`, "cluster.nodes[0].executor=cpu"]),
    );
    assertIncludes(msg, "cluster.nodes[0].executor: cpu is a TypeScript executor", "needs executor: torch-cpu or cuda");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
