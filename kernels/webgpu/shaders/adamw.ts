// WGSL for the AdamW update (decoupled weight decay, PyTorch semantics) with a gradient scale for clipping;
// bias corrections are computed on the host in float64 and passed in.

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/**
 * In place over n elements: `g = grad·gradScale; p *= 1 - lr·wd; m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
 * p -= lr·(m/bc1)/(sqrt(v/bc2) + eps)`, over n units (vec4 or scalar). Uniforms {n, lr, beta1, beta2, eps,
 * decay (= lr·wd), bc1, bc2, gradScale}; bindings grad, param, m, v.
 */
export function adamwKernel(vec4: boolean): KernelSpec {
  const T = vec4 ? "vec4<f32>" : "f32";
  return {
    key: `adamw${vec4 ? "_v4" : ""}`,
    bindings: ["uniform", "read", "rw", "rw", "rw"],
    code: `struct P { n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, decay: f32, bc1: f32, bc2: f32, gscale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> grad: array<${T}>;
@group(0) @binding(2) var<storage, read_write> param: array<${T}>;
@group(0) @binding(3) var<storage, read_write> m1: array<${T}>;
@group(0) @binding(4) var<storage, read_write> m2: array<${T}>;
${LINEAR_MAIN}
  if (i >= p.n) { return; }
  let g = grad[i] * p.gscale;
  let m = p.beta1 * m1[i] + (1.0 - p.beta1) * g;
  let v = p.beta2 * m2[i] + (1.0 - p.beta2) * g * g;
  m1[i] = m;
  m2[i] = v;
  let w = param[i] * (1.0 - p.decay);
  param[i] = w - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}
`,
  };
}
