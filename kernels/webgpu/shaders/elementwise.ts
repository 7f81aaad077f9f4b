// WGSL for the element-parallel ops: residual add, in-place bias add, GELU (tanh form) forward and backward, and
// a buffer copy used when source and destination are views of one buffer (copyBufferToBuffer cannot do that).
// Each comes in a vec4 variant (one invocation per 4 elements, used when the sizes divide by 4: on llvmpipe the
// per-invocation overhead dominates these kernels, so it runs ~2.5x faster) and a scalar one.

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/** `vec4<f32>` or `f32`. */
function ty(vec4: boolean): string {
  return vec4 ? "vec4<f32>" : "f32";
}

/** `out[i] = a[i] + b[i]` for `i < n` units. Uniforms {n}; bindings a, b, out. */
export function addKernel(vec4: boolean): KernelSpec {
  return {
    key: `add${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "read", "rw"],
    code: `struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<${ty(vec4)}>;
@group(0) @binding(2) var<storage, read> b: array<${ty(vec4)}>;
@group(0) @binding(3) var<storage, read_write> o: array<${ty(vec4)}>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  o[i] = a[i] + b[i];
}
`,
  };
}

/** `dst[i] = src[i]` for `i < n` units. Uniforms {n}; bindings src, dst. */
export function copyKernel(vec4: boolean): KernelSpec {
  return {
    key: `copy${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "rw"],
    code: `struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> s: array<${ty(vec4)}>;
@group(0) @binding(2) var<storage, read_write> d: array<${ty(vec4)}>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  d[i] = s[i];
}
`,
  };
}

/** In place `x[r, c] += bias[c]` over `n` units, `cols` units per row. Uniforms {n, cols}; bindings bias, x. */
export function addBiasKernel(vec4: boolean): KernelSpec {
  return {
    key: `add_bias${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "rw"],
    code: `struct P { n: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> bias: array<${ty(vec4)}>;
@group(0) @binding(2) var<storage, read_write> x: array<${ty(vec4)}>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  x[i] = x[i] + bias[i % p.cols];
}
`,
  };
}

// tanh(u) with the argument clamped: tanh(±10) rounds to ±1 in f32, and the clamp keeps exp-based
// implementations from producing inf/inf = NaN for large |u|.
function geluCommon(vec4: boolean): string {
  return `alias T = ${ty(vec4)};
const GELU_C: f32 = 0.7978845608028654;
const GELU_A: f32 = 0.044715;
fn tanh_c(u: T) -> T { return tanh(clamp(u, T(-10.0), T(10.0))); }`;
}

/** `out = 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))` over `n` units. Uniforms {n}; bindings x, out. */
export function geluForwardKernel(vec4: boolean): KernelSpec {
  return {
    key: `gelu_fwd${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "rw"],
    code: `struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
${geluCommon(vec4)}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> o: array<T>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  let v = x[i];
  let t = tanh_c(GELU_C * (v + GELU_A * v * v * v));
  o[i] = 0.5 * v * (1.0 + t);
}
`,
  };
}

/** `dx = dy·gelu'(x)` over `n` units. Uniforms {n}; bindings x, dy, dx. */
export function geluBackwardKernel(vec4: boolean): KernelSpec {
  return {
    key: `gelu_bwd${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "read", "rw"],
    code: `struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
${geluCommon(vec4)}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read_write> dx: array<T>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  let v = x[i];
  let t = tanh_c(GELU_C * (v + GELU_A * v * v * v));
  let du = GELU_C * (1.0 + 3.0 * GELU_A * v * v);
  dx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
}
`,
  };
}
