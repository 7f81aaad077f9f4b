// WGSL for the re-layout between token-major rows `[tokens, rowStride]` (heads side by side from `colOffset`) and
// head-major blocks `[heads, tokens, headDim]`, used around attention. Both iterate in destination order. Sizes
// (headDim, rowStride, colOffset) are in units: vec4 when all three divide by 4, else scalars.

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

const UNIFORMS = `struct P { tokens: u32, heads: u32, head_dim: u32, row_stride: u32, col_offset: u32 }
@group(0) @binding(0) var<uniform> p: P;`;

/** `head[h, t, e] = rows[t, colOffset + h·headDim + e]`. Bindings rows, head. */
export function toHeadMajorKernel(vec4: boolean): KernelSpec {
  const T = vec4 ? "vec4<f32>" : "f32";
  return {
    key: `to_head_major${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "rw"],
    code: `${UNIFORMS}
@group(0) @binding(1) var<storage, read> rows: array<${T}>;
@group(0) @binding(2) var<storage, read_write> head: array<${T}>;
${LINEAR_MAIN}
  let per_head = p.tokens * p.head_dim;
  if (i >= p.heads * per_head) { return; }
  let h = i / per_head;
  let rem = i % per_head;
  let t = rem / p.head_dim;
  let e = rem % p.head_dim;
  head[i] = rows[t * p.row_stride + p.col_offset + h * p.head_dim + e];
}
`,
  };
}

/** `rows[t, colOffset + h·headDim + e] = head[h, t, e]` (other columns untouched). Bindings head, rows. */
export function fromHeadMajorKernel(vec4: boolean): KernelSpec {
  const T = vec4 ? "vec4<f32>" : "f32";
  return {
    key: `from_head_major${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "rw"],
    code: `${UNIFORMS}
@group(0) @binding(1) var<storage, read> head: array<${T}>;
@group(0) @binding(2) var<storage, read_write> rows: array<${T}>;
${LINEAR_MAIN}
  let width = p.heads * p.head_dim;
  if (i >= p.tokens * width) { return; }
  let t = i / width;
  let c = i % width;
  let h = c / p.head_dim;
  let e = c % p.head_dim;
  rows[t * p.row_stride + p.col_offset + c] = head[(h * p.tokens + t) * p.head_dim + e];
}
`,
  };
}
