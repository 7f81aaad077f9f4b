// Reading a lengths file (one integer per line) and fitting lengths to the model's context.

import { UserError } from "../errors.ts";
import type { Config } from "../config/types.ts";

/** Reads one positive integer per line (blank lines and `#` comments skipped); errors name the line. */
export async function readLengthsFile(path: string): Promise<number[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UserError(`${path}: cannot read lengths file (${(e as Error).message})`);
  }
  const out: number[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) return;
    const n = Number(line);
    if (!Number.isInteger(n) || n < 1) {
      throw new UserError(`${path}:${i + 1}: expected a positive integer sequence length, got "${line}"`);
    }
    out.push(n);
  });
  if (out.length === 0) throw new UserError(`${path}: no lengths in the file`);
  return out;
}

/** Applies training.long_sequences to lengths above the model's context: split into pieces, or drop. */
export function fitToContext(lengths: number[], config: Config): { lengths: number[]; note?: string } {
  const max = config.model.maxSeq;
  const long = lengths.filter((s) => s > max).length;
  if (long === 0) return { lengths };
  const out: number[] = [];
  for (const s of lengths) {
    if (s <= max) out.push(s);
    else if (config.training.longSequences === "split") {
      for (let r = s; r > 0; r -= max) out.push(Math.min(r, max));
    }
  }
  const how = config.training.longSequences === "split" ? "split into pieces" : "dropped";
  return { lengths: out, note: `${long} sequence(s) longer than model.max_seq ${max} ${how}` };
}
