// The flat parameter layout of a llama-family model, as kernels/torch/llama.py lays it out: Hugging Face tensor
// names and [out, in] shapes, in buffer order, each slice at a 64-element aligned offset. The export reads
// executor checkpoints with it.

import { headDimOf, kvHeadsOf, type ModelShape } from "./model_shape.ts";

/** Views into the flat buffer start at multiples of this many elements (kernels/backend.ts VIEW_ALIGN). */
const VIEW_ALIGN = 64;

/** One named tensor of the layout. */
export interface LlamaSlice {
  name: string;
  offset: number;
  length: number;
  shape: number[];
}

/** The slices of a llama-family shape, in buffer order, and the flat buffer's total length. */
export function llamaLayout(m: ModelShape): { slices: LlamaSlice[]; total: number } {
  const H = m.hidden, V = m.vocab, D = headDimOf(m), q = m.heads * D, kv = kvHeadsOf(m) * D;
  const ff = m.intermediate ?? 4 * H;
  const slices: LlamaSlice[] = [];
  let offset = 0;
  const add = (name: string, shape: number[]) => {
    const length = shape.reduce((a, b) => a * b, 1);
    slices.push({ name, offset, length, shape });
    offset += Math.ceil(length / VIEW_ALIGN) * VIEW_ALIGN;
  };
  add("model.embed_tokens.weight", [V, H]);
  for (let i = 0; i < m.layers; i++) {
    const p = `model.layers.${i}.`;
    add(p + "input_layernorm.weight", [H]);
    add(p + "self_attn.q_proj.weight", [q, H]);
    if (m.qkvBias) add(p + "self_attn.q_proj.bias", [q]);
    add(p + "self_attn.k_proj.weight", [kv, H]);
    if (m.qkvBias) add(p + "self_attn.k_proj.bias", [kv]);
    add(p + "self_attn.v_proj.weight", [kv, H]);
    if (m.qkvBias) add(p + "self_attn.v_proj.bias", [kv]);
    add(p + "self_attn.o_proj.weight", [H, q]);
    if (m.oBias) add(p + "self_attn.o_proj.bias", [H]);
    add(p + "post_attention_layernorm.weight", [H]);
    add(p + "mlp.gate_proj.weight", [ff, H]);
    add(p + "mlp.up_proj.weight", [ff, H]);
    add(p + "mlp.down_proj.weight", [H, ff]);
  }
  add("model.norm.weight", [H]);
  if (!m.tieEmbeddings) add("lm_head.weight", [V, H]);
  return { slices, total: offset };
}
