// `prepare`: turns a directory of text files, a JSONL file (`text` field) or a text file into an indexed token
// dataset (see dataset_format.ts), streaming: inputs are read chunk by chunk and tokens written as they come, so
// memory stays flat whatever the input size. Byte-level tokenizer: one token per UTF-8 byte (vocabulary 256).

import type { Hash } from "node:crypto";
import { sha256Hasher } from "../../core/hash.ts";
import { UserError } from "../errors.ts";
import {
  contentHashOf,
  DATASET_FILES,
  DATASET_FORMAT,
  DATASET_VERSION,
  type DatasetManifest,
  INDEX_RECORD_BYTES,
  lengthStats,
} from "./dataset_format.ts";
import { byteLines, type DocumentSink, LineSplitter, type SplitMode } from "./text_splitter.ts";
import { fsyncDir, writeAtomic } from "../../core/atomic_write.ts";

/** Input kinds `prepare` understands. */
export type InputFormat = "directory" | "jsonl" | "text";

/** Progress of a prepare run. */
export interface PrepareProgress {
  bytesRead: number;
  totalBytes: number;
  documents: number;
  tokens: number;
  /** The file being read. */
  file: string;
}

/** Options of `prepareDataset`. */
export interface PrepareOptions {
  /** A directory, a `.jsonl` file, or a text file. */
  input: string;
  /** Output directory (created; must not hold another dataset unless `overwrite`). */
  out: string;
  /** Input kind (default: directory for a directory, jsonl for `.jsonl`/`.ndjson`, else text). */
  format?: InputFormat;
  /** How text is cut into documents (default: `file` for a directory, `paragraph` for a text file). */
  split?: SplitMode;
  /** Documents shorter than this many tokens are skipped (default 2: one token has no next-token target). */
  minLength?: number;
  /** Replace an existing dataset in `out`. */
  overwrite?: boolean;
  /** Recorded as the manifest's source (default: derived from the input). */
  source?: DatasetManifest["source"];
  /** Called about every `progressMs` (default 500) and once at the end. */
  onProgress?: (p: PrepareProgress) => void;
  progressMs?: number;
}

const FLUSH_TOKENS = 1 << 20;

/** Streams documents into tokens.bin / index.bin with running sha256s; `finish` writes the manifest last. */
class DatasetWriter implements DocumentSink {
  #tokens: Uint16Array = new Uint16Array(FLUSH_TOKENS + 65536);
  #count = 0;
  /** Position in #tokens where the current document starts. */
  #docStart = 0;
  /** Tokens of the current document already flushed. */
  #docFlushed = 0;
  /** Tokens written to the file. */
  #written = 0;
  #index = new Uint8Array(INDEX_RECORD_BYTES * 4096);
  #indexCount = 0;
  #lengths = new Uint32Array(4096);
  documents = 0;
  skippedEmpty = 0;
  skippedShort = 0;
  readonly #tokHash: Hash = sha256Hasher();
  readonly #idxHash: Hash = sha256Hasher();

  constructor(
    readonly tokensFile: Deno.FsFile,
    readonly indexFile: Deno.FsFile,
    readonly minLength: number,
  ) {}

  get tokens(): number {
    return this.#written + this.#count;
  }

