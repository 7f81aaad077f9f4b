// Megatron-LM indexed datasets (`megatron.core.datasets.indexed_dataset`): importing a `PREFIX.bin` / `PREFIX.idx`
// pair without re-tokenising, and exporting a flexsp dataset as one.
//
//   PREFIX.idx   "MMIDIDX\0\0" | version uint64 LE (1) | dtype code uint8 (1 uint8, 2 int8, 3 int16, 4 int32,
//                5 int64, 8 uint16; 6/7 are floats) | sequence count S uint64 | document count D uint64 |
//                S int32 sequence lengths | S int64 sequence pointers (byte offsets into .bin) |
//                D int64 document indices (sequence index where each document starts; 0 first, S last).
//   PREFIX.bin   every sequence's tokens back to back in the dtype, native (little-endian) order.
//
// Import: each Megatron document (its sequences, contiguous in .bin) becomes one flexsp document, in order, so
// document numbers agree. A uint16 or int32 .bin is kept in place (hard link, else symbolic link, as tokens.bin:
// int32 ids are non-negative, so their bytes are uint32 LE); other dtypes are converted. Every token is checked to lie
// in the tokenizer's vocabulary while the file is hashed, chunk by chunk. Export writes one sequence per document,
// uint16 below 65,536 ids (Megatron's own choice is uint16 below 65,500), else int32, that `IndexedDataset` reads.

import { sha256Hasher, sha256Hex } from "../../core/hash.ts";
import { UserError } from "../errors.ts";
import { writeAtomic } from "../../core/atomic_write.ts";
import { DATASET_FILES, type DatasetManifest, INDEX_RECORD_BYTES, readDatasetIndex } from "./dataset_format.ts";
import { DatasetOutput, writeAll } from "./dataset_writer.ts";
import { lengthStats } from "./dataset_format.ts";
import type { PrepareProgress } from "./prepare.ts";
import { tokenBytesFor, type TokenizerInfo } from "./tokenizer.ts";

/** The 9-byte magic that starts every Megatron `.idx`. */
export const MEGATRON_MAGIC = Uint8Array.of(0x4d, 0x4d, 0x49, 0x44, 0x49, 0x44, 0x58, 0, 0);
const HEADER_BYTES = 9 + 8 + 1 + 8 + 8;

/** Megatron dtype codes: bytes per token and whether the code is an integer type flexsp can import. */
const DTYPES: Record<number, { name: string; bytes: number; read: (dv: DataView, o: number) => number }> = {
  1: { name: "uint8", bytes: 1, read: (dv, o) => dv.getUint8(o) },
  2: { name: "int8", bytes: 1, read: (dv, o) => dv.getInt8(o) },
  3: { name: "int16", bytes: 2, read: (dv, o) => dv.getInt16(o, true) },
  4: { name: "int32", bytes: 4, read: (dv, o) => dv.getInt32(o, true) },
  5: { name: "int64", bytes: 8, read: (dv, o) => Number(dv.getBigInt64(o, true)) },
  8: { name: "uint16", bytes: 2, read: (dv, o) => dv.getUint16(o, true) },
};

/** A parsed Megatron index. */
export interface MegatronIndex {
  dtypeCode: number;
  sequenceLengths: Int32Array;
  sequencePointers: BigInt64Array;
  documentIndices: BigInt64Array;
}

