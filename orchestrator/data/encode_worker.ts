// A worker thread of `EncodePool`: loads the tokenizer once, then turns batches of texts into token ids
// (one flat Uint32Array and the per-text lengths, transferred back without copying).

import { loadTokenizer } from "./tokenizer.ts";

/** A request: texts to encode. */
export interface EncodeRequest {
  id: number;
  texts: string[];
}

/** A reply: all texts' ids back to back, their lengths, or the error message. */
export interface EncodeReply {
  id: number;
  ids?: Uint32Array;
  lengths?: Uint32Array;
  error?: string;
}

const self = globalThis as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage: (m: unknown, transfer?: Transferable[]) => void;
};
let tk: Awaited<ReturnType<typeof loadTokenizer>> | undefined;
let queue: Promise<unknown> = Promise.resolve();

self.onmessage = (e: MessageEvent) => {
  const msg = e.data as { init?: string } & Partial<EncodeRequest>;
  queue = queue.then(async () => {
    if (msg.init !== undefined) {
      try {
        tk = await loadTokenizer(msg.init);
        self.postMessage({ id: -1 });
      } catch (err) {
        self.postMessage({ id: -1, error: (err as Error).message });
      }
      return;
    }
    try {
      const parts = msg.texts!.map((t) => (t.length ? tk!.encode(t) : []));
      const lengths = Uint32Array.from(parts, (p) => p.length);
      const ids = new Uint32Array(lengths.reduce((s, n) => s + n, 0));
      let o = 0;
      for (const p of parts) {
        ids.set(p, o);
        o += p.length;
      }
      self.postMessage({ id: msg.id!, ids, lengths } satisfies EncodeReply, [ids.buffer, lengths.buffer]);
    } catch (err) {
      self.postMessage({ id: msg.id!, error: (err as Error).message } satisfies EncodeReply);
    }
  });
};
