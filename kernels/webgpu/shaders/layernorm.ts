// WGSL for LayerNorm over the last dimension: the forward (one invocation per row, two-pass mean/variance, saves
// mean and rstd), the backward's dx (one invocation per row) and the first stage of dgamma/dbeta (column sums of
// dy·xhat and dy per row chunk, finished by the shared column-sum stage 2).

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/** Forward. Uniforms {rows, cols, eps}; bindings x, gamma, beta, out, mean, rstd. */
export const LAYERNORM_FORWARD: KernelSpec = {
  key: "ln_fwd",
  bindings: ["uniform", "read", "read", "read", "rw", "rw", "rw"],
  code: `struct P { rows: u32, cols: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;
${LINEAR_MAIN}
  if (i >= p.rows) { return; }
  let base = i * p.cols;
  var s = 0.0;
  for (var c = 0u; c < p.cols; c++) { s += x[base + c]; }
  let mu = s / f32(p.cols);
  var v = 0.0;
  for (var c = 0u; c < p.cols; c++) { let d = x[base + c] - mu; v = fma(d, d, v); }
  let rs = inverseSqrt(v / f32(p.cols) + p.eps);
  for (var c = 0u; c < p.cols; c++) { o[base + c] = (x[base + c] - mu) * rs * gamma[c] + beta[c]; }
  mean_out[i] = mu;
  rstd_out[i] = rs;
}
`,
};

/**
 * Backward dx: `dx = rstd·(g - mean(g) - xhat·mean(g·xhat))`, `g = dy·gamma`, overwritten or accumulated.
 * Uniforms {rows, cols, accumulate}; bindings dy, x, gamma, mean, rstd, dx.
 */
export const LAYERNORM_BACKWARD_DX: KernelSpec = {
  key: "ln_bwd_dx",
  bindings: ["uniform", "read", "read", "read", "read", "read", "rw"],
  code: `struct P { rows: u32, cols: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> mean_in: array<f32>;
@group(0) @binding(5) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
${LINEAR_MAIN}
  if (i >= p.rows) { return; }
  let base = i * p.cols;
  let mu = mean_in[i];
  let rs = rstd_in[i];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = 0u; c < p.cols; c++) {
    let g = dy[base + c] * gamma[c];
    sg += g;
    sgx = fma(g, (x[base + c] - mu) * rs, sgx);
  }
  let mg = sg / f32(p.cols);
  let mgx = sgx / f32(p.cols);
  for (var c = 0u; c < p.cols; c++) {
    let g = dy[base + c] * gamma[c];
    let xh = (x[base + c] - mu) * rs;
    let d = rs * (g - mg - xh * mgx);
    if (p.acc != 0u) { dx[base + c] = dx[base + c] + d; } else { dx[base + c] = d; }
  }
}
`,
};

/**
 * Backward dgamma/dbeta stage 1: invocation (chunk c, column j) writes `partial[c·2cols + j] = Σ dy·xhat` and
 * `partial[c·2cols + cols + j] = Σ dy` over the chunk's rows. Uniforms {rows, cols, rowsPer, chunks};
 * bindings dy, x, mean, rstd, partial.
 */
export const LAYERNORM_BACKWARD_PARAMS: KernelSpec = {
  key: "ln_bwd_params",
  bindings: ["uniform", "read", "read", "read", "read", "rw"],
  code: `struct P { rows: u32, cols: u32, rows_per: u32, chunks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
${LINEAR_MAIN}
  if (i >= p.cols * p.chunks) { return; }
  let j = i % p.cols;
  let c = i / p.cols;
  let r0 = c * p.rows_per;
  let r1 = min(r0 + p.rows_per, p.rows);
  var sg = 0.0;
  var sb = 0.0;
  for (var r = r0; r < r1; r++) {
    let d = dy[r * p.cols + j];
    sg = fma(d, (x[r * p.cols + j] - mean_in[r]) * rstd_in[r], sg);
    sb += d;
  }
  part[c * 2u * p.cols + j] = sg;
  part[c * 2u * p.cols + p.cols + j] = sb;
}
`,
};