/** Reads and checks `PREFIX.idx`; errors name the file and what is wrong. */
export async function readMegatronIndex(idxPath: string): Promise<MegatronIndex> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(idxPath);
  } catch (e) {
    throw new UserError(`${idxPath}: cannot read (${(e as Error).message}); --input is the prefix of PREFIX.bin/.idx`);
  }
  if (bytes.length < HEADER_BYTES || !MEGATRON_MAGIC.every((b, i) => bytes[i] === b)) {
    const got = new TextDecoder("latin1").decode(bytes.subarray(0, 9)).replace(/[^\x20-\x7e]/g, "?");
    throw new UserError(`${idxPath}: not a Megatron index (the magic is "${got}", expected "MMIDIDX")`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getBigUint64(9, true);
  if (version !== 1n) throw new UserError(`${idxPath}: Megatron index version ${version}, only version 1 is known`);
  const dtypeCode = dv.getUint8(17);
  if (!DTYPES[dtypeCode]) {
    throw new UserError(
      `${idxPath}: dtype code ${dtypeCode} is not an integer token type (1 uint8, 2 int8, 3 int16, 4 int32, ` +
        `5 int64, 8 uint16)`,
    );
  }
  const s = Number(dv.getBigUint64(18, true)), d = Number(dv.getBigUint64(26, true));
  const expected = HEADER_BYTES + 4 * s + 8 * s + 8 * d;
  if (bytes.length !== expected) {
    throw new UserError(
      `${idxPath}: ${bytes.length} bytes, but ${s} sequences and ${d} document indices need ${expected}` +
        (bytes.length === expected + s
          ? " (a multimodal index with sequence modes, which flexsp does not import)"
          : "") +
        `; the index is damaged or truncated`,
    );
  }
  const at = (o: number, n: number) => bytes.slice(o, o + n).buffer;
  const sequenceLengths = new Int32Array(at(HEADER_BYTES, 4 * s));
  const sequencePointers = new BigInt64Array(at(HEADER_BYTES + 4 * s, 8 * s));
  const documentIndices = new BigInt64Array(at(HEADER_BYTES + 12 * s, 8 * d));
  if (d < 1 || documentIndices[0] !== 0n || documentIndices[d - 1] !== BigInt(s)) {
    throw new UserError(
      `${idxPath}: document indices must run from 0 to the sequence count ${s}; the index is damaged`,
    );
  }
  const width = BigInt(DTYPES[dtypeCode].bytes);
  let ptr = 0n;
  for (let i = 0; i < s; i++) {
    if (sequenceLengths[i] < 0) throw new UserError(`${idxPath}: sequence ${i} has a negative length`);
    if (sequencePointers[i] !== ptr) {
      throw new UserError(
        `${idxPath}: sequence ${i} starts at byte ${sequencePointers[i]}, expected ${ptr} (sequences back to back); ` +
          `the index is damaged`,
      );
    }
    ptr += BigInt(sequenceLengths[i]) * width;
  }
  for (let k = 1; k < d; k++) {
    if (documentIndices[k] < documentIndices[k - 1]) {
      throw new UserError(`${idxPath}: document index ${k} goes backwards; the index is damaged`);
    }
  }
  return { dtypeCode, sequenceLengths, sequencePointers, documentIndices };
}

/** Options of `importMegatron`. */
export interface MegatronImportOptions {
  /** PREFIX of PREFIX.bin / PREFIX.idx (a trailing `.bin` or `.idx` is accepted). */
  prefix: string;
  out: string;
  tokenizer: TokenizerInfo;
  overwrite: boolean;
  onProgress?: (p: PrepareProgress) => void;
}

const CHUNK_BYTES = 1 << 22;

/** Imports a Megatron dataset (see the file header). */
export async function importMegatron(opts: MegatronImportOptions): Promise<DatasetManifest> {
  const prefix = opts.prefix.replace(/\.(bin|idx)$/, "");
  const idxPath = `${prefix}.idx`, binPath = `${prefix}.bin`;
  const idx = await readMegatronIndex(idxPath);
  const dt = DTYPES[idx.dtypeCode];
  const s = idx.sequenceLengths.length;
  let totalTokens = 0;
  for (let i = 0; i < s; i++) totalTokens += idx.sequenceLengths[i];
  let binSize: number;
  try {
    binSize = (await Deno.stat(binPath)).size;
  } catch (e) {
    throw new UserError(`${binPath}: cannot read (${(e as Error).message}); it must sit beside ${idxPath}`);
  }
  if (binSize !== totalTokens * dt.bytes) {
    throw new UserError(
      `${binPath}: ${binSize} bytes, but ${idxPath} lists ${totalTokens} ${dt.name} tokens (${
        totalTokens * dt.bytes
      } ` +
        `bytes); the .bin is ${binSize < totalTokens * dt.bytes ? "truncated" : "longer than its index"}`,
    );
  }
  const vocab = opts.tokenizer.vocab;
  const inPlace = idx.dtypeCode === 8 || idx.dtypeCode === 4;
  const tokenBytes: 2 | 4 = idx.dtypeCode === 8 ? 2 : idx.dtypeCode === 4 ? 4 : tokenBytesFor(vocab);

  const out = await DatasetOutput.open(opts.out, opts.overwrite);
  let how: "hardlink" | "symlink" | "converted" = "converted";
  const hash = sha256Hasher();
  const bin = await Deno.open(binPath, { read: true });
  let conv: Deno.FsFile | undefined;
  try {
    if (inPlace) {
      try {
        await Deno.link(binPath, out.tmpTokens);
        how = "hardlink";
      } catch {
        await Deno.symlink(await Deno.realPath(binPath), out.tmpTokens);
        how = "symlink";
      }
    } else {
      conv = await Deno.open(out.tmpTokens, { write: true, create: true, truncate: true });
    }
    // One pass over the .bin: hash what tokens.bin will hold, check every id, convert where needed.
    const buf = new Uint8Array(CHUNK_BYTES - (CHUNK_BYTES % dt.bytes));
    let read = 0, tokenIndex = 0;
    let lastReport = performance.now();
    while (read < binSize) {
      let got = 0;
      const want = Math.min(buf.length, binSize - read);
      while (got < want) {
        const n = await bin.read(buf.subarray(got, want));
        if (n === null) throw new UserError(`${binPath}: ended at byte ${read + got}, expected ${binSize}`);
        got += n;
      }
      const dv = new DataView(buf.buffer, 0, got);
      const count = got / dt.bytes;
      const converted = conv ? (tokenBytes === 2 ? new Uint16Array(count) : new Uint32Array(count)) : undefined;
      for (let i = 0; i < count; i++) {
        const t = dt.read(dv, i * dt.bytes);
        if (t < 0 || t >= vocab) {
          throw new UserError(
            `${binPath}: token ${tokenIndex + i} is ${t}, outside the tokenizer's vocabulary of ${vocab} ids; ` +
              `pass the --tokenizer the dataset was made with`,
          );
        }
        if (converted) converted[i] = t;
      }
      if (conv) {
        const bytes = new Uint8Array(converted!.buffer);
        hash.update(bytes);
        await writeAll(conv, bytes);
      } else {
        hash.update(buf.subarray(0, got));
      }
      read += got;
      tokenIndex += count;
      const now = performance.now();
      if (opts.onProgress && now - lastReport > 500) {
        lastReport = now;
        opts.onProgress({ bytesRead: read, totalBytes: binSize, documents: 0, tokens: tokenIndex, file: binPath });
      }
    }
    if (conv) {
      await conv.sync();
      conv.close();
      conv = undefined;
    }
    // The index: one record per Megatron document.
    const d = idx.documentIndices.length - 1;
    const index = new Uint8Array(d * INDEX_RECORD_BYTES);
    const iv = new DataView(index.buffer);
    const lengths = new Uint32Array(d);
    let emptyDocs = 0;
    for (let k = 0; k < d; k++) {
      const first = Number(idx.documentIndices[k]), end = Number(idx.documentIndices[k + 1]);
      let len = 0;
      for (let q = first; q < end; q++) len += idx.sequenceLengths[q];
      const offset = first < s ? Number(idx.sequencePointers[first]) / dt.bytes : totalTokens;
      iv.setBigUint64(k * INDEX_RECORD_BYTES, BigInt(offset), true);
      iv.setUint32(k * INDEX_RECORD_BYTES + 8, len, true);
      lengths[k] = len;
      if (len === 0) emptyDocs++;
    }
    await writeAtomicPlain(out.tmpIndex, index);
    const indexSha = sha256Hex(index);
    const tokensSha = hash.digest("hex");
    const manifest = await out.commit({
      tokenBytes,
      documents: d,
      tokens: totalTokens,
      files: {
        tokens: { name: DATASET_FILES.tokens, bytes: totalTokens * tokenBytes, sha256: tokensSha },
        index: { name: DATASET_FILES.index, bytes: index.length, sha256: indexSha },
      },
      source: {
        kind: "megatron",
        input: await Deno.realPath(prefix + ".idx").then((p) => p.replace(/\.idx$/, "")),
        split: "document",
        inputBytes: binSize,
        tokens: how,
      },
      skipped: { empty: emptyDocs, short: 0, binaryFiles: 0 },
      lengths: lengthStats(lengths),
    }, opts.tokenizer);
    opts.onProgress?.({ bytesRead: binSize, totalBytes: binSize, documents: d, tokens: totalTokens, file: binPath });
    return manifest;
  } catch (e) {
    try {
      conv?.close();
    } catch { /* closed */ }
    await out.abort();
    throw e;
  } finally {
    try {
      bin.close();
    } catch { /* closed */ }
  }
}

async function writeAtomicPlain(path: string, bytes: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await writeAll(f, bytes);
    await f.sync();
  } finally {
    f.close();
  }
}

