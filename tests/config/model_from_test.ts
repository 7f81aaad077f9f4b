// model.from: a Hugging Face directory (config.json saved by transformers) sets the model's family and shape and
// overrides model.preset; core/hf_config.ts reads config.json exactly as the torch executor's kernels/torch/hf.py
// does (compared on configs transformers wrote); unsupported model types get one clear error naming the file; the
// llama-family shape reaches the executors' init with the directory and the checkpointing policy.

import { assert, assertEquals, assertThrows } from "../assert.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { executorInit } from "../../orchestrator/cluster/executor_pool.ts";
import { shapeFromHfConfig } from "../../core/hf_config.ts";
import { pythonImportFailure } from "../python_probe.ts";

const PY_SAVE = `
import json, sys, transformers
kind, d, over = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cls = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config"}[kind]
cfg = getattr(transformers, cls)(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **over)
cfg.save_pretrained(d)
from kernels.torch import hf
print(json.dumps(hf.shape_json(hf.read_config(d), d)))
`;

const HAVE_TRANSFORMERS = (await pythonImportFailure("transformers")) === undefined;

/** Saves a transformers config into `dir` and returns kernels/torch/hf.py's shape of it. */
async function saveConfig(kind: string, dir: string, over: Record<string, unknown> = {}): Promise<unknown> {
  const out = await new Deno.Command("python3", { args: ["-c", PY_SAVE, kind, dir, JSON.stringify(over)] }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test({
  name: "config.json of llama (llama3 RoPE), mistral and qwen2: the TypeScript and the executor's readings agree",
  ignore: !HAVE_TRANSFORMERS,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "flexsp-hfcfg-" });
    try {
      const cases: [string, Record<string, unknown>][] = [
        ["llama", {
          rope_scaling: {
            rope_type: "llama3",
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
          },
          rope_theta: 500000.0,
        }],
        ["llama", { rope_scaling: { rope_type: "linear", factor: 2.0 }, tie_word_embeddings: true }],
        ["mistral", { sliding_window: 128 }],
        ["qwen2", { tie_word_embeddings: true }],
      ];
      for (const [i, [kind, over]] of cases.entries()) {
        const dir = `${root}/${i}`;
        const py = await saveConfig(kind, dir, over);
        const path = `${dir}/config.json`;
        const ts = shapeFromHfConfig(JSON.parse(await Deno.readTextFile(path)), path);
        assertEquals(ts, py, `${kind} ${JSON.stringify(over)}`);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "--set model.from=DIR on configs/local.yaml: the llama shape overrides the preset and reaches the init",
  ignore: !HAVE_TRANSFORMERS,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "flexsp-hffrom-" });
    try {
      await saveConfig("qwen2", dir);
      const config = await loadConfig("configs/local.yaml", [`model.from=${dir}`, "model.checkpointing=full"]);
      const m = config.model;
      assertEquals(m.preset, undefined);
      assertEquals(m.from, dir);
      assertEquals([m.family, m.modelType, m.layers, m.hidden, m.heads, m.kvHeads, m.intermediate, m.vocab], [
        "llama",
        "qwen2",
        2,
        64,
        4,
        2,
        96,
        128,
      ]);
      assert(m.qkvBias === true && m.oBias === false, "qwen2 has q/k/v biases");
      const node = { config: config.cluster.nodes[0] } as Parameters<typeof executorInit>[0]["node"];
      const init = executorInit({ config, rank: 0, worldSize: 4, node, secret: "s" });
      assertEquals(init.modelFrom, dir);
      assertEquals(init.checkpointing, "full");
      assertEquals(init.model.kvHeads, 2);
      assert(!("from" in init.model) && !("preset" in init.model), "the shape carries no config-only fields");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "model.from: the checkpoint fixes the shape (layers, vocab, ... refused with the fix); max_seq may only cap it",
  ignore: !HAVE_TRANSFORMERS,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "flexsp-hfcap-" });
    try {
      await saveConfig("llama", dir);
      const from = `model.from=${dir}`;
      assertEquals((await loadConfig("configs/local.yaml", [from, "model.max_seq=128"])).model.maxSeq, 128);
      await assertThrows(
        () => loadConfig("configs/local.yaml", [from, "model.max_seq=512"]),
        `model.max_seq: 512 is above the 256 tokens of ${dir}/config.json; set at most 256`,
      );
      await assertThrows(
        () => loadConfig("configs/local.yaml", [from, "model.layers=4"]),
        `model.layers: 4 differs from the 2 of ${dir}/config.json; a model.from checkpoint fixes the shape: ` +
          "remove model.layers",
      );
      // The same value is no conflict.
      assertEquals((await loadConfig("configs/local.yaml", [from, "model.vocab=128"])).model.vocab, 128);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("model.from: an unsupported model_type and a directory without config.json each get one clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-hfbad-" });
  try {
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ model_type: "gpt_neox", hidden_size: 64 }));
    await assertThrows(
      () => loadConfig("configs/local.yaml", [`model.from=${dir}`]),
      `model.from: ${dir}/config.json: model_type 'gpt_neox' is not supported (supported: llama, mistral, qwen2)`,
    );
    await assertThrows(
      () => loadConfig("configs/local.yaml", [`model.from=${dir}/nothing`]),
      `model.from: ${dir}/nothing/config.json: not found (model.from must be a Hugging Face model directory`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
