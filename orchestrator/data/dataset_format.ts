// The on-disk format of an indexed token dataset, and reading its manifest and index.
//
// A dataset is a directory holding three files:
//
//   tokens.bin     every document's tokens back to back, little-endian uint16 (`tokenBytes` 2) or uint32 (4): the
//                  width follows the vocabulary, uint16 up to 65,536 token ids, else uint32. Documents are usually in
//                  file order, but the index may list them in another (`--shuffle-seed`) or point into a Megatron
//                  `.bin` kept in place (a hard link or symbolic link named tokens.bin).
//   index.bin      one 16-byte record per document, in document order: token offset (uint64 LE, in tokens, not
//                  bytes) | token count (uint32 LE) | reserved (uint32, 0).
//   manifest.json  what the files hold (see `DatasetManifest`): format and version, tokenizer and vocabulary, counts,
//                  each file's size and sha256, and `contentHash` (sha256 over both files' hashes and the tokenizer),
//                  which identifies the dataset in checkpoints.
//
// The files are written to temporary names, fsynced and renamed; the manifest comes last, so a directory without a
// manifest is an unfinished dataset and is never read. The orchestrator reads only the manifest and the index;
// executors read their sequences' tokens from tokens.bin at the offsets the index gives.

import { sha256Hex } from "../../core/hash.ts";
import { UserError } from "../errors.ts";
import type { TokenizerInfo } from "./tokenizer.ts";

/** Format name stored in every manifest. */
export const DATASET_FORMAT = "flexsp-dataset";
/** Current format version. */
export const DATASET_VERSION = 1;
/** File names inside a dataset directory. */
export const DATASET_FILES = { tokens: "tokens.bin", index: "index.bin", manifest: "manifest.json" } as const;
/** Bytes per index record. */
export const INDEX_RECORD_BYTES = 16;

/** One data file of a dataset, as the manifest describes it. */
export interface DatasetFileInfo {
  name: string;
  bytes: number;
  sha256: string;
}

/** Summary statistics of document lengths (tokens). */
export interface LengthStats {
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** `manifest.json` of a dataset. */
export interface DatasetManifest {
  format: typeof DATASET_FORMAT;
  version: number;
  /** `bytes`: one token per UTF-8 byte (vocabulary 256); `huggingface`: a tokenizer.json (see `tokenizerInfo`). */
  tokenizer: "bytes" | "huggingface";
  /** The tokenizer's identity hash, vocabulary and special tokens (absent in byte datasets made before it existed). */
  tokenizerInfo?: TokenizerInfo;
  /** Number of token ids (every token is below it). */
  vocab: number;
  tokenBytes: 2 | 4;
  documents: number;
  tokens: number;
  files: { tokens: DatasetFileInfo; index: DatasetFileInfo };
  /** sha256 over the tokenizer and both files' hashes: the dataset's identity. */
  contentHash: string;
  /** What it was built from. */
  source: {
    kind: "directory" | "jsonl" | "text" | "parquet" | "megatron" | "builtin";
    input: string;
    split: string;
    inputBytes: number;
    /** JSONL / Parquet: the field or column read. */
    field?: string;
    /** `--limit` and `--shuffle-seed`, when given. */
    limit?: number;
    shuffleSeed?: number;
    /** Megatron: how tokens.bin holds the `.bin` (`hardlink`/`symlink`: in place, `converted`: rewritten). */
    tokens?: "hardlink" | "symlink" | "converted";
  };
  /** Inputs left out: empty documents, documents shorter than the minimum length, binary files. */
  skipped: { empty: number; short: number; binaryFiles: number };
  lengths: LengthStats;
  createdAt: string;
}

/** A dataset opened for training: its manifest and its index. */
export interface DatasetIndex {
  dir: string;
  manifest: DatasetManifest;
  /** Token offset of each document. */
  offsets: Float64Array;
  /** Token count of each document. */
  lengths: Uint32Array;
  /** Absolute path of the token file. */
  tokensPath: string;
}

/** Length statistics of a list of lengths (sorted in place). */
export function lengthStats(lengths: Uint32Array | number[]): LengthStats {
  const a = Float64Array.from(lengths).sort();
  if (a.length === 0) return { min: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const q = (p: number) => a[Math.min(a.length - 1, Math.floor(p * a.length))];
  const sum = a.reduce((s, x) => s + x, 0);
  return { min: a[0], p50: q(0.5), p90: q(0.9), p99: q(0.99), max: a[a.length - 1], mean: sum / a.length };
}

/** Whether `dir` holds a finished dataset (a manifest exists). */
export async function datasetExists(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(`${dir}/${DATASET_FILES.manifest}`)).isFile;
  } catch {
    return false;
  }
}

