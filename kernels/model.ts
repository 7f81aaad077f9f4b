// The GPT model definition shared by the TypeScript executors: the flat float32 parameter layout (named slices at
// aligned offsets), a seeded PRNG of our own, and the GPT-2 style initialisation. Pure data, no device code.

import type { ModelShape } from "../core/model_shape.ts";
import { VIEW_ALIGN } from "./backend.ts";

export type { ModelShape };

/** One named parameter tensor inside the flat parameter buffer. */
export interface ParamSlice {
  /** e.g. `wte`, `h0.attn.w_qkv`, `lnf.g`. */
  name: string;
  /** Element offset in the flat buffer, a multiple of {@link VIEW_ALIGN}. */
  offset: number;
  /** Number of elements (`shape` product). */
  length: number;
  /** Row-major shape. */
  shape: number[];
  /** Whether AdamW weight decay applies (2-D weights and embeddings yes; biases and LayerNorm no). */
  decay: boolean;
  /** How it is initialised. */
  init: "normal" | "normal_residual" | "zeros" | "ones";
}

/** The slices of one transformer block. */
export interface LayerSlices {
  /** LayerNorm before attention, `[H]` each. */
  ln1g: ParamSlice;
  ln1b: ParamSlice;
  /** Fused QKV projection `[H, 3H]` (columns: q heads, then k heads, then v heads) and its bias `[3H]`. */
  wqkv: ParamSlice;
  bqkv: ParamSlice;
  /** Attention output projection `[H, H]`, bias `[H]`. */
  wo: ParamSlice;
  bo: ParamSlice;
  /** LayerNorm before the MLP. */
  ln2g: ParamSlice;
  ln2b: ParamSlice;
  /** MLP up projection `[H, 4H]`, bias `[4H]`. */
  wfc: ParamSlice;
  bfc: ParamSlice;
  /** MLP down projection `[4H, H]`, bias `[H]`. */
  wproj: ParamSlice;
  bproj: ParamSlice;
}

/** The flat parameter layout of a model: every slice in buffer order, plus named access. */
export interface ParamLayout {
  shape: ModelShape;
  /** Total elements of the flat buffer (including alignment padding, which stays zero). */
  total: number;
  /** Number of real parameters (excluding padding). */
  count: number;
  /** Every slice in offset order. */
  slices: ParamSlice[];
  /** Token embeddings `[V, H]`, also the tied LM head. */
  wte: ParamSlice;
  /** Learned position embeddings `[maxSeq, H]`. */
  wpe: ParamSlice;
  layers: LayerSlices[];
  /** Final LayerNorm `[H]` each. */
  lnfg: ParamSlice;
  lnfb: ParamSlice;
}

/** Standard deviation of the normal initialisation (GPT-2). */
export const INIT_STD = 0.02;
/** LayerNorm epsilon used everywhere. */
export const LN_EPS = 1e-5;

/** Throws a clear error unless the shape is usable by the executors. */
export function validateShape(s: ModelShape): void {
  if ((s.family ?? "gpt") !== "gpt") {
    throw new Error(
      `model shape: the ${s.family} family runs on the PyTorch executors only (executor: torch-cpu or cuda)`,
    );
  }
  for (const k of ["layers", "hidden", "heads", "vocab", "maxSeq"] as const) {
    if (!Number.isInteger(s[k]) || s[k] <= 0) throw new Error(`model shape: ${k} must be a positive integer`);
  }
  if (s.hidden % s.heads !== 0) throw new Error(`model shape: hidden ${s.hidden} is not divisible by heads ${s.heads}`);
}

/** Builds the flat parameter layout of `shape` (order: wte, wpe, blocks 0..L-1, lnf). */
export function paramLayout(shape: ModelShape): ParamLayout {
  validateShape(shape);
  const { hidden: H, vocab: V, maxSeq } = shape;
  const slices: ParamSlice[] = [];
  let offset = 0;
  let count = 0;
  const add = (name: string, dims: number[], init: ParamSlice["init"], decay: boolean): ParamSlice => {
    const length = dims.reduce((a, b) => a * b, 1);
    const s: ParamSlice = { name, offset, length, shape: dims, decay, init };
    slices.push(s);
    offset += Math.ceil(length / VIEW_ALIGN) * VIEW_ALIGN;
    count += length;
    return s;
  };
  const wte = add("wte", [V, H], "normal", true);
  const wpe = add("wpe", [maxSeq, H], "normal", true);
  const layers: LayerSlices[] = [];
  for (let l = 0; l < shape.layers; l++) {
    const p = `h${l}.`;
    layers.push({
      ln1g: add(p + "ln1.g", [H], "ones", false),
      ln1b: add(p + "ln1.b", [H], "zeros", false),
      wqkv: add(p + "attn.w_qkv", [H, 3 * H], "normal", true),
      bqkv: add(p + "attn.b_qkv", [3 * H], "zeros", false),
      wo: add(p + "attn.w_o", [H, H], "normal_residual", true),
      bo: add(p + "attn.b_o", [H], "zeros", false),
      ln2g: add(p + "ln2.g", [H], "ones", false),
      ln2b: add(p + "ln2.b", [H], "zeros", false),
      wfc: add(p + "mlp.w_fc", [H, 4 * H], "normal", true),
      bfc: add(p + "mlp.b_fc", [4 * H], "zeros", false),
      wproj: add(p + "mlp.w_proj", [4 * H, H], "normal_residual", true),
      bproj: add(p + "mlp.b_proj", [H], "zeros", false),
    });
  }
  const lnfg = add("lnf.g", [H], "ones", false);
  const lnfb = add("lnf.b", [H], "zeros", false);
  return { shape, total: offset, count, slices, wte, wpe, layers, lnfg, lnfb };
}

/**
 * A small deterministic PRNG (sfc32, seeded through splitmix32): the same seed gives the same stream on every
 * machine. `normal()` uses Box-Muller in float64.
 */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  #spare: number | undefined;

  /** Seeds the generator from up to a few 32-bit integers (e.g. run seed and a stream id). */
  constructor(...seeds: number[]) {
    let s = 0x9e3779b9;
    const mix = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    for (const x of seeds) {
      s = (s ^ Math.imul((x >>> 0) ^ Math.floor(x / 0x100000000), 0x27d4eb2f)) | 0;
      mix();
    }
    this.#a = mix();
    this.#b = mix();
    this.#c = mix();
    this.#d = mix();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** Next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal sample. */
  normal(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    const u1 = (this.nextU32() + 1) / 4294967297; // (0, 1)
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.#spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
}

/**
 * The seeded initial parameters as a flat buffer of `layout.total` floats: weights N(0, 0.02), the residual
 * projections (`w_o`, `w_proj`) N(0, 0.02/sqrt(2·layers)), biases 0, LayerNorm gains 1. Each slice draws from its
 * own stream (seed, slice index), so every rank of a run starts from identical parameters.
 */
export function initParams(layout: ParamLayout, seed: number): Float32Array {
  const out = new Float32Array(layout.total);
  const residualStd = INIT_STD / Math.sqrt(2 * layout.shape.layers);
  layout.slices.forEach((s, i) => {
    const dst = out.subarray(s.offset, s.offset + s.length);
    if (s.init === "ones") dst.fill(1);
    else if (s.init === "normal" || s.init === "normal_residual") {
      const std = s.init === "normal" ? INIT_STD : residualStd;
      const rng = new Prng(seed, i + 1);
      for (let j = 0; j < dst.length; j++) dst[j] = rng.normal() * std;
    }
  });
  return out;
}
