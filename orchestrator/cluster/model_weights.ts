// The weights of `model.from` checked before the run directory exists or any executor starts: every safetensors
// file's header (length, JSON, dtypes, shapes, data_offsets inside the file and sized to the shape), and every
// tensor the llama-family layout needs present with the shape config.json implies. Only headers are read (a few
// KiB per file), so a truncated download or a corrupt file is refused at launch, naming the file and the tensor,
// instead of training on uninitialised memory. kernels/torch/hf.py repeats the same checks as a last line.

import { UserError } from "../errors.ts";
import { readAt } from "../../core/read_at.ts";
import { llamaLayout } from "../../core/llama_layout.ts";
import type { ModelShape } from "../../core/model_shape.ts";
import { modelFileNames } from "./model_staging.ts";

/** Bytes per element of the dtypes the torch executor reads (kernels/torch/hf.py _DTYPES). */
export const SAFETENSORS_DTYPES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };
/** A header larger than this is not a safetensors header (the format's own limit is 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

/** One tensor of a safetensors header. */
export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  /** Byte range in the file (absolute: after the 8-byte length and the header). */
  begin: number;
  end: number;
}

/** Reads and checks the header of the safetensors file `path`; every error names the file (and the tensor). */
export async function readSafetensorsHeader(path: string): Promise<Map<string, SafetensorsEntry>> {
  const bad = (why: string): never => {
    throw new UserError(`model.from: ${path}: ${why}`);
  };
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path);
  } catch (e) {
    return bad(`cannot open (${(e as Error).message})`);
  }
  try {
    const size = (await f.stat()).size;
    if (size < 8) bad(`not a safetensors file (${size} bytes, shorter than the 8-byte header length)`);
    const n = Number(new DataView((await readAt(f, 0, 8)).buffer).getBigUint64(0, true));
    if (n > size - 8 || n > MAX_HEADER_BYTES) {
      bad(`not a safetensors file (header length ${n} beyond the file's ${size} bytes): re-download it`);
    }
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readAt(f, 8, n)));
      if (!header || typeof header !== "object" || Array.isArray(header)) throw new Error("not an object");
    } catch (e) {
      return bad(`corrupt safetensors header (${(e as Error).message}): re-download it`);
    }
    const base = 8 + n, data = size - base;
    const out = new Map<string, SafetensorsEntry>();
    for (const [name, v] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const width = SAFETENSORS_DTYPES[String(t?.dtype)];
      if (width === undefined) {
        bad(`tensor ${name} has dtype ${t?.dtype} (supported: ${Object.keys(SAFETENSORS_DTYPES).join(", ")})`);
      }
      const shape = t.shape, offs = t.data_offsets;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        bad(`tensor ${name} has no valid shape in the header: re-download it`);
      }
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        bad(`tensor ${name} has no valid data_offsets in the header: re-download it`);
      }
      const [a, b] = offs as number[];
      const want = (shape as number[]).reduce((x, y) => x * y, 1) * width;
      if (b < a || b - a !== want) {
        bad(
          `tensor ${name}: data_offsets [${a}, ${b}] hold ${b - a} bytes, its ${t.dtype} shape ` +
            `[${(shape as number[]).join(", ")}] needs ${want}: re-download it`,
        );
      }
      if (b > data) {
        bad(
          `truncated: tensor ${name} ends at byte ${base + b} of a ${size}-byte file (${base + b - size} ` +
            `bytes missing): re-download it`,
        );
      }
      out.set(name, { dtype: String(t.dtype), shape: shape as number[], begin: base + a, end: base + b });
    }
    return out;
  } finally {
    f.close();
  }
}

/**
 * Checks that the safetensors of the Hugging Face directory `dir` hold every tensor of the llama-family `shape`
 * with the right shape, in files whose headers are sound and whose data is all there. Throws a UserError naming the
 * file and the tensor.
 */
export async function verifyModelWeights(dir: string, shape: ModelShape): Promise<void> {
  const names = await modelFileNames(dir);
  const where = new Map<string, { file: string; entry: SafetensorsEntry }>();
  for (const name of names.filter((n) => n.endsWith(".safetensors"))) {
    const file = `${dir}/${name}`;
    for (const [t, entry] of await readSafetensorsHeader(file)) where.set(t, { file, entry });
  }
  const missing: string[] = [];
  for (const s of llamaLayout(shape).slices) {
    const got = where.get(s.name);
    if (!got) {
      missing.push(s.name);
      continue;
    }
    if (got.entry.shape.join(",") !== s.shape.join(",")) {
      throw new UserError(
        `model.from: ${got.file}: tensor ${s.name} has shape [${got.entry.shape.join(", ")}], ` +
          `${dir}/config.json implies [${s.shape.join(", ")}]`,
      );
    }
  }
  if (missing.length) {
    throw new UserError(
      `model.from: ${dir}: the weights lack ${missing.length} tensor(s) ${dir}/config.json implies: ` +
        `${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ", …" : ""} (a partial download? fetch the ` +
        `model again)`,
    );
  }
}
