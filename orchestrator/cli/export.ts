// `deno task export RUN_DIR [--step N] --hf OUT`: writes a run's checkpoint as a Hugging Face model directory
// (config.json + safetensors) that transformers.AutoModelForCausalLM.from_pretrained(OUT) loads.

import { runCli, UserError } from "../errors.ts";
import { parseCommand } from "./args.ts";
import { EXPORT_DTYPES, type ExportDtype, exportHf } from "../run/hf_export.ts";

const USAGE = `usage: deno task export <RUN_DIR> --hf OUT [--step N] [--dtype D] [--shard-mb MB] [--checkpoints DIR]

Writes a llama-family run's checkpoint as a Hugging Face model directory (config.json and safetensors).
  --hf OUT           the directory to write (created)
  --step N           the checkpoint of step N (default: the newest verified one)
  --dtype D          float32 (default: the checkpoint's values exactly) or bfloat16 (half the size, rounded to nearest)
  --shard-mb MB      largest safetensors file before the export is sharded (default 2048)
  --checkpoints DIR  where the run's checkpoints are (default RUN_DIR/checkpoints; training.checkpoint_dir/<run>)`;

async function main(): Promise<void> {
  const { values, positionals } = parseCommand(Deno.args, USAGE, {
    hf: { type: "string" },
    step: { type: "string" },
    "shard-mb": { type: "string" },
    dtype: { type: "string" },
    checkpoints: { type: "string" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one run directory\n\n${USAGE}`);
  if (typeof values.hf !== "string") throw new UserError(`--hf OUT is required\n\n${USAGE}`);
  const step = values.step === undefined ? undefined : Number(values.step);
  if (step !== undefined && (!Number.isInteger(step) || step < 0)) {
    throw new UserError(`--step: expected a step number, got "${values.step}"`);
  }
  const shardMb = values["shard-mb"] === undefined ? 2048 : Number(values["shard-mb"]);
  if (!(shardMb > 0)) throw new UserError(`--shard-mb: expected a positive number, got "${values["shard-mb"]}"`);
  const dtype = (values.dtype ?? "float32") as ExportDtype;
  if (!EXPORT_DTYPES.includes(dtype)) {
    throw new UserError(`--dtype: expected ${EXPORT_DTYPES.join(" or ")}, got "${values.dtype}"`);
  }
  const res = await exportHf({
    dtype,
    runDir: positionals[0].replace(/\/+$/, ""),
    step,
    out: values.hf,
    shardBytes: Math.max(1, Math.floor(shardMb * 2 ** 20)),
    checkpoints: values.checkpoints as string | undefined,
  });
  console.log(
    `exported step ${res.step} (${res.shape.modelType}, ${res.shape.layers} layers, ${dtype}) to ${values.hf}:`,
  );
  for (const f of res.files) console.log(`  ${f}`);
  if (res.contextLength !== res.shape.maxSeq) {
    console.log(`max_position_embeddings ${res.contextLength}: the source model's (trained at ${res.shape.maxSeq})`);
  }
  for (const n of res.notes) console.log(`note: ${n}`);
}

if (import.meta.main) runCli(main);
