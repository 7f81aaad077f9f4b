// `prepare`: turns a directory of text files, a JSONL file, Parquet files or a text file into an indexed token
// dataset (see dataset_format.ts), or imports a Megatron `.bin/.idx` pair (megatron_format.ts). Streaming: inputs
// are read chunk by chunk (Parquet: row group by row group) and tokens written as they come, so memory is bounded by
// a flush chunk and the largest document, whatever the input size. Tokenizer: bytes (one token per UTF-8 byte,
// vocabulary 256; the default) or a Hugging Face tokenizer.json (tokenizer.ts).

import { UserError } from "../errors.ts";
import type { DatasetManifest } from "./dataset_format.ts";
import { DatasetOutput, DatasetWriter, LimitReached } from "./dataset_writer.ts";
import { importMegatron } from "./megatron_format.ts";
import { parquetFiles, readParquetColumn } from "./parquet_reader.ts";
import { type EncodedBatch, EncodePool } from "./encode_pool.ts";
import { byteLines, type DocumentSink, LineSplitter, type SplitMode } from "./text_splitter.ts";
import { bytesTokenizer, type DocumentTokenizer, loadTokenizer, tokenBytesFor } from "./tokenizer.ts";

/** Input kinds `prepare` understands. */
export type InputFormat = "directory" | "jsonl" | "text" | "parquet" | "megatron";

/** The input kinds, for help texts and checks. */
export const INPUT_FORMATS: readonly InputFormat[] = ["directory", "jsonl", "text", "parquet", "megatron"];

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
  /** A directory, a `.jsonl` file, a `.parquet` file (or a directory of them), a text file, or a Megatron prefix. */
  input: string;
  /** Output directory (created; must not hold another dataset unless `overwrite`). */
  out: string;
  /**
   * Input kind (default: parquet for `.parquet` files or a directory holding only them, directory for another
   * directory, jsonl for `.jsonl`/`.ndjson`, else text). `megatron` must be asked for.
   */
  format?: InputFormat;
  /** How text is cut into documents (default: `file` for a directory, `paragraph` for a text file). */
  split?: SplitMode;
  /** Documents shorter than this many tokens are skipped (default 2: one token has no next-token target). */
  minLength?: number;
  /** Replace an existing dataset in `out`. */
  overwrite?: boolean;
  /** A Hugging Face tokenizer.json (or a directory holding one), or a loaded tokenizer; default bytes. */
  tokenizer?: string | DocumentTokenizer;
  /** JSONL field / Parquet column holding the text (default `text`). */
  field?: string;
  /** Keep only the first N documents (after skipping short ones). */
  limit?: number;
  /** Write the index in a seeded random order of the documents. */
  shuffleSeed?: number;
  /**
   * Worker threads that run a Hugging Face tokenizer given by path (default: the cores, at most 8; 1 or 0 encode in
   * this thread). The dataset is the same for any count.
   */
  workers?: number;
  /** Recorded as the manifest's source (default: derived from the input). */
  source?: DatasetManifest["source"];
  /** Called about every `progressMs` (default 500) and once at the end. */
  onProgress?: (p: PrepareProgress) => void;
  progressMs?: number;
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
    if (e instanceof Deno.errors.NotFound && await Deno.stat(`${input}.idx`).then(() => true, () => false)) {
      throw new UserError(`--input ${input}: a Megatron dataset prefix? pass --format megatron`);
    }
    throw new UserError(`--input ${input}: ${e instanceof Deno.errors.NotFound ? "no such file or directory" : e}`);
  }
  if (st.isDirectory) {
    const files = await listFiles(input);
    return files.length > 0 && files.every((f) => /\.parquet$/i.test(f)) ? "parquet" : "directory";
  }
  if (/\.parquet$/i.test(input)) return "parquet";
  return /\.(jsonl|ndjson)$/i.test(input) ? "jsonl" : "text";
}

/** The result of a prepare run. */
export interface PrepareResult {
  manifest: DatasetManifest;
  ms: number;
}

/** Documents per batch sent to a tokenizer worker, and characters. */
const BATCH_DOCS = 256, BATCH_CHARS = 1 << 18;

/**
 * Turns documents into tokens: bytes go straight to the writer; a Hugging Face tokenizer encodes whole texts, in
 * this thread or, with a pool, on worker threads (results written in document order).
 */