  write(bytes: Uint8Array): void {
    if (this.#count + bytes.length > this.#tokens.length) {
      const grown = new Uint16Array(Math.max(this.#tokens.length * 2, this.#count + bytes.length));
      grown.set(this.#tokens.subarray(0, this.#count));
      this.#tokens = grown;
    }
    this.#tokens.set(bytes, this.#count);
    this.#count += bytes.length;
  }

  endDocument(): void {
    const len = this.#docFlushed + this.#count - this.#docStart;
    if (len < this.minLength) {
      // Only short documents are dropped, and a short document is never flushed (see flush), so it can be undone.
      if (len === 0) this.skippedEmpty++;
      else this.skippedShort++;
      this.#count = this.#docStart;
      return;
    }
    const offset = this.#written + this.#docStart - this.#docFlushed;
    if ((this.#indexCount + 1) * INDEX_RECORD_BYTES > this.#index.length) {
      const grown = new Uint8Array(this.#index.length * 2);
      grown.set(this.#index);
      this.#index = grown;
    }
    const dv = new DataView(this.#index.buffer);
    const o = this.#indexCount * INDEX_RECORD_BYTES;
    dv.setBigUint64(o, BigInt(offset), true);
    dv.setUint32(o + 8, len, true);
    dv.setUint32(o + 12, 0, true);
    this.#indexCount++;
    if (this.documents >= this.#lengths.length) {
      const grown = new Uint32Array(this.#lengths.length * 2);
      grown.set(this.#lengths);
      this.#lengths = grown;
    }
    this.#lengths[this.documents++] = len;
    this.#docStart = this.#count;
    this.#docFlushed = 0;
  }

  /** Writes buffered tokens and index records once enough have accumulated (or all of them with `force`). */
  async flush(force = false): Promise<void> {
    if (force || this.#count >= FLUSH_TOKENS) {
      // Keep a document that is still shorter than the minimum in memory, so that it can be dropped.
      const curLen = this.#docFlushed + this.#count - this.#docStart;
      const upTo = curLen < this.minLength ? this.#docStart : this.#count;
      if (upTo > 0) {
        const bytes = new Uint8Array(upTo * 2);
        const dv = new DataView(bytes.buffer);
        for (let i = 0; i < upTo; i++) dv.setUint16(2 * i, this.#tokens[i], true);
        this.#tokHash.update(bytes);
        await writeAll(this.tokensFile, bytes);
        this.#written += upTo;
        if (upTo === this.#count) {
          this.#docFlushed += this.#count - this.#docStart;
          this.#docStart = 0;
        } else {
          this.#docStart -= upTo;
        }
        this.#tokens.copyWithin(0, upTo, this.#count);
        this.#count -= upTo;
      }
    }
    if (force || this.#indexCount >= 65536) {
      const bytes = this.#index.subarray(0, this.#indexCount * INDEX_RECORD_BYTES);
      this.#idxHash.update(bytes);
      await writeAll(this.indexFile, bytes);
      this.#indexCount = 0;
    }
  }

  lengthsSoFar(): Uint32Array {
    return this.#lengths.subarray(0, this.documents);
  }

  digests(): { tokens: string; index: string } {
    return { tokens: this.#tokHash.digest("hex"), index: this.#idxHash.digest("hex") };
  }
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let o = 0;
  while (o < bytes.length) o += await f.write(bytes.subarray(o));
}

/** Regular files under `dir`, recursively, sorted by path; hidden entries (`.git`, ...) skipped. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(d)) entries.push(e);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile) out.push(p);
    }
  };
  await walk(dir.replace(/\/+$/, ""));
  return out;
}

/** Which input kind a path is (see `PrepareOptions.format`). */
export async function detectFormat(input: string): Promise<InputFormat> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(input);
  } catch (e) {
    throw new UserError(`--input ${input}: ${e instanceof Deno.errors.NotFound ? "no such file or directory" : e}`);
  }
  if (st.isDirectory) return "directory";
  return /\.(jsonl|ndjson)$/i.test(input) ? "jsonl" : "text";
}

/** The result of a prepare run. */
export interface PrepareResult {
  manifest: DatasetManifest;
  ms: number;
}

/** Builds a dataset (see the file header). Throws UserError on bad input, naming the file and line. */
export async function prepareDataset(opts: PrepareOptions): Promise<PrepareResult> {
  const t0 = performance.now();
  const format = opts.format ?? await detectFormat(opts.input);
  const split: SplitMode = opts.split ?? (format === "text" ? "paragraph" : "file");
  const minLength = opts.minLength ?? 2;
  if (!Number.isInteger(minLength) || minLength < 1 || minLength > 4096) {
    throw new UserError(`--min-length ${minLength}: expected an integer in 1..4096`);
  }
  const files = format === "directory" ? await listFiles(opts.input) : [opts.input];
  if (format === "directory" && files.length === 0) throw new UserError(`--input ${opts.input}: no files in it`);
  let totalBytes = 0;
  for (const f of files) totalBytes += (await Deno.stat(f)).size;

  await Deno.mkdir(opts.out, { recursive: true });
  const manifestPath = `${opts.out}/${DATASET_FILES.manifest}`;
  if (!opts.overwrite && await Deno.stat(manifestPath).then(() => true, () => false)) {
    throw new UserError(`--out ${opts.out}: already holds a dataset; pass --overwrite to replace it`);
  }
  // A dataset being replaced stops being one at once (no manifest), so a crash mid-way leaves no stale dataset.
  await Deno.remove(manifestPath).catch(() => {});
  const tag = `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const tmpTokens = `${opts.out}/${DATASET_FILES.tokens}.tmp-${tag}`;
  const tmpIndex = `${opts.out}/${DATASET_FILES.index}.tmp-${tag}`;
  const tokensFile = await Deno.open(tmpTokens, { write: true, create: true, truncate: true });
  const indexFile = await Deno.open(tmpIndex, { write: true, create: true, truncate: true });
  const w = new DatasetWriter(tokensFile, indexFile, minLength);
  let bytesRead = 0;
  let binaryFiles = 0;
  let current = files[0];
  let lastReport = performance.now();
  const progressMs = opts.progressMs ?? 500;
  const report = (force = false) => {
    const now = performance.now();
    if (!opts.onProgress || (!force && now - lastReport < progressMs)) return;
    lastReport = now;
    opts.onProgress({ bytesRead, totalBytes, documents: w.documents, tokens: w.tokens, file: current });
  };
  const onChunk = (n: number) => {
    bytesRead += n;
    report();
  };
  try {
    for (const file of files) {
      current = file;
      if (format === "jsonl") await readJsonl(file, w, onChunk);
      else if (split === "file") {
        if (await readWholeFile(file, w, onChunk, format === "directory")) binaryFiles++;
      } else {
        if (await readLines(file, split, w, onChunk, format === "directory")) binaryFiles++;
      }
      await w.flush();
    }
    await w.flush(true);
    await tokensFile.sync();
    await indexFile.sync();
  } catch (e) {
    tokensFile.close();
    indexFile.close();
    await Deno.remove(tmpTokens).catch(() => {});
    await Deno.remove(tmpIndex).catch(() => {});
    throw e;
  }
  tokensFile.close();
  indexFile.close();
  if (w.documents === 0) {
    await Deno.remove(tmpTokens).catch(() => {});
    await Deno.remove(tmpIndex).catch(() => {});
    throw new UserError(`--input ${opts.input}: no document of at least ${minLength} tokens in it`);
  }
  const tokensPath = `${opts.out}/${DATASET_FILES.tokens}`;
  const indexPath = `${opts.out}/${DATASET_FILES.index}`;
  await Deno.rename(tmpTokens, tokensPath);
  await Deno.rename(tmpIndex, indexPath);
  const sha = w.digests();
  const manifest: DatasetManifest = {
    format: DATASET_FORMAT,
    version: DATASET_VERSION,
    tokenizer: "bytes",
    vocab: 256,
    tokenBytes: 2,
    documents: w.documents,
    tokens: w.tokens,
    files: {
      tokens: { name: DATASET_FILES.tokens, bytes: w.tokens * 2, sha256: sha.tokens },
      index: { name: DATASET_FILES.index, bytes: w.documents * INDEX_RECORD_BYTES, sha256: sha.index },
    },
    contentHash: await contentHashOf("bytes", sha.tokens, sha.index),
    source: opts.source ?? {
      kind: format,
      input: await Deno.realPath(opts.input).catch(() => opts.input),
      split: format === "jsonl" ? "record" : split,
      inputBytes: totalBytes,
    },
    skipped: { empty: w.skippedEmpty, short: w.skippedShort, binaryFiles },
    lengths: lengthStats(w.lengthsSoFar().slice()),
    createdAt: new Date().toISOString(),
  };
  await writeAtomic(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
  await fsyncDir(opts.out);
  report(true);
  return { manifest, ms: performance.now() - t0 };
}

/** Reads one file as one document; returns true when it was skipped as binary (a NUL byte in its first 8 KiB). */
async function readWholeFile(
  path: string,
  w: DatasetWriter,
  onChunk: (n: number) => void,
  skipBinary: boolean,
): Promise<boolean> {
  const f = await openInput(path);
  let first = true;
  for await (const chunk of f.readable) {
    onChunk(chunk.length);
    if (first && skipBinary && chunk.subarray(0, 8192).includes(0)) {
      return true; // leaving the loop cancels the stream, which closes the file
    }
    first = false;
    w.write(chunk);
    await w.flush();
  }
  w.endDocument();
  return false;
}

async function readLines(
  path: string,
  split: Exclude<SplitMode, "file">,
  w: DatasetWriter,
  onChunk: (n: number) => void,
  skipBinary: boolean,
): Promise<boolean> {
  const f = await openInput(path);
  const splitter = new LineSplitter(split, w);
  let n = 0;
  for await (const line of byteLines(f.readable, onChunk)) {
    if (n === 0 && skipBinary && line.subarray(0, 8192).includes(0)) {
      splitter.end();
      return true;
    }
    splitter.line(line);
    if (++n % 4096 === 0) await w.flush();
  }
  splitter.end();
  return false;
}

async function readJsonl(path: string, w: DatasetWriter, onChunk: (n: number) => void): Promise<void> {
  const f = await openInput(path);
  const dec = new TextDecoder();
  const enc = new TextEncoder();
  let lineNo = 0;
  for await (const line of byteLines(f.readable, onChunk)) {
    lineNo++;
    const text = dec.decode(line).trim();
    if (!text) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${path}:${lineNo}: not valid JSON (${(e as Error).message}); expected {"text": "..."}`);
    }
    const t = (rec as { text?: unknown } | null)?.text;
    if (typeof t !== "string") {
      throw new UserError(
        `${path}:${lineNo}: no "text" string field; each line must be an object like {"text": "..."}`,
      );
    }
    w.write(enc.encode(t));
    w.endDocument();
    if (lineNo % 1024 === 0) await w.flush();
  }
}

async function openInput(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { read: true });
  } catch (e) {
    throw new UserError(`${path}: cannot read (${(e as Error).message})`);
  }
}