/** Reads and checks a dataset's manifest; errors name the file and the fix. */
export async function readManifest(dir: string): Promise<DatasetManifest> {
  const path = `${dir}/${DATASET_FILES.manifest}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(
        `${dir}: not a dataset (no ${DATASET_FILES.manifest}); build one with ` +
          `\`deno task data prepare --input PATH --out ${dir}\``,
      );
    }
    throw new UserError(`${path}: cannot read (${(e as Error).message})`);
  }
  let m: DatasetManifest;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message}); prepare the dataset again`);
  }
  if (m.format !== DATASET_FORMAT) throw new UserError(`${path}: not a flexsp dataset manifest (format ${m.format})`);
  if (m.version !== DATASET_VERSION) {
    throw new UserError(
      `${path}: dataset format version ${m.version}, this build reads ${DATASET_VERSION}; prepare again`,
    );
  }
  if (m.tokenBytes !== 2 && m.tokenBytes !== 4) throw new UserError(`${path}: tokenBytes must be 2 or 4`);
  return m;
}

/** Opens a dataset: reads the manifest and the whole index, checking sizes and the index checksum. */
export async function readDatasetIndex(dir: string): Promise<DatasetIndex> {
  const abs = await Deno.realPath(dir).catch(() => dir);
  const m = await readManifest(abs);
  const indexPath = `${abs}/${DATASET_FILES.index}`;
  const tokensPath = `${abs}/${DATASET_FILES.tokens}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(indexPath);
  } catch (e) {
    throw new UserError(`${indexPath}: cannot read the dataset index (${(e as Error).message}); prepare again`);
  }
  if (bytes.length !== m.documents * INDEX_RECORD_BYTES || bytes.length !== m.files.index.bytes) {
    throw new UserError(
      `${indexPath}: ${bytes.length} bytes, the manifest says ${m.documents} documents ` +
        `(${m.documents * INDEX_RECORD_BYTES} bytes); the dataset is damaged, prepare it again`,
    );
  }
  const sha = sha256Hex(bytes);
  if (sha !== m.files.index.sha256) {
    throw new UserError(`${indexPath}: sha256 differs from the manifest; the dataset is damaged, prepare it again`);
  }
  let size: number;
  try {
    size = (await Deno.stat(tokensPath)).size;
  } catch (e) {
    throw new UserError(`${tokensPath}: missing (${(e as Error).message}); prepare the dataset again`);
  }
  if (size !== m.files.tokens.bytes || size !== m.tokens * m.tokenBytes) {
    throw new UserError(
      `${tokensPath}: ${size} bytes, the manifest says ${m.files.tokens.bytes}; the dataset is damaged, prepare again`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offsets = new Float64Array(m.documents);
  const lengths = new Uint32Array(m.documents);
  for (let i = 0; i < m.documents; i++) {
    const o = i * INDEX_RECORD_BYTES;
    offsets[i] = Number(dv.getBigUint64(o, true));
    lengths[i] = dv.getUint32(o + 8, true);
    if (offsets[i] + lengths[i] > m.tokens) {
      throw new UserError(`${indexPath}: document ${i} ends past the token file; the dataset is damaged`);
    }
  }
  return { dir: abs, manifest: m, offsets, lengths, tokensPath };
}

/** The tokenizer part of a content hash: `bytes`, or `huggingface:<identity hash>`. */
export function tokenizerTag(info: TokenizerInfo): string {
  return info.kind === "bytes" ? "bytes" : `huggingface:${info.hash}`;
}

/** The dataset identity from its parts (see `DatasetManifest.contentHash`). */
export function contentHashOf(tokenizer: string, tokensSha: string, indexSha: string): string {
  return sha256Hex(`${DATASET_FORMAT}/${tokenizer}/${tokensSha}/${indexSha}`);
}
