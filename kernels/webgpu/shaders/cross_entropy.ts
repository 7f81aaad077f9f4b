// WGSL for cross-entropy over logits [rows, vocab] with int targets (-1 = ignored row): a per-row pass computing
// the log-sum-exp (and the loss), and an element-parallel gradient `scale·(softmax - onehot)` that reuses it.

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/**
 * Per row: `lse[r] = logsumexp(logits[r, :])` (max-shifted) and `loss[r] = lse[r] - logits[r, target]`, or 0 for an
 * ignored row. Uniforms {rows, vocab}; bindings logits, targets, lse, losses.
 */
export const CROSS_ENTROPY_LSE: KernelSpec = {
  key: "ce_lse",
  bindings: ["uniform", "read", "read", "rw", "rw"],
  code: `struct P { rows: u32, vocab: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;
${LINEAR_MAIN}
  if (i >= p.rows) { return; }
  let base = i * p.vocab;
  var mx = logits[base];
  for (var c = 1u; c < p.vocab; c++) { mx = max(mx, logits[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.vocab; c++) { s += exp(logits[base + c] - mx); }
  let l = mx + log(s);
  lse[i] = l;
  let t = targets[i];
  if (t < 0) { losses[i] = 0.0; } else { losses[i] = l - logits[base + u32(t)]; }
}
`,
};

/**
 * `dlogits[r, c] = scale·(exp(logits[r, c] - lse[r]) - [c == target])`, 0 for ignored rows.
 * Uniforms {rows, vocab, scale}; bindings logits, targets, lse, dlogits.
 */
export const CROSS_ENTROPY_GRAD: KernelSpec = {
  key: "ce_grad",
  bindings: ["uniform", "read", "read", "read", "rw"],
  code: `struct P { rows: u32, vocab: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> dl: array<f32>;
${LINEAR_MAIN}
  if (i >= p.rows * p.vocab) { return; }
  let r = i / p.vocab;
  let c = i % p.vocab;
  let t = targets[r];
  if (t < 0) { dl[i] = 0.0; return; }
  var g = exp(logits[i] - lse[r]);
  if (u32(t) == c) { g -= 1.0; }
  dl[i] = p.scale * g;
}
`,
};
