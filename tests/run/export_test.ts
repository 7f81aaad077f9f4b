// `deno task export RUN_DIR [--step N] --hf OUT`: a llama run's checkpoint (an executor state written by the torch
// executor's own encoder, committed by the run's CheckpointStore) becomes a directory that
// transformers.AutoModelForCausalLM.from_pretrained loads, with the executor's logits (single file and sharded,
// llama with GQA and llama3 RoPE, qwen2 with biases and tied embeddings); a gpt run and a missing step get one
// clear error each.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { checkpointName, CheckpointStore } from "../../orchestrator/run/checkpoint_store.ts";
import { fileSha256 } from "../../core/hash.ts";
import { float32ToBfloat16 } from "../../orchestrator/run/hf_export.ts";
import { exportCli } from "./launch_harness.ts";
import { pythonImportFailure } from "../python_probe.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";

// Makes a tiny transformers model, trains nothing but perturbs its weights (as training would), writes an executor
// checkpoint of it; or (mode "check") loads the export with transformers and prints the largest logit difference
// from the flexsp model on the checkpoint's parameters.
const PY = `
import json, sys, os, torch
from kernels.torch import hf
from kernels.torch.checkpoint import encode_state, decode_state, write_atomic
from kernels.torch.attention import Segments, UlyssesContext
from kernels.torch.model_shape import ModelShape
from kernels.torch.param_layout import param_layout
from kernels.torch.packing import pack_group
from kernels.torch.tests.hf_export import load_weights
from kernels.torch.tests.llama_fixtures import save_tiny
from kernels.torch.tests.single_rank import single_rank
mode, kind, src, ckpt = sys.argv[1:5]
if mode == "make":
    over = json.loads(sys.argv[5])
    save_tiny(kind, src, seed=7, **over)
    shape = ModelShape.from_json(hf.shape_json(hf.read_config(src), src))
    lay = param_layout(shape)
    flat = torch.zeros(lay.total)
    load_weights(src, lay, flat)
    flat.add_(torch.randn(lay.total, generator=torch.Generator().manual_seed(2)) * 0.01)
    write_atomic(ckpt, encode_state(shape, 3, flat, torch.full_like(flat, 0.5), torch.zeros_like(flat)))
    if len(sys.argv) > 6:  # the same parameters as a sharded (DCP) checkpoint directory, as the torch executors save
        from kernels.torch import dcp_checkpoint
        tr, _ = single_rank(shape, flat, config_json=hf.read_config(src))
        files = dcp_checkpoint.save(sys.argv[6], tr.inner, tr.optim, 3, shape,
                                    dcp_checkpoint.layout_names(tr.inner, lay), 0)
        print(json.dumps(files))
elif mode == "count":
    shape = ModelShape.from_json(hf.shape_json(hf.read_config(src), src))
    print(json.dumps({"total": param_layout(shape).total}))
else:
    from transformers import AutoModelForCausalLM
    out, dtype = sys.argv[5], sys.argv[6]
    shape = ModelShape.from_json(hf.shape_json(hf.read_config(src), src))
    with open(ckpt, "rb") as f:
        st = decode_state(f.read(), shape, ckpt)
    lay = param_layout(shape)
    # A bfloat16 export holds the checkpoint rounded as torch rounds it: compare with the model on those values.
    params = st.params.to(torch.bfloat16).float() if dtype == "bfloat16" else st.params.clone()
    tr, kernel = single_rank(shape, params, config_json=hf.read_config(src))
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == dtype
    seq = [int(x) for x in torch.randint(0, 128, (50,), generator=torch.Generator().manual_seed(4))]
    pk = pack_group([seq], 1, 256, 128)
    back = AutoModelForCausalLM.from_pretrained(out, dtype=getattr(torch, dtype)).eval()
    assert next(back.parameters()).dtype == getattr(torch, dtype)
    back = back.float()
    with torch.no_grad():
        h = tr.inner.hidden(pk.tokens, pk.positions, UlyssesContext(None, 1, Segments(pk.cu_seqlens), kernel))
        ours = h @ tr.inner.lm_head.weight.t()
        theirs = back(input_ids=torch.tensor([seq])).logits[0]
    print(json.dumps({"maxDiff": float((ours - theirs).abs().max()), "scale": float(ours.abs().max())}))
`;