/** Options of `exportMegatron`. */
export interface MegatronExportOptions {
  /** The flexsp dataset directory. */
  dataset: string;
  /** PREFIX of the PREFIX.bin / PREFIX.idx to write. */
  prefix: string;
  overwrite?: boolean;
}

/** Writes a dataset as a Megatron indexed dataset (see the file header); the .idx comes last. */
export async function exportMegatron(
  opts: MegatronExportOptions,
): Promise<{ binPath: string; idxPath: string; dtype: string; documents: number; tokens: number }> {
  const ds = await readDatasetIndex(opts.dataset);
  const m = ds.manifest;
  const prefix = opts.prefix.replace(/\.(bin|idx)$/, "");
  const binPath = `${prefix}.bin`, idxPath = `${prefix}.idx`;
  for (const p of [binPath, idxPath]) {
    if (!opts.overwrite && await Deno.stat(p).then(() => true, () => false)) {
      throw new UserError(`--out ${prefix}: ${p} exists; pass --overwrite to replace it`);
    }
  }
  const dir = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  // uint16 tokens stay uint16 (code 8); uint32 ones become int32 (code 4): ids below 2^31 have the same bytes.
  const code = m.tokenBytes === 2 ? 8 : 4;
  if (code === 4 && m.vocab > 2 ** 31) throw new UserError(`${opts.dataset}: vocabulary ${m.vocab} exceeds int32`);
  const w = m.tokenBytes;
  const tmpBin = `${binPath}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const src = await Deno.open(ds.tokensPath, { read: true });
  const dst = await Deno.open(tmpBin, { write: true, create: true, truncate: true });
  let tokens = 0;
  try {
    // Copy each document's tokens in index order, coalescing documents that follow each other in the file.
    const n = ds.lengths.length;
    const chunkTokens = CHUNK_BYTES / w;
    let k = 0;
    while (k < n) {
      const start = ds.offsets[k];
      let end = start + ds.lengths[k];
      k++;
      while (k < n && ds.offsets[k] === end && end - start < chunkTokens) end += ds.lengths[k++];
      for (let p = start; p < end; p += chunkTokens) {
        const q = Math.min(end, p + chunkTokens);
        const buf = new Uint8Array((q - p) * w);
        await src.seek(p * w, Deno.SeekMode.Start);
        let got = 0;
        while (got < buf.length) {
          const r = await src.read(buf.subarray(got));
          if (r === null) throw new UserError(`${ds.tokensPath}: ended early; the dataset is damaged`);
          got += r;
        }
        await writeAll(dst, buf);
        tokens += q - p;
      }
    }
    await dst.sync();
    dst.close();
    const s = n;
    const idx = new Uint8Array(HEADER_BYTES + 12 * s + 8 * (s + 1));
    idx.set(MEGATRON_MAGIC, 0);
    const dv = new DataView(idx.buffer);
    dv.setBigUint64(9, 1n, true);
    dv.setUint8(17, code);
    dv.setBigUint64(18, BigInt(s), true);
    dv.setBigUint64(26, BigInt(s + 1), true);
    let ptr = 0;
    for (let i = 0; i < s; i++) {
      dv.setInt32(HEADER_BYTES + 4 * i, ds.lengths[i], true);
      dv.setBigInt64(HEADER_BYTES + 4 * s + 8 * i, BigInt(ptr), true);
      ptr += ds.lengths[i] * w;
    }
    for (let i = 0; i <= s; i++) dv.setBigInt64(HEADER_BYTES + 12 * s + 8 * i, BigInt(i), true);
    // The .idx is what makes the pair a dataset: remove an old one first, write the .bin, then the .idx.
    await Deno.remove(idxPath).catch(() => {});
    await Deno.rename(tmpBin, binPath);
    await writeAtomic(idxPath, idx);
  } catch (e) {
    try {
      dst.close();
    } catch { /* closed */ }
    await Deno.remove(tmpBin).catch(() => {});
    throw e;
  } finally {
    src.close();
  }
  return { binPath, idxPath, dtype: code === 8 ? "uint16" : "int32", documents: ds.lengths.length, tokens };
}
