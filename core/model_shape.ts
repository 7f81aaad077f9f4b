// Model presets: the paper's GPT shapes (Table 5) and a tiny GPT that trains on a laptop.

/** Shape of a GPT model: the numbers both the cost model and the executors need. */
export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
  vocab: number;
  /** Longest sequence (tokens) the model accepts; learned position embeddings have this many rows. */
  maxSeq: number;
}

/** Named model shapes. The large ones are the paper's (64 heads, GPT-2 vocabulary, 192K context by default). */
export const MODEL_PRESETS: Record<string, ModelShape> = {
  "gpt-tiny": { layers: 2, hidden: 64, heads: 4, vocab: 256, maxSeq: 1024 },
  "gpt-small": { layers: 4, hidden: 128, heads: 8, vocab: 256, maxSeq: 2048 },
  "gpt-7b": { layers: 32, hidden: 4096, heads: 64, vocab: 50257, maxSeq: 196608 },
  "gpt-13b": { layers: 40, hidden: 5120, heads: 64, vocab: 50257, maxSeq: 196608 },
  "gpt-30b": { layers: 60, hidden: 6656, heads: 64, vocab: 50257, maxSeq: 196608 },
};

/** Parameter count of a GPT-2 style model (blocks, embeddings incl. learned positions, final LN; tied head). */
export function parameterCount(m: ModelShape): number {
  const perLayer = 12 * m.hidden * m.hidden + 13 * m.hidden;
  return m.layers * perLayer + (m.vocab + m.maxSeq) * m.hidden + 2 * m.hidden;
}
