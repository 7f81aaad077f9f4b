// Tokenising on several cores: a pool of worker threads (encode_worker.ts), each with its own copy of the
// tokenizer, encodes batches of documents while the main thread reads the input and writes tokens. Results are
// taken back in submission order, so the dataset is the same as a single-threaded run's, byte for byte. At most
// two batches per worker are in flight, so memory stays bounded whatever the input size.

import { UserError } from "../errors.ts";
import type { EncodeReply } from "./encode_worker.ts";

/** Tokens of a batch: all documents' ids back to back, and each document's length. */
export interface EncodedBatch {
  ids: Uint32Array;
  lengths: Uint32Array;
}

/** Worker threads that encode text batches with a tokenizer.json (see the file header). */
export class EncodePool {
  readonly #workers: Worker[];
  readonly #waiting = new Map<number, { resolve: (r: EncodedBatch) => void; reject: (e: Error) => void }>();
  #next = 0;
  #seq = 0;

  private constructor(workers: Worker[]) {
    this.#workers = workers;
    for (const w of workers) {
      w.onmessage = (e: MessageEvent) => {
        const r = e.data as EncodeReply;
        const p = this.#waiting.get(r.id);
        if (!p) return;
        this.#waiting.delete(r.id);
        if (r.error !== undefined) p.reject(new UserError(r.error));
        else p.resolve({ ids: r.ids!, lengths: r.lengths! });
      };
      w.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        for (const p of this.#waiting.values()) p.reject(new Error(`tokenizer worker failed: ${e.message}`));
        this.#waiting.clear();
      };
    }
  }

  /** Starts `n` workers that load the tokenizer at `tokenizerPath` (errors as the loader's). */
  static async start(tokenizerPath: string, n: number): Promise<EncodePool> {
    const workers = Array.from(
      { length: n },
      () => new Worker(new URL("./encode_worker.ts", import.meta.url).href, { type: "module" }),
    );
    try {
      await Promise.all(workers.map((w) =>
        new Promise<void>((resolve, reject) => {
          w.onmessage = (e: MessageEvent) => {
            const r = e.data as EncodeReply;
            if (r.error !== undefined) reject(new UserError(r.error));
            else resolve();
          };
          w.postMessage({ init: tokenizerPath });
        })
      ));
    } catch (e) {
      for (const w of workers) w.terminate();
      throw e;
    }
    return new EncodePool(workers);
  }

  /** Encodes a batch on the next worker (round robin). */
  encode(texts: string[]): Promise<EncodedBatch> {
    const id = this.#seq++;
    const w = this.#workers[this.#next++ % this.#workers.length];
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      w.postMessage({ id, texts });
    });
  }

  /** Number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  /** Stops every worker (idempotent). */
  close(): void {
    for (const w of this.#workers) w.terminate();
    for (const p of this.#waiting.values()) p.reject(new Error("tokenizer pool closed"));
    this.#waiting.clear();
  }
}
