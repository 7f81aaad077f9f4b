// A Hugging Face config.json (llama, mistral, qwen2) as a flexsp model shape, the same mapping as
// kernels/torch/hf.py shape_json (the torch executor checks that the shape it is sent equals its own reading), and
// back (hfConfigOf, for the export).

import type { ModelShape, RopeScaling } from "./model_shape.ts";

/** Hugging Face model_type values the llama family covers. */
export const HF_MODEL_TYPES = ["llama", "mistral", "qwen2"] as const;

/** A config.json flexsp cannot use (the message names the file and what is wrong). */
export class HfConfigError extends Error {
  override name = "HfConfigError";
}

// deno-lint-ignore no-explicit-any
type Json = any;

function rope(cfg: Json, path: string): { theta: number; scaling?: RopeScaling } {
  let sc = cfg.rope_scaling;
  let theta = cfg.rope_theta ?? 10000;
  const rp = cfg.rope_parameters;
  if (rp && typeof rp === "object") {
    theta = rp.rope_theta ?? theta;
    sc = rp;
  }
  if (!sc || typeof sc !== "object") return { theta: Number(theta) };
  const kind = sc.rope_type ?? sc.type ?? "default";
  if (kind === "default") return { theta: Number(theta) };
  if (kind === "linear") return { theta: Number(theta), scaling: { type: "linear", factor: Number(sc.factor) } };
  if (kind === "llama3") {
    return {
      theta: Number(theta),
      scaling: {
        type: "llama3",
        factor: Number(sc.factor),
        lowFreqFactor: Number(sc.low_freq_factor),
        highFreqFactor: Number(sc.high_freq_factor),
        originalMaxPositionEmbeddings: Number(sc.original_max_position_embeddings),
      },
    };
  }
  throw new HfConfigError(`${path}: RoPE scaling type '${kind}' is not supported (supported: default, linear, llama3)`);
}

/** The llama-family shape of a parsed config.json (`path` names the file in errors). */
export function shapeFromHfConfig(cfg: Json, path: string): ModelShape {
  if (!cfg || typeof cfg !== "object") throw new HfConfigError(`${path}: expected a JSON object`);
  const mt = cfg.model_type;
  if (!(HF_MODEL_TYPES as readonly string[]).includes(mt)) {
    throw new HfConfigError(
      `${path}: model_type '${mt}' is not supported (supported: ${HF_MODEL_TYPES.join(", ")})`,
    );
  }
  if ((cfg.hidden_act ?? "silu") !== "silu") {
    throw new HfConfigError(`${path}: hidden_act '${cfg.hidden_act}' is not supported (the llama family uses silu)`);
  }
  if (cfg.mlp_bias) throw new HfConfigError(`${path}: mlp_bias true is not supported`);
  for (const k of ["num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "intermediate_size"]) {
    if (!Number.isInteger(cfg[k])) throw new HfConfigError(`${path}: ${k} must be an integer`);
  }
  const heads = cfg.num_attention_heads;
  const { theta, scaling } = rope(cfg, path);
  const maxSeq = Number(cfg.max_position_embeddings ?? 4096);
  const window = cfg.sliding_window;
  const windowed = mt === "mistral" || (mt === "qwen2" && cfg.use_sliding_window);
  // A sliding window is the attention kernel's business (kernels/torch/attention.py); it does not cap the context.
  const shape: ModelShape = {
    family: "llama",
    modelType: mt,
    layers: cfg.num_hidden_layers,
    hidden: cfg.hidden_size,
    heads,
    kvHeads: Number(cfg.num_key_value_heads || heads),
    headDim: Number(cfg.head_dim || Math.floor(cfg.hidden_size / heads)),
    intermediate: cfg.intermediate_size,
    vocab: cfg.vocab_size,
    maxSeq,
    ropeTheta: theta,
    normEps: Number(cfg.rms_norm_eps ?? 1e-6),
    tieEmbeddings: Boolean(cfg.tie_word_embeddings ?? false),
    qkvBias: mt === "qwen2" || Boolean(cfg.attention_bias ?? false),
    oBias: mt !== "qwen2" && Boolean(cfg.attention_bias ?? false),
  };
  if (scaling) shape.ropeScaling = scaling;
  if (windowed && Number.isInteger(window) && window < maxSeq) shape.slidingWindow = window;
  return shape;
}

/** Reads `dir`/config.json and returns its shape (clear error when missing, not JSON, or unsupported). */
export function readHfShape(dir: string): ModelShape {
  const path = `${dir.replace(/\/+$/, "")}/config.json`;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "not found" : String((e as Error).message);
    throw new HfConfigError(`${path}: ${why} (model.from must be a Hugging Face model directory with config.json)`, {
      cause: e,
    });
  }
  let cfg: Json;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new HfConfigError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return shapeFromHfConfig(cfg, path);
}

/** A transformers config.json for a llama-family shape (the inverse of shapeFromHfConfig), weights in `dtype`. */
export function hfConfigOf(m: ModelShape, dtype: "float32" | "bfloat16" = "float32"): Record<string, unknown> {
  const mt = m.modelType ?? "llama";
  const arch: Record<string, string> = {
    llama: "LlamaForCausalLM",
    mistral: "MistralForCausalLM",
    qwen2: "Qwen2ForCausalLM",
  };
  const rp: Record<string, unknown> = { rope_theta: m.ropeTheta ?? 10000, rope_type: "default" };
  const sc = m.ropeScaling;
  if (sc) {
    rp.rope_type = sc.type;
    rp.factor = sc.factor;
    if (sc.type === "llama3") {
      rp.low_freq_factor = sc.lowFreqFactor;
      rp.high_freq_factor = sc.highFreqFactor;
      rp.original_max_position_embeddings = sc.originalMaxPositionEmbeddings;
    }
  }
  const cfg: Record<string, unknown> = {
    architectures: [arch[mt] ?? "LlamaForCausalLM"],
    model_type: mt,
    hidden_act: "silu",
    num_hidden_layers: m.layers,
    hidden_size: m.hidden,
    num_attention_heads: m.heads,
    num_key_value_heads: m.kvHeads ?? m.heads,
    head_dim: m.headDim ?? m.hidden / m.heads,
    intermediate_size: m.intermediate,
    vocab_size: m.vocab,
    max_position_embeddings: m.maxSeq,
    rms_norm_eps: m.normEps ?? 1e-6,
    tie_word_embeddings: m.tieEmbeddings ?? false,
    torch_dtype: dtype,
    rope_parameters: rp,
    rope_theta: m.ropeTheta ?? 10000,
  };
  if (mt === "llama") Object.assign(cfg, { attention_bias: m.qkvBias ?? false, mlp_bias: false });
  if (mt === "mistral") cfg.sliding_window = m.slidingWindow ?? null;
  if (mt === "qwen2") {
    Object.assign(cfg, { use_sliding_window: m.slidingWindow !== undefined, sliding_window: m.slidingWindow ?? null });
  }
  return cfg;
}
