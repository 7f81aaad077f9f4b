// WGSL for deterministic, atomic-free reductions in two stages with a fixed summation order: column sums of a
// [rows, cols] matrix (bias gradient; the second stage also finishes LayerNorm's dgamma/dbeta) and the sum of
// squares of a vector (global gradient norm).

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/**
 * Stage 1 of column sums: invocation (chunk c, column j) sums rows `[c·rowsPer, (c+1)·rowsPer)` of column j into
 * `partial[c·cols + j]`. Uniforms {rows, cols, rowsPer, chunks}; bindings x, partial.
 */
export const COLSUM_PARTIAL: KernelSpec = {
  key: "colsum_partial",
  bindings: ["uniform", "read", "rw"],
  code: `struct P { rows: u32, cols: u32, rows_per: u32, chunks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
${LINEAR_MAIN}
  if (i >= p.cols * p.chunks) { return; }
  let j = i % p.cols;
  let c = i / p.cols;
  let r0 = c * p.rows_per;
  let r1 = min(r0 + p.rows_per, p.rows);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { s += x[r * p.cols + j]; }
  part[i] = s;
}
`,
};

/**
 * Stage 2 of column sums: `out[j] += Σ_c partial[c·stride + offset + j]` for `j < cols`, c ascending.
 * Uniforms {cols, chunks, stride, offset}; bindings partial, out.
 */
export const COLSUM_FINAL: KernelSpec = {
  key: "colsum_final",
  bindings: ["uniform", "read", "rw"],
  code: `struct P { cols: u32, chunks: u32, stride: u32, offset: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
${LINEAR_MAIN}
  if (i >= p.cols) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += part[c * p.stride + p.offset + i]; }
  o[i] = o[i] + s;
}
`,
};

/**
 * Stage 1 of the sum of squares: invocation t < parts sums `x[t + k·parts]²` over k into `partial[t]`.
 * Uniforms {n, parts}; bindings x, partial.
 */
export const SUMSQ_PARTIAL: KernelSpec = {
  key: "sumsq_partial",
  bindings: ["uniform", "read", "rw"],
  code: `struct P { n: u32, parts: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
${LINEAR_MAIN}
  if (i >= p.parts) { return; }
  var s = 0.0;
  for (var k = i; k < p.n; k += p.parts) { let v = x[k]; s = fma(v, v, s); }
  part[i] = s;
}
`,
};

/**
 * Stage 2 of the sum of squares: one invocation writes `out[slot] = Σ_t partial[t]` (t ascending, pairwise in
 * blocks of 64 for accuracy). Uniforms {parts, slot}; bindings partial, out.
 */
export const SUM_FINAL: KernelSpec = {
  key: "sum_final",
  bindings: ["uniform", "read", "rw"],
  code: `struct P { parts: u32, slot: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(1)
fn main() {
  var total = 0.0;
  for (var b = 0u; b < p.parts; b += 64u) {
    var s = 0.0;
    for (var t = b; t < min(b + 64u, p.parts); t++) { s += part[t]; }
    total += s;
  }
  o[p.slot] = total;
}
`,
};

/**
 * Sum of equally strided partial results (split-K matmul): `out[i] = (acc ? out[i] : 0) + alpha·Σ_p part[p·stride + i]`
 * for `i < n`, p ascending. Uniforms {n, parts, stride, acc, alpha}; bindings partial, out.
 */
export const SUM_PARTS: KernelSpec = {
  key: "sum_parts",
  bindings: ["uniform", "read", "rw"],
  code: `struct P { n: u32, parts: u32, stride: u32, acc: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.parts; c++) { s += part[c * p.stride + i]; }
  if (p.acc != 0u) { o[i] = o[i] + p.alpha * s; } else { o[i] = p.alpha * s; }
}
`,
};
