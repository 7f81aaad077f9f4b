// The data ledger: which tokens trained at which step. Every ledger record lists its sequences as
// `{id, doc, offset, length}`: the sampler's sequence id, the document's index in the dataset, and the token range
// `[offset, offset + length)` of that document the sequence trained on (a document longer than `model.max_seq` gives
// several pieces). `data trace` turns a record back into documents and text previews.

import type { Batch } from "./sampler.ts";
import type { DatasetIndex } from "./dataset_format.ts";
import { bytesTokenizer, type DocumentTokenizer, loadTokenizer } from "./tokenizer.ts";

/** One trained sequence of a step, as the ledger records it. */
export interface LedgerSequence {
  /** The plan's sequence id (the sampler's id into the sequence table). */
  id: number;
  /** The document's index in the dataset (null for synthetic lengths: no dataset). */
  doc: number | null;
  /** First token of the range, counted from the document's start. */
  offset: number;
  /** Tokens in the range. */
  length: number;
}

/** The ledger's `sequences` of a step: the batch positions `indices` (the planned ones), in batch order. */
export function ledgerSequences(batch: Batch, indices: Iterable<number>): LedgerSequence[] {
  return [...indices].sort((a, b) => a - b).map((k) => ({
    id: batch.ids[k],
    doc: batch.docs ? batch.docs[k] : null,
    offset: batch.docOffsets ? batch.docOffsets[k] : 0,
    length: batch.lengths[k],
  }));
}

/** Reads tokens `[offset, offset + length)` of document `doc` from the dataset's token file. */
export async function readDocumentRange(
  ds: DatasetIndex,
  doc: number,
  offset: number,
  length: number,
): Promise<Uint32Array> {
  if (!(doc >= 0 && doc < ds.lengths.length) || offset < 0 || offset + length > ds.lengths[doc]) {
    throw new Error(
      `document ${doc} [${offset}, ${offset + length}) is outside the dataset (${ds.lengths.length} documents` +
        (doc >= 0 && doc < ds.lengths.length ? `, this one has ${ds.lengths[doc]} tokens` : "") + ")",
    );
  }
  const w = ds.manifest.tokenBytes;
  const f = await Deno.open(ds.tokensPath, { read: true });
  try {
    const buf = new Uint8Array(length * w);
    await f.seek((ds.offsets[doc] + offset) * w, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = await f.read(buf.subarray(got));
      if (n === null) throw new Error(`${ds.tokensPath} ended early`);
      got += n;
    }
    return w === 2 ? Uint32Array.from(new Uint16Array(buf.buffer)) : new Uint32Array(buf.buffer);
  } finally {
    f.close();
  }
}

/** The tokenizer of a dataset for previews: its tokenizer.json when still there, else undefined (ids are shown). */
export async function previewTokenizer(ds: DatasetIndex): Promise<DocumentTokenizer | undefined> {
  const m = ds.manifest;
  if (m.tokenizer === "bytes") return bytesTokenizer();
  const path = m.tokenizerInfo?.path;
  if (!path) return undefined;
  try {
    const tk = await loadTokenizer(path);
    return tk.info.hash === m.tokenizerInfo!.hash ? tk : undefined;
  } catch {
    return undefined;
  }
}

/** One line of text: control characters and newlines shown as escapes, cut to `chars`. */
export function previewText(text: string, chars: number): string {
  const flat = JSON.stringify(text).slice(1, -1);
  return flat.length > chars ? `${flat.slice(0, chars)}...` : flat;
}

/** The lines `data trace` prints for one ledger record's sequences. */
export async function traceLines(
  step: number,
  sequences: LedgerSequence[],
  ds: DatasetIndex | undefined,
  previewChars: number,
): Promise<string[]> {
  const tk = ds ? await previewTokenizer(ds) : undefined;
  const tokens = sequences.reduce((s, q) => s + q.length, 0);
  const lines = [`step ${step}: ${sequences.length} sequences, ${tokens} tokens`];
  const w = Math.max(2, ...sequences.map((q) => String(q.id).length));
  const wd = Math.max(3, ...sequences.map((q) => String(q.doc).length));
  lines.push(`  ${"id".padStart(w)}  ${"doc".padStart(wd)}  tokens            preview`);
  for (const q of sequences) {
    let preview = "";
    if (ds && q.doc !== null) {
      const ids = await readDocumentRange(ds, q.doc, q.offset, q.length);
      const head = ids.subarray(0, Math.min(ids.length, previewChars * 4));
      preview = tk ? previewText(tk.decode(head), previewChars) : `ids ${[...head.subarray(0, 12)].join(" ")} ...`;
    } else if (q.doc === null) {
      preview = "(synthetic tokens)";
    }
    const range = `[${q.offset}, ${q.offset + q.length})`.padEnd(16);
    lines.push(`  ${String(q.id).padStart(w)}  ${String(q.doc).padStart(wd)}  ${range}  ${preview}`);
  }
  return lines;
}
