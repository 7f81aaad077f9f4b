// Where an executor's sequences come from: the dataset token file (uint16/uint32 little-endian tokens, a
// sequence at its token offset), or, for tests and runs without a dataset, a deterministic synthetic source.
//
// Synthetic tokens depend only on the sequence id and position (never on the rank or run), so every rank of a
// run, and every degree, sees the same data: token p of sequence `id` is (a + p·b) mod vocab with a, b drawn
// from a PRNG seeded by the id (b in 1..7) — a learnable arithmetic progression.

import type { SequenceRef } from "../core/protocol.ts";
import { Prng } from "./model.ts";

/** Reads the tokens of sequences. */
export interface TokenSource {
  /** The tokens of `seq` (length `seq.length`). */
  read(seq: SequenceRef): Promise<Int32Array>;
  /** Releases the file, if any. */
  close(): void;
}

/** The synthetic source described in the file header. */
export function syntheticSource(vocab: number): TokenSource {
  return {
    read(seq: SequenceRef): Promise<Int32Array> {
      const rng = new Prng(0x5eed, seq.id);
      const a = rng.int(vocab), b = 1 + rng.int(7);
      const out = new Int32Array(seq.length);
      for (let p = 0; p < seq.length; p++) out[p] = (a + p * b) % vocab;
      return Promise.resolve(out);
    },
    close() {},
  };
}

/** Opens a dataset token file (`tokenBytes` = 2 for uint16, 4 for uint32, little-endian). */
export async function fileSource(path: string, tokenBytes: 2 | 4): Promise<TokenSource> {
  if (tokenBytes !== 2 && tokenBytes !== 4) throw new Error(`dataset: tokenBytes must be 2 or 4, got ${tokenBytes}`);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new Error(`dataset: cannot open token file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const size = (await file.stat()).size;
  const tokens = Math.floor(size / tokenBytes);
  // One file position is shared by every read: reads run one at a time (callers read a group's sequences at once).
  let queue: Promise<unknown> = Promise.resolve();
  return {
    read(seq: SequenceRef): Promise<Int32Array> {
      const r = queue.then(() => readAt(seq));
      queue = r.catch(() => {});
      return r;
    },
    close() {
      try {
        file.close();
      } catch { /* closed */ }
    },
  };
  async function readAt(seq: SequenceRef): Promise<Int32Array> {
    if (!(Number.isInteger(seq.offset) && seq.offset >= 0 && seq.offset + seq.length <= tokens)) {
      throw new Error(
        `dataset: sequence ${seq.id} [${seq.offset}, ${seq.offset + seq.length}) is outside ${path} (${tokens} tokens)`,
      );
    }
    const buf = new Uint8Array(seq.length * tokenBytes);
    await file.seek(seq.offset * tokenBytes, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = await file.read(buf.subarray(got));
      if (n === null) throw new Error(`dataset: ${path} ended early reading sequence ${seq.id}`);
      got += n;
    }
    const dv = new DataView(buf.buffer);
    const out = new Int32Array(seq.length);
    if (tokenBytes === 2) { for (let i = 0; i < out.length; i++) out[i] = dv.getUint16(2 * i, true); }
    else for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(4 * i, true);
    return out;
  }
}
