// Writing a dataset directory (see dataset_format.ts) without ever leaving it half-written: the token file and the
// index go to temporary names beside their targets, are fsynced and renamed, and the manifest is written last
// (atomically). An existing dataset being replaced (--overwrite) stays whole and usable until the new one is: a
// failed prepare (a bad input line) leaves it as it was; only at the commit does it lose its manifest, so a crash
// during the swap leaves no stale dataset that looks finished. A failed prepare removes the directories it created. `DatasetWriter` streams documents' tokens with running sha256s; memory holds one
// flush chunk of tokens plus the index (16 bytes per document).

import type { Hash } from "node:crypto";
import { sha256Hasher } from "../../core/hash.ts";
import { UserError } from "../errors.ts";
import { fsyncDir, writeAtomic } from "../../core/atomic_write.ts";
import {
  contentHashOf,
  DATASET_FILES,
  DATASET_FORMAT,
  DATASET_VERSION,
  type DatasetManifest,
  INDEX_RECORD_BYTES,
  lengthStats,
  tokenizerTag,
} from "./dataset_format.ts";
import { Rng } from "./rng.ts";
import type { DocumentSink } from "./text_splitter.ts";
import type { TokenizerInfo } from "./tokenizer.ts";

/** Thrown by `DatasetWriter.endDocument` once `limit` documents are in: readers stop there. */
export class LimitReached extends Error {
  override name = "LimitReached";
  constructor() {
    super("document limit reached");
  }
}

/** The outermost of `dir` and its parents that does not exist yet (what `mkdir -p dir` creates), if any. */
async function outermostMissing(dir: string): Promise<string | undefined> {
  let missing: string | undefined;
  for (let d = dir.replace(/\/+$/, ""); d && d !== "." && d !== "/";) {
    if (await Deno.stat(d).then(() => true, () => false)) break;
    missing = d;
    const cut = d.lastIndexOf("/");
    d = cut > 0 ? d.slice(0, cut) : cut === 0 ? "/" : "";
  }
  return missing;
}

/** The output directory of a dataset being built: temporary token and index files until `commit`. */
export class DatasetOutput {
  private constructor(
    readonly dir: string,
    readonly tmpTokens: string,
    readonly tmpIndex: string,
    /** The outermost directory `open` created (removed by `abort`), if any. */
    readonly created: string | undefined,
  ) {}