class Encoder implements DocumentSink {
  #buf = new Uint8Array(1 << 16);
  #len = 0;
  readonly #bytes: boolean;
  readonly #enc = new TextEncoder();
  readonly #dec = new TextDecoder();
  #batch: string[] = [];
  #batchChars = 0;
  readonly #pending: Promise<EncodedBatch>[] = [];

  constructor(readonly tokenizer: DocumentTokenizer, readonly w: DatasetWriter, readonly pool?: EncodePool) {
    this.#bytes = tokenizer.info.kind === "bytes";
  }

  /** Document bytes (text readers). */
  write(bytes: Uint8Array): void {
    if (this.#bytes) return this.w.write(bytes);
    if (this.#len + bytes.length > this.#buf.length) {
      const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + bytes.length));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
  }

  endDocument(): void {
    if (this.#bytes) return this.w.endDocument();
    const text = this.#dec.decode(this.#buf.subarray(0, this.#len));
    this.#len = 0;
    this.text(text);
  }

  /** A whole document as a string (JSONL, Parquet). */
  text(t: string): void {
    if (this.pool) {
      this.#batch.push(t);
      this.#batchChars += t.length;
      if (this.#batch.length >= BATCH_DOCS || this.#batchChars >= BATCH_CHARS) this.#dispatch();
      return;
    }
    if (t.length) this.w.write(this.#bytes ? this.#enc.encode(t) : this.tokenizer.encode(t));
    this.w.endDocument();
  }

  #dispatch(): void {
    if (!this.#batch.length) return;
    this.#pending.push(this.pool!.encode(this.#batch));
    this.#batch = [];
    this.#batchChars = 0;
  }

  async #take(): Promise<void> {
    const r = await this.#pending.shift()!;
    let o = 0;
    for (const len of r.lengths) {
      this.w.write(r.ids.subarray(o, o + len));
      o += len;
      this.w.endDocument();
    }
  }

  /** Writes finished batches (waiting while too many are in flight) and flushes the writer. */
  async flush(): Promise<void> {
    while (this.#pending.length > 2 * (this.pool?.size ?? 0)) await this.#take();
    await this.w.flush();
  }

  /** Encodes and writes everything still buffered. */
  async finish(): Promise<void> {
    this.#dispatch();
    while (this.#pending.length) {
      await this.#take();
      await this.w.flush();
    }
  }

  /** Lets batches still in flight settle (after a failure or the document limit). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#pending.splice(0));
  }
}

/** Builds a dataset (see the file header). Throws UserError on bad input, naming the file and line. */
export async function prepareDataset(opts: PrepareOptions): Promise<PrepareResult> {
  const t0 = performance.now();
  const format = opts.format ?? await detectFormat(opts.input);
  const tokenizer = typeof opts.tokenizer === "string"
    ? await loadTokenizer(opts.tokenizer)
    : opts.tokenizer ?? bytesTokenizer();
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit >= 1)) {
    throw new UserError(`--limit ${opts.limit}: expected a positive integer`);
  }
  if (opts.shuffleSeed !== undefined && !(Number.isInteger(opts.shuffleSeed) && opts.shuffleSeed >= 0)) {
    throw new UserError(`--shuffle-seed ${opts.shuffleSeed}: expected a non-negative integer`);
  }
  if (format === "megatron") {
    if (!opts.tokenizer) {
      throw new UserError(
        `--format megatron needs --tokenizer PATH (the tokenizer.json the .bin was made with), so that the dataset ` +
          `records which vocabulary its token ids belong to`,
      );
    }
    if (opts.limit !== undefined || opts.shuffleSeed !== undefined || opts.field !== undefined) {
      throw new UserError(
        `--limit, --shuffle-seed and --field do not apply to --format megatron (it imports the dataset as it is)`,
      );
    }
    const manifest = await importMegatron({
      prefix: opts.input,
      out: opts.out,
      tokenizer: tokenizer.info,
      overwrite: Boolean(opts.overwrite),
      onProgress: opts.onProgress,
    });
    return { manifest, ms: performance.now() - t0 };
  }
  const split: SplitMode = opts.split ?? (format === "text" ? "paragraph" : "file");
  const minLength = opts.minLength ?? 2;
  if (!Number.isInteger(minLength) || minLength < 1 || minLength > 4096) {
    throw new UserError(`--min-length ${minLength}: expected an integer in 1..4096`);
  }
  const field = opts.field ?? "text";
  const files = format === "directory"
    ? await listFiles(opts.input)
    : format === "parquet"
    ? await parquetFiles(opts.input, listFiles)
    : [opts.input];
  if (format === "directory" && files.length === 0) throw new UserError(`--input ${opts.input}: no files in it`);
  let totalBytes = 0;
  for (const f of files) totalBytes += (await Deno.stat(f)).size;

  const out = await DatasetOutput.open(opts.out, Boolean(opts.overwrite));
  const tokenBytes = tokenBytesFor(tokenizer.info.vocab);
  const w = await DatasetWriter.open(out, { tokenBytes, minLength, limit: opts.limit, shuffleSeed: opts.shuffleSeed });
  const workers = opts.workers ?? Math.min(8, navigator.hardwareConcurrency ?? 1);
  let pool: EncodePool | undefined;
  if (tokenizer.info.kind === "huggingface" && typeof opts.tokenizer === "string" && workers > 1) {
    pool = await EncodePool.start(opts.tokenizer, workers).catch(async (e) => {
      w.close();
      await out.abort();
      throw e;
    });
  }
  const enc = new Encoder(tokenizer, w, pool);
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
    try {
      for (const file of files) {
        current = file;
        if (format === "jsonl") await readJsonl(file, field, enc, onChunk);
        else if (format === "parquet") {
          await readParquetColumn(file, field, (t) => enc.text(t), async (n) => {
            onChunk(n);
            await enc.flush();
          });
        } else if (split === "file") {
          if (await readWholeFile(file, enc, onChunk, format === "directory")) binaryFiles++;
        } else {
          if (await readLines(file, split, enc, onChunk, format === "directory")) binaryFiles++;
        }
        await enc.flush();
      }
      await enc.finish();
    } catch (e) {
      if (!(e instanceof LimitReached)) throw e;
    }
    await enc.abandon();
    pool?.close();
    await w.finish();
    if (w.documents === 0) {
      throw new UserError(`--input ${opts.input}: no document of at least ${minLength} tokens in it`);
    }
  } catch (e) {
    await enc.abandon();
    pool?.close();
    w.close();
    await out.abort();
    throw e;
  }
  const manifest = await out.commit({
    ...w.summary(),
    source: opts.source ?? {
      kind: format,
      input: await Deno.realPath(opts.input).catch(() => opts.input),
      split: format === "jsonl" || format === "parquet" ? "record" : split,
      inputBytes: totalBytes,
      ...(format === "jsonl" || format === "parquet" ? { field } : {}),
      ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
      ...(opts.shuffleSeed !== undefined ? { shuffleSeed: opts.shuffleSeed } : {}),
    },
    skipped: { empty: w.skippedEmpty, short: w.skippedShort, binaryFiles },
  }, tokenizer.info);
  report(true);
  return { manifest, ms: performance.now() - t0 };
}

/** Reads one file as one document; returns true when it was skipped as binary (a NUL byte in its first 8 KiB). */
async function readWholeFile(
  path: string,
  w: Encoder,
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
  w: Encoder,
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

async function readJsonl(path: string, field: string, w: Encoder, onChunk: (n: number) => void): Promise<void> {
  const f = await openInput(path);
  const dec = new TextDecoder();
  let lineNo = 0;
  for await (const line of byteLines(f.readable, onChunk)) {
    lineNo++;
    const text = dec.decode(line).trim();
    if (!text) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${path}:${lineNo}: not valid JSON (${(e as Error).message}); expected {"${field}": "..."}`);
    }
    const t = rec !== null && typeof rec === "object" ? (rec as Record<string, unknown>)[field] : undefined;
    if (typeof t !== "string") {
      const keys = rec !== null && typeof rec === "object" && !Array.isArray(rec) ? Object.keys(rec) : [];
      throw new UserError(
        `${path}:${lineNo}: no "${field}" string field` +
          (keys.length
            ? ` (the record has ${keys.slice(0, 8).map((k) => `"${k}"`).join(", ")}; pick one with --field)`
            : `; each line must be an object like {"${field}": "..."}`),
      );
    }
    w.text(t);
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
