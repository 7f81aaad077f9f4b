// Model shapes and presets: the paper's GPT shapes (Table 5), a tiny GPT that trains on a laptop, and the Llama
// family (Llama, Mistral, Qwen2: grouped-query attention, SwiGLU, RMSNorm, RoPE) for planning and the torch
// executor. The shape is what the planner and the executors agree on: core/hf_config.ts builds one from a Hugging
// Face config.json the same way kernels/torch/hf.py does.

/** Model families: "gpt" (GPT-2 style, every executor) and "llama" (the torch executors only). */
export type ModelFamily = "gpt" | "llama";

/** RoPE scaling of the llama family (config.json rope_scaling / rope_parameters). */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  };

/** Shape of a model: the numbers both the cost model and the executors need. */
export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
  vocab: number;
  /** Longest sequence (tokens) the model accepts; learned position embeddings have this many rows (gpt). */
  maxSeq: number;
  /** Family; absent means "gpt". */
  family?: ModelFamily;
  /** Hugging Face model_type of a llama-family model (llama, mistral, qwen2). */
  modelType?: string;
  /** K/V heads (grouped-query attention; llama family). */
  kvHeads?: number;
  /** Width of one attention head (llama family; default hidden / heads). */
  headDim?: number;
  /** SwiGLU width (llama family). */
  intermediate?: number;
  ropeTheta?: number;
  ropeScaling?: RopeScaling;
  /** RMSNorm epsilon (llama family). */
  normEps?: number;
  /** Output head tied to the token embedding (llama family; the gpt head is always tied). */
  tieEmbeddings?: boolean;
  /** Biases on q/k/v (qwen2, llama attention_bias) and on o_proj (llama attention_bias). */
  qkvBias?: boolean;
  oBias?: boolean;
  /** Sliding-window attention span in tokens (mistral; qwen2 with use_sliding_window), shorter than maxSeq. */
  slidingWindow?: number;
}

/** Llama 3's published RoPE scaling (config.json of Llama-3.1 8B and 70B). */
const LLAMA3_ROPE_SCALING: RopeScaling = {
  type: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 8192,
};

/** A llama-family shape with its defaults filled in. */
function llama(
  s: Omit<ModelShape, "family"> & { kvHeads: number; intermediate: number; ropeTheta: number },
): ModelShape {
  return { family: "llama", modelType: "llama", normEps: 1e-5, tieEmbeddings: false, ...s };
}

/** Named model shapes. The large GPT ones are the paper's (64 heads, GPT-2 vocabulary, 192K context). */
export const MODEL_PRESETS: Record<string, ModelShape> = {
  "gpt-tiny": { layers: 2, hidden: 64, heads: 4, vocab: 256, maxSeq: 1024 },
  "gpt-small": { layers: 4, hidden: 128, heads: 8, vocab: 256, maxSeq: 2048 },
  "gpt-7b": { layers: 32, hidden: 4096, heads: 64, vocab: 50257, maxSeq: 196608 },
  "gpt-13b": { layers: 40, hidden: 5120, heads: 64, vocab: 50257, maxSeq: 196608 },
  "gpt-30b": { layers: 60, hidden: 6656, heads: 64, vocab: 50257, maxSeq: 196608 },
  /** A 2-layer GQA llama for laptops and tests (4 query heads, 2 K/V heads). */
  "llama-tiny": llama({
    layers: 2,
    hidden: 64,
    heads: 4,
    kvHeads: 2,
    intermediate: 176,
    vocab: 256,
    maxSeq: 1024,
    ropeTheta: 10000,
  }),
  "llama2-7b": llama({
    layers: 32,
    hidden: 4096,
    heads: 32,
    kvHeads: 32,
    intermediate: 11008,
    vocab: 32000,
    maxSeq: 4096,
    ropeTheta: 10000,
  }),
  "llama3-8b": llama({
    layers: 32,
    hidden: 4096,
    heads: 32,
    kvHeads: 8,
    intermediate: 14336,
    vocab: 128256,
    maxSeq: 131072,
    ropeTheta: 500000,
    ropeScaling: LLAMA3_ROPE_SCALING,
  }),
  "llama3-70b": llama({
    layers: 80,
    hidden: 8192,
    heads: 64,
    kvHeads: 8,
    intermediate: 28672,
    vocab: 128256,
    maxSeq: 131072,
    ropeTheta: 500000,
    ropeScaling: LLAMA3_ROPE_SCALING,
  }),
  "mistral-7b": llama({
    modelType: "mistral",
    layers: 32,
    hidden: 4096,
    heads: 32,
    kvHeads: 8,
    intermediate: 14336,
    vocab: 32768,
    maxSeq: 32768,
    ropeTheta: 1000000,
  }),
  "qwen2-7b": llama({
    modelType: "qwen2",
    layers: 28,
    hidden: 3584,
    heads: 28,
    kvHeads: 4,
    intermediate: 18944,
    vocab: 152064,
    maxSeq: 32768,
    ropeTheta: 1000000,
    normEps: 1e-6,
    qkvBias: true,
  }),
};

/** The family of a shape ("gpt" when absent). */
export function familyOf(m: ModelShape): ModelFamily {
  return m.family ?? "gpt";
}

/** K/V heads of a shape (the query heads for the gpt family). */
export function kvHeadsOf(m: ModelShape): number {
  return m.kvHeads ?? m.heads;
}

/** Width of one attention head. */
export function headDimOf(m: ModelShape): number {
  return m.headDim ?? m.hidden / m.heads;
}

/**
 * K/V heads each rank of a Ulysses group of degree d attends with: kv/d when d divides the K/V heads, else 1 (each
 * K/V head replicated d/kv times, DeepSpeed-Ulysses' way); undefined when d is incompatible with the heads.
 */
export function kvHeadsPerRank(m: ModelShape, d: number): number | undefined {
  const kv = kvHeadsOf(m);
  if (m.heads % d !== 0) return undefined;
  if (kv % d === 0) return kv / d;
  if (d % kv === 0) return 1;
  return undefined;
}

/** Why SP degree d cannot run the model (undefined when it can). */
export function degreeProblem(m: ModelShape, d: number): string | undefined {
  if (m.heads % d !== 0) {
    return `SP degree ${d} does not divide the model's ${m.heads} attention heads (Ulysses needs heads divisible by the degree)`;
  }
  const kv = kvHeadsOf(m);
  if (kv % d !== 0 && d % kv !== 0) {
    return `SP degree ${d} is incompatible with the model's ${kv} K/V heads (they must divide by the degree, or the degree be a multiple of them for replication)`;
  }
  return undefined;
}

/** Parameter count: GPT-2 style (blocks, embeddings incl. learned positions, final LN; tied head), or the llama family's. */
export function parameterCount(m: ModelShape): number {
  if (familyOf(m) === "llama") {
    const H = m.hidden, D = headDimOf(m), q = m.heads * D, kv = kvHeadsOf(m) * D, ff = m.intermediate ?? 4 * H;
    const attn = H * q + 2 * H * kv + q * H + (m.qkvBias ? q + 2 * kv : 0) + (m.oBias ? H : 0);
    const perLayer = attn + 3 * H * ff + 2 * H;
    return m.layers * perLayer + m.vocab * H * (m.tieEmbeddings ? 1 : 2) + H;
  }
  const perLayer = 12 * m.hidden * m.hidden + 13 * m.hidden;
  return m.layers * perLayer + (m.vocab + m.maxSeq) * m.hidden + 2 * m.hidden;
}