  /** Prepares `dir` (created; refused if it holds a dataset, unless `overwrite`). */
  static async open(dir: string, overwrite: boolean): Promise<DatasetOutput> {
    const manifestPath = `${dir}/${DATASET_FILES.manifest}`;
    if (!overwrite && await Deno.stat(manifestPath).then(() => true, () => false)) {
      throw new UserError(`--out ${dir}: already holds a dataset; pass --overwrite to replace it`);
    }
    const created = await outermostMissing(dir);
    await Deno.mkdir(dir, { recursive: true });
    const tag = `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    return new DatasetOutput(
      dir,
      `${dir}/${DATASET_FILES.tokens}.tmp-${tag}`,
      `${dir}/${DATASET_FILES.index}.tmp-${tag}`,
      created,
    );
  }

  /** Removes the temporary files and the directories `open` created (after a failure). */
  async abort(): Promise<void> {
    await Deno.remove(this.tmpTokens).catch(() => {});
    await Deno.remove(this.tmpIndex).catch(() => {});
    if (this.created) await Deno.remove(this.created, { recursive: true }).catch(() => {});
  }

  /**
   * Renames the temporary files into place and writes the manifest last. `tokensInPlace` names a file to link as
   * tokens.bin instead of the temporary token file (Megatron import).
   */
  async commit(
    m: Omit<DatasetManifest, "format" | "version" | "contentHash" | "createdAt" | "tokenizer" | "vocab">,
    tokenizer: TokenizerInfo,
  ): Promise<DatasetManifest> {
    // The old dataset (if any) stops looking finished before its files are replaced.
    await Deno.remove(`${this.dir}/${DATASET_FILES.manifest}`).catch(() => {});
    await Deno.rename(this.tmpTokens, `${this.dir}/${DATASET_FILES.tokens}`);
    await Deno.rename(this.tmpIndex, `${this.dir}/${DATASET_FILES.index}`);
    const manifest: DatasetManifest = {
      format: DATASET_FORMAT,
      version: DATASET_VERSION,
      tokenizer: tokenizer.kind,
      ...(tokenizer.kind === "bytes" ? {} : { tokenizerInfo: tokenizer }),
      vocab: tokenizer.vocab,
      ...m,
      contentHash: contentHashOf(tokenizerTag(tokenizer), m.files.tokens.sha256, m.files.index.sha256),
      createdAt: new Date().toISOString(),
    };
    await writeAtomic(`${this.dir}/${DATASET_FILES.manifest}`, JSON.stringify(manifest, null, 2) + "\n");
    await fsyncDir(this.dir);
    return manifest;
  }
}

const FLUSH_TOKENS = 1 << 20;

/** Options of a `DatasetWriter`. */
export interface WriterOptions {
  tokenBytes: 2 | 4;
  /** Documents shorter than this are skipped. */
  minLength: number;
  /** Stop after this many documents (`LimitReached`). */
  limit?: number;
  /** Write the index in a seeded random order of the documents. */
  shuffleSeed?: number;
}

/** Streams documents into the temporary tokens / index files with running sha256s. */
export class DatasetWriter implements DocumentSink {
  #tokens: Uint32Array = new Uint32Array(FLUSH_TOKENS + 65536);
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
  /** The largest token id written. */
  maxToken = 0;
  readonly #tokHash: Hash = sha256Hasher();
  readonly #idxHash: Hash = sha256Hasher();

  private constructor(
    readonly tokensFile: Deno.FsFile,
    readonly indexFile: Deno.FsFile,
    readonly opts: WriterOptions,
  ) {}

  /** Opens the temporary files of `out`. */
  static async open(out: DatasetOutput, opts: WriterOptions): Promise<DatasetWriter> {
    const t = await Deno.open(out.tmpTokens, { write: true, create: true, truncate: true });
    const i = await Deno.open(out.tmpIndex, { write: true, create: true, truncate: true });
    return new DatasetWriter(t, i, opts);
  }

  get tokens(): number {
    return this.#written + this.#count;
  }

  /** Appends tokens (bytes for the byte tokenizer, ids otherwise) to the current document. */
  write(tokens: ArrayLike<number>): void {
    if (this.#count + tokens.length > this.#tokens.length) {
      const grown = new Uint32Array(Math.max(this.#tokens.length * 2, this.#count + tokens.length));
      grown.set(this.#tokens.subarray(0, this.#count));
      this.#tokens = grown;
    }
    this.#tokens.set(tokens, this.#count);
    this.#count += tokens.length;
  }

  /** Closes the current document (dropped if shorter than the minimum). */
  endDocument(): void {
    const len = this.#docFlushed + this.#count - this.#docStart;
    if (len < this.opts.minLength) {
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
    if (this.opts.limit !== undefined && this.documents >= this.opts.limit) throw new LimitReached();
  }

  /** Whether the document limit is reached. */
  get full(): boolean {
    return this.opts.limit !== undefined && this.documents >= this.opts.limit;
  }

  /** Writes buffered tokens and index records once enough have accumulated (or all of them with `force`). */
  async flush(force = false): Promise<void> {
    if (force || this.#count >= FLUSH_TOKENS) {
      // Keep a document that is still shorter than the minimum in memory, so that it can be dropped.
      const curLen = this.#docFlushed + this.#count - this.#docStart;
      const upTo = curLen < this.opts.minLength ? this.#docStart : this.#count;
      if (upTo > 0) {
        const tb = this.opts.tokenBytes;
        const src = this.#tokens.subarray(0, upTo);
        let max = this.maxToken;
        for (let i = 0; i < upTo; i++) if (src[i] > max) max = src[i];
        this.maxToken = max;
        let bytes: Uint8Array;
        if (tb === 4) bytes = new Uint8Array(src.slice().buffer); // little-endian hosts (x86, ARM)
        else bytes = new Uint8Array(Uint16Array.from(src).buffer);
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
    // A shuffled index is written once, at `finish`.
    if (this.opts.shuffleSeed === undefined && (force || this.#indexCount >= 65536)) {
      const bytes = this.#index.subarray(0, this.#indexCount * INDEX_RECORD_BYTES);
      this.#idxHash.update(bytes);
      await writeAll(this.indexFile, bytes);
      this.#indexCount = 0;
    }
  }

  /** Flushes everything (the shuffled index included), fsyncs and closes both files. */
  async finish(): Promise<void> {
    await this.flush(true);
    if (this.opts.shuffleSeed !== undefined) {
      const n = this.#indexCount;
      const perm = new Uint32Array(n);
      for (let i = 0; i < n; i++) perm[i] = i;
      const rng = new Rng(this.opts.shuffleSeed >>> 0);
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
      }
      const out = new Uint8Array(n * INDEX_RECORD_BYTES);
      const lengths = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        out.set(this.#index.subarray(perm[i] * INDEX_RECORD_BYTES, (perm[i] + 1) * INDEX_RECORD_BYTES), i * 16);
        lengths[i] = this.#lengths[perm[i]];
      }
      this.#lengths = lengths;
      this.#idxHash.update(out);
      await writeAll(this.indexFile, out);
      this.#indexCount = 0;
    }
    await this.tokensFile.sync();
    await this.indexFile.sync();
    this.close();
  }

  /** Closes both files (idempotent). */
  close(): void {
    for (const f of [this.tokensFile, this.indexFile]) {
      try {
        f.close();
      } catch { /* closed */ }
    }
  }

  /** The lengths of the documents so far, in index order. */
  lengthsSoFar(): Uint32Array {
    return this.#lengths.subarray(0, this.documents);
  }

  /** The manifest's `files`, `documents`, `tokens` and `lengths` (after `finish`). */
  summary(): Pick<DatasetManifest, "documents" | "tokens" | "files" | "lengths" | "tokenBytes"> {
    return {
      tokenBytes: this.opts.tokenBytes,
      documents: this.documents,
      tokens: this.tokens,
      files: {
        tokens: {
          name: DATASET_FILES.tokens,
          bytes: this.tokens * this.opts.tokenBytes,
          sha256: this.#tokHash.digest("hex"),
        },
        index: {
          name: DATASET_FILES.index,
          bytes: this.documents * INDEX_RECORD_BYTES,
          sha256: this.#idxHash.digest("hex"),
        },
      },
      lengths: lengthStats(this.lengthsSoFar().slice()),
    };
  }
}

/** Writes all of `bytes` to `f`. */
export async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let o = 0;
  while (o < bytes.length) o += await f.write(bytes.subarray(o));
}