async function py(args: string[]): Promise<string> {
  const out = await new Deno.Command("python3", {
    args: ["-c", PY, ...args],
    env: { PYTHONPATH: REPO_ROOT },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

const HAVE = (await pythonImportFailure("transformers, torch")) === undefined;

/**
 * A run directory whose step-3 checkpoint holds `ckpt` as rank 0's part, or with `dcp`, the sharded checkpoint
 * directory `dcp` (inside the step directory) and its files.
 */
async function makeRun(
  run: string,
  ckpt: string,
  dcp?: { name: string; bytes: number; sha256: string }[],
): Promise<void> {
  await Deno.writeTextFile(`${run}/run.json`, JSON.stringify({ version: 1, runId: "r", name: "t" }));
  const store = new CheckpointStore(`${run}/checkpoints`);
  await store.prepare(3);
  const st = await Deno.stat(ckpt);
  await store.commit(
    {
      version: 1,
      runId: "r",
      step: 3,
      sampler: { kind: "synthetic", distribution: "github", rng: 1, drawn: 8 },
      fingerprintHash: "f",
      datasetHash: "d",
      profileHash: "p",
      worldSize: 1,
      ranks: [{ rank: 0, node: 0, host: "localhost", device: 0, kind: "torch-cpu" }],
      savedAt: new Date().toISOString(),
    },
    dcp
      ? dcp.map((f) => ({
        rank: 0,
        node: 0,
        host: "localhost",
        transport: "local" as const,
        path: `${run}/checkpoints/step-00000003/dcp/${f.name}`,
        sha256: f.sha256,
        bytes: f.bytes,
      }))
      : [{
        rank: 0,
        node: 0,
        host: "localhost",
        transport: "local",
        path: ckpt,
        sha256: await fileSha256(ckpt),
        bytes: st.size,
      }],
    dcp ? "dcp" : "flat",
  );
}

const CASES: [string, Record<string, unknown>, string[], string[]][] = [
  [
    "llama",
    {
      rope_scaling: {
        rope_type: "llama3",
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 16,
      },
    },
    [],
    ["model.safetensors", "config.json"],
  ],
  ["qwen2", { tie_word_embeddings: true }, ["--shard-mb", "0.05", "--step", "3"], [
    "model.safetensors.index.json",
    "config.json",
  ]],
  ["llama", {}, ["--dtype", "bfloat16"], ["model.safetensors", "config.json"]],
  // A sharded checkpoint of the torch executors (torch.distributed.checkpoint), read tensor by tensor.
  ["llama", {}, ["dcp"], ["model.safetensors", "config.json"]],
];

for (const [kind, over, flags, expectFiles] of CASES) {
  Deno.test({
    name: `export --hf of a ${kind} run ${flags.join(" ")}: transformers loads it with the executor's logits`,
    ignore: !HAVE,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "flexsp-export-" });
      try {
        const run = `${dir}/run`, ckpt = `${dir}/run/rank-0.ckpt`, out = `${dir}/hf`;
        await Deno.mkdir(run);
        const dcp = flags.includes("dcp");
        const made = await py([
          "make",
          kind,
          `${dir}/src`,
          ckpt,
          JSON.stringify(over),
          ...(dcp ? [`${run}/checkpoints/step-00000003/dcp`] : []),
        ]);
        await makeRun(run, ckpt, dcp ? JSON.parse(made) : undefined);
        const r = await exportCli([run, "--hf", out, ...flags.filter((f) => f !== "dcp")]);
        assertEquals(r.code, 0, r.err);
        const dtype = flags.includes("bfloat16") ? "bfloat16" : "float32";
        assertIncludes(r.out, `exported step 3 (${kind}, 2 layers, ${dtype})`);
        const files = [...Deno.readDirSync(out)].map((e) => e.name);
        for (const f of expectFiles) assert(files.includes(f), `${f} in ${files}`);
        if (flags.includes("--shard-mb")) assert(files.filter((f) => f.endsWith(".safetensors")).length > 2, "shards");
        const res = JSON.parse(await py(["check", kind, `${dir}/src`, ckpt, out, dtype]));
        if (dtype === "bfloat16") {
          // Half the bytes of the float32 checkpoint's parameters (plus the header).
          const bytes = (await Deno.stat(`${out}/model.safetensors`)).size;
          const { total } = JSON.parse(await py(["count", kind, `${dir}/src`, ckpt]));
          assert(bytes > 2 * total && bytes < 2 * total + 65536, `${bytes} bytes for ${total} values`);
        }
        assert(res.maxDiff <= 2e-5 * Math.max(1, res.scale), `logits differ by ${res.maxDiff}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("export --hf: a gpt run and a step without a checkpoint each get one clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexsp-export-bad-" });
  try {
    const run = `${dir}/run`, ckpt = `${run}/rank-0.ckpt`;
    await Deno.mkdir(run);
    // A gpt executor state written by the TypeScript executors' encoder.
    const { encodeState } = await import("../../kernels/checkpoint.ts");
    const shape = { layers: 1, hidden: 8, heads: 2, vocab: 16, maxSeq: 8 };
    const z = new Float32Array(100);
    await Deno.writeFile(ckpt, encodeState({ shape, step: 3, params: z, m: z, v: z }));
    await makeRun(run, ckpt);
    let r = await exportCli([run, "--hf", `${dir}/out`]);
    assertEquals(r.code, 1);
    assertIncludes(r.err, "the run trains the gpt family; --hf exports llama-family runs");
    r = await exportCli([run, "--hf", `${dir}/out`, "--step", "7"]);
    assertEquals(r.code, 1);
    assertIncludes(r.err, `no checkpoint of step 7 (steps saved: 3)`);
    assert(!r.err.includes("    at "), "no stack trace");
    assertEquals(checkpointName(3), "step-00000003");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export --dtype bfloat16: float32 rounds to nearest, ties to even; infinities and NaN stay what they are", () => {
  const bits = [0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0x7f7fffff, 0x80000000, 0xff800000];
  const nan = [0x7fc00001, 0x7f800001, 0xffc00000];
  const out = new Uint16Array(float32ToBfloat16(new Uint8Array(new Uint32Array([...bits, ...nan]).buffer)).buffer);
  // 1.0; a tie to the even below; a tie to the even above; just over a tie; the largest float32 overflows to +inf,
  // as torch rounds it; -0; -inf.
  assertEquals([...out.slice(0, bits.length)], [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f81, 0x7f80, 0x8000, 0xff80]);
  // Every NaN (quiet or signalling, either sign) is a quiet NaN of its sign.
  assertEquals([...out.slice(bits.length)].map((v) => v & 0xffc0), [0x7fc0, 0x7fc0, 0xffc0]);
});
