// WGSL for the embeddings: the forward gather (token row + position row) and a deterministic, atomic-free
// scatter-add backward over a host-built CSR index (each used table row lists the token rows that read it, in
// ascending order, so every output element is summed by one invocation in a fixed order).

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/** `out[r, c] = wte[tokens[r], c] + wpe[positions[r], c]`. Uniforms {rows, hidden}; bindings tokens, positions, wte, wpe, out. */
export const EMBEDDING_FORWARD: KernelSpec = {
  key: "emb_fwd",
  bindings: ["uniform", "read", "read", "read", "read", "rw"],
  code: `struct P { rows: u32, hidden: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> tok: array<i32>;
@group(0) @binding(2) var<storage, read> pos: array<i32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
${LINEAR_MAIN}
  if (i >= p.rows * p.hidden) { return; }
  let r = i / p.hidden;
  let c = i % p.hidden;
  o[i] = wte[u32(tok[r]) * p.hidden + c] + wpe[u32(pos[r]) * p.hidden + c];
}
`,
};

/**
 * Scatter-add backward through a CSR index `idx = [ids(U) | start(U+1) | rows(R)]`: invocation (u, c) adds
 * `Σ_{k in start[u]..start[u+1]} dout[rows[k], c]` to `table[ids[u], c]`.
 * Uniforms {unique, hidden}; bindings idx, dout, table.
 */
export const EMBEDDING_BACKWARD: KernelSpec = {
  key: "emb_bwd",
  bindings: ["uniform", "read", "read", "rw"],
  code: `struct P { unique: u32, hidden: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> table: array<f32>;
${LINEAR_MAIN}
  if (i >= p.unique * p.hidden) { return; }
  let u = i / p.hidden;
  let c = i % p.hidden;
  let k0 = u32(idx[p.unique + u]);
  let k1 = u32(idx[p.unique + u + 1u]);
  let rows = 2u * p.unique + 1u;
  var s = 0.0;
  for (var k = k0; k < k1; k++) { s += dout[u32(idx[rows + k]) * p.hidden + c]; }
  let o = u32(idx[u]) * p.hidden + c;
  table[o] = table[o] + s;
}
`,
};
