// `deno task export RUN_DIR [--step N] --hf OUT`: a llama-family run's checkpoint as a Hugging Face model
// directory that transformers.AutoModelForCausalLM.from_pretrained loads: config.json (core/hf_config.ts) and the
// parameters as float32 or bfloat16 safetensors (one model.safetensors, or shards plus model.safetensors.index.json);
// bfloat16 rounds each float32 to nearest, ties to even (torch's `.to(torch.bfloat16)`), NaN kept a quiet NaN.
//
// The checkpoint is verified as for a resume (manifest, orchestrator part, sha256 of the parts read). A flat
// checkpoint (TypeScript executors) is read from rank 0's part (every rank holds the full state); a sharded one (the
// torch executors' DCP directory) is first turned by kernels/torch/dcp_export.py (python3 with torch) into a
// temporary file of the parameters in layout order, tensor by tensor. Either way the parameters are then read one
// tensor at a time, so memory holds one shard, not the model. Every file is written atomically.
//
// safetensors: u64 LE header length | JSON header {name: {dtype, shape, data_offsets}} padded with spaces to 8 bytes
// | raw little-endian data.

import { UserError } from "../errors.ts";
import { writeAtomic } from "../../core/atomic_write.ts";
import { readAt } from "../../core/read_at.ts";
import { hfConfigOf, readHfShape } from "../../core/hf_config.ts";
import { llamaLayout, type LlamaSlice } from "../../core/llama_layout.ts";
import { torchModuleCommand } from "../../core/torch_package.ts";
import type { ModelShape } from "../../core/model_shape.ts";
import { checkpointName, CheckpointStore, DCP_DIR, type VerifiedCheckpoint } from "./checkpoint_store.ts";
import { readRunInfo, type RunInfo } from "./run_dir.ts";
import { configRelativePath } from "../config/load.ts";

/** Options of {@link exportHf}. */
export interface ExportOptions {
  runDir: string;
  /** Checkpoint step (default: the newest verified checkpoint). */
  step?: number;
  out: string;
  /** Largest safetensors file before the export is sharded (bytes; default 2 GiB). */
  shardBytes?: number;
  /** Checkpoint root (default `RUN_DIR/checkpoints`). */
  checkpoints?: string;
  /** Weight dtype of the export (default float32: the checkpoint's values exactly). */
  dtype?: ExportDtype;
}

/** The weight dtypes an export writes. */
export const EXPORT_DTYPES = ["float32", "bfloat16"] as const;
export type ExportDtype = typeof EXPORT_DTYPES[number];

/** float32 little-endian bytes as bfloat16 little-endian bytes (round to nearest, ties to even). */
export function float32ToBfloat16(f32: Uint8Array): Uint8Array {
  const src = new Uint32Array(f32.buffer, f32.byteOffset, f32.byteLength / 4);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const u = src[i];
    out[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

/** What an export wrote. */
export interface ExportResult {
  step: number;
  files: string[];
  shape: ModelShape;
  /** config.json's max_position_embeddings: the source model's context, or the trained one without a source. */
  contextLength: number;
  /** Things the user should know about the export (e.g. a model.from that is no longer readable). */
  notes: string[];
}

/**
 * The context length config.json states. A run may train a model.from checkpoint at a capped model.max_seq; its
 * export keeps the source's context (the weights and RoPE are the same), read back from the source config.json the
 * run was started with, as training read it (readHfShape). Without a readable source, the trained context, with a note saying so.
 */
function sourceContext(info: RunInfo, trained: number): { length: number; note?: string } {
  const model = (info.fingerprint as { model?: { from?: unknown } } | undefined)?.model;
  if (typeof model?.from !== "string" || typeof info.config !== "string") return { length: trained };
  const dir = configRelativePath(info.config, model.from).replace(/\/+$/, "");
  try {
    return { length: Math.max(trained, readHfShape(dir).maxSeq) };
  } catch (e) {
    const path = `${dir}/config.json`, msg = (e as Error).message;
    const why = msg.startsWith(`${path}: `) ? msg.slice(path.length + 2) : msg;
    return {
      length: trained,
      note: `${path} is not readable (${why}): max_position_embeddings is the trained ${trained}`,
    };
  }
}

async function pickCheckpoint(store: CheckpointStore, step: number | undefined): Promise<VerifiedCheckpoint> {
  const names = await store.candidates();
  if (names.length === 0) throw new UserError(`${store.root}: no checkpoints (the run saved none yet)`);
  const wanted = step === undefined ? names : names.filter((n) => n === checkpointName(step));
  if (wanted.length === 0) {
    const have = names.map((n) => Number(n.slice(5))).sort((a, b) => a - b).join(", ");
    throw new UserError(`${store.root}: no checkpoint of step ${step} (steps saved: ${have})`);
  }
  const reasons: string[] = [];
  for (const n of wanted) {
    const v = await store.verify(n, (p) => p.rank === 0 || p.path.includes(`/${DCP_DIR}/`));
    if (v.ok) return v.checkpoint;
    reasons.push(`${n}: ${v.reason}`);
  }
  throw new UserError(`${store.root}: no usable checkpoint: ${reasons.join("; ")}`);
}

/** A safetensors file of `part` (the slices in order, their bytes already in `dtype`). */
export function encodeSafetensors(part: { slice: LlamaSlice; data: Uint8Array }[], dtype: ExportDtype): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  for (const { slice, data } of part) {
    header[slice.name] = {
      dtype: dtype === "bfloat16" ? "BF16" : "F32",
      shape: slice.shape,
      data_offsets: [off, off + data.length],
    };
    off += data.length;
  }
  let hj = JSON.stringify(header);
  hj += " ".repeat((8 - (new TextEncoder().encode(hj).length % 8)) % 8);
  const hb = new TextEncoder().encode(hj);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let o = 8 + hb.length;
  for (const { data } of part) {
    out.set(data, o);
    o += data.length;
  }
  return out;
}

/** The parameters of a sharded checkpoint as a flat float32 file `out` (dcp_export.py); its shape and size. */
async function flattenSharded(ck: VerifiedCheckpoint, out: string): Promise<{ shape: ModelShape; total: number }> {
  const pkg = new URL("../../kernels/torch", import.meta.url).pathname;
  const { args, env } = torchModuleCommand(pkg, "dcp_export", Deno.env.get("PYTHONPATH"));
  const python = Deno.env.get("FLEXSP_PYTHON") ?? "python3";
  let res: Deno.CommandOutput;
  try {
    res = await new Deno.Command(python, {
      args: [...args, `${ck.dir}/${DCP_DIR}`, out],
      env,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (e) {
    throw new UserError(
      `${ck.dir}: a sharded (torch) checkpoint is read with ${python} and torch, which cannot run here ` +
        `(${(e as Error).message}); set FLEXSP_PYTHON to a Python with torch`,
    );
  }
  if (!res.success) {
    const err = new TextDecoder().decode(res.stderr).trim().split("\n").at(-1);
    throw new UserError(`${ck.dir}: reading the sharded checkpoint with ${python} failed: ${err}`);
  }
  return JSON.parse(new TextDecoder().decode(res.stdout).trim().split("\n").at(-1)!);
}

/** Exports a run's checkpoint as a Hugging Face model directory (see the file header). */
export async function exportHf(o: ExportOptions): Promise<ExportResult> {
  const info = await readRunInfo(o.runDir);
  if (!info) throw new UserError(`${o.runDir}: not a run directory (no run.json)`);
  const root = o.checkpoints ?? `${o.runDir}/checkpoints`;
  const ck = await pickCheckpoint(new CheckpointStore(root, o.runDir), o.step);
  if (ck.manifest.format === "dcp") {
    const flat = await Deno.makeTempFile({ dir: o.runDir, prefix: ".export-", suffix: ".f32" });
    try {
      const { shape, total } = await flattenSharded(ck, flat);
      const f = await Deno.open(flat);
      try {
        return await writeExport(o, info, ck, { f, path: flat, start: 0, shape, total });
      } finally {
        f.close();
      }
    } finally {
      await Deno.remove(flat).catch(() => {});
    }
  }
  const part = ck.manifest.parts.find((p) => p.rank === 0);
  if (!part) throw new UserError(`${ck.dir}/manifest.json: no rank-0 part`);
  let f: Deno.FsFile;
  try {
    f = await Deno.open(part.path);
  } catch (e) {
    throw new UserError(
      `${part.path}: rank 0's part of ${ck.name} is not readable here (${(e as Error).message}); it lives on ` +
        `${part.host}: copy it to this path first`,
    );
  }
  try {
    const head = await readAt(f, 0, 16);
    if (new TextDecoder().decode(head.subarray(0, 8)) !== "FLEXSPCK") {
      throw new UserError(`${part.path}: not a flexsp executor checkpoint`);
    }
    const hl = new DataView(head.buffer).getUint32(12, true);
    const header = JSON.parse(new TextDecoder().decode(await readAt(f, 16, hl))) as {
      shape: ModelShape;
      total: number;
    };
    const start = 16 + hl + ((4 - ((16 + hl) % 4)) % 4);
    return await writeExport(o, info, ck, { f, path: part.path, start, shape: header.shape, total: header.total });
  } finally {
    f.close();
  }
}

/** The parameters of `src` (float32 values in layout order from byte `start` of the open file) as a Hugging Face
 * directory. */
async function writeExport(
  o: ExportOptions,
  info: RunInfo,
  ck: VerifiedCheckpoint,
  src: { f: Deno.FsFile; path: string; start: number; shape: ModelShape; total: number },
): Promise<ExportResult> {
  const { f, start, shape, total } = src;
  if (shape.family !== "llama") {
    throw new UserError(
      `${o.runDir}: the run trains the ${shape.family ?? "gpt"} family; --hf exports llama-family runs ` +
        "(model.from or a llama preset)",
    );
  }
  const layout = llamaLayout(shape);
  if (layout.total !== total) {
    throw new UserError(
      `${src.path}: holds ${total} values, the ${shape.modelType} layout has ${layout.total}`,
    );
  }
  const limit = o.shardBytes ?? 2 ** 31;
  const dtype = o.dtype ?? "float32";
  const width = dtype === "bfloat16" ? 2 : 4;
  const shards: LlamaSlice[][] = [[]];
  let size = 0;
  for (const s of layout.slices) {
    if (shards.at(-1)!.length && size + s.length * width > limit) {
      shards.push([]);
      size = 0;
    }
    shards.at(-1)!.push(s);
    size += s.length * width;
  }
  await Deno.mkdir(o.out, { recursive: true });
  const names = shards.length === 1
    ? ["model.safetensors"]
    : shards.map((_, i) =>
      `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`
    );
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  for (const [i, sl] of shards.entries()) {
    const parts = [];
    for (const s of sl) {
      const f32 = await readAt(f, start + s.offset * 4, s.length * 4);
      parts.push({ slice: s, data: dtype === "bfloat16" ? float32ToBfloat16(f32) : f32 });
      weightMap[s.name] = names[i];
    }
    const path = `${o.out}/${names[i]}`;
    await writeAtomic(path, encodeSafetensors(parts, dtype));
    files.push(path);
  }
  if (shards.length > 1) {
    const total = layout.slices.reduce((a, s) => a + s.length * width, 0);
    const path = `${o.out}/model.safetensors.index.json`;
    await writeAtomic(path, JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
    files.push(path);
  }
  const cfgPath = `${o.out}/config.json`;
  const context = sourceContext(info, shape.maxSeq);
  await writeAtomic(cfgPath, JSON.stringify(hfConfigOf({ ...shape, maxSeq: context.length }, dtype), null, 2) + "\n");
  files.push(cfgPath);
  return {
    step: ck.state.step,
    files,
    shape,
    contextLength: context.length,
    notes: context.note ? [context.note] : [],
  };
}
