// WGSL for causal attention over packed variable-length sequences in head-major layout [heads, S, headDim],
// specialised per head dimension (vec4 rows when it divides by 4) and register-blocked: each invocation owns R
// consecutive rows, so every key/value (or query) row it loads from memory is reused R times. Loops over the head
// dimension are unrolled into named variables: on llvmpipe a dynamically indexed private array becomes per-lane
// gathers and scatters, named values stay in registers or spill to plain vector stack slots. Rows of one block may
// belong to different sequences; a per-row mask keeps them apart. Per-token sequence bounds come from a host-built
// [start, end) table.
//   forward:  invocation per R query rows, online softmax over key blocks of 4, saving the log-sum-exp;
//   backward: (atomic-free, deterministic) invocation per R query rows for dq (also saving D_i = dout_i·out_i),
//             then invocation per R key rows for dk and dv, recomputing probabilities from the saved lse.

import type { KernelSpec } from "../context.ts";
import { LINEAR_MAIN } from "./common.ts";

/**
 * Rows per invocation for a head dimension: fewer for wide heads, whose per-row state (query and accumulator,
 * 2·headDim floats) would otherwise spill. Measured on llvmpipe: D=16 R=8 is 2-3x faster than R=4.
 */
export function attentionRowsPerThread(headDim: number): number {
  return headDim <= 16 ? 8 : headDim <= 32 ? 4 : headDim <= 64 ? 2 : 1;
}

function elem(headDim: number): { T: string; n: number; dot: string } {
  if (headDim % 4 === 0) return { T: "vec4<f32>", n: headDim / 4, dot: "dot(a, b)" };
  return { T: "f32", n: headDim, dot: "a * b" };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** `f(i)` for i < n, joined with `sep`. */
function each(n: number, f: (i: number) => string, sep = "\n"): string {
  return range(n).map(f).join(sep);
}

// Uniforms, the dot helper, and per-row indices `t{r}` (row clamped into range) and `ok{r}` (row < seq).
function prologue(headDim: number, R: number): string {
  const { T, dot } = elem(headDim);
  return `alias T = ${T};
struct P { heads: u32, seq: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
fn dt(a: T, b: T) -> f32 { return ${dot}; }
const R: u32 = ${R}u;`;
}

function rowSetup(R: number, N: number): string {
  return `  let nb = (p.seq + R - 1u) / R;
  if (i >= p.heads * nb) { return; }
  let h = i / nb;
  let r0 = (i % nb) * R;
  let hb = h * p.seq;
${
    each(R, (r) =>
      `  let ok${r} = r0 + ${r}u < p.seq;\n  let t${r} = min(r0 + ${r}u, p.seq - 1u);\n  let rb${r} = (hb + t${r}) * ${N}u;`)
  }`;
}

/** `a{e}·b{e}` summed over e < N. */
function dotSum(N: number, a: (e: number) => string, b: (e: number) => string): string {
  return each(N, (e) => `dt(${a(e)}, ${b(e)})`, " + ");
}

/**
 * Forward for one head dimension. Bindings: uniforms {heads, seq, scale}, q, k, v, bounds (i32 pairs per token),
 * out, lse. Dispatch `heads · ceil(seq / R)` invocations; R defaults to {@link attentionRowsPerThread} (the
 * backward kernels take the same R).
 */
export function attentionForwardKernel(headDim: number, R = attentionRowsPerThread(headDim)): KernelSpec {
  const N = elem(headDim).n;
  return {
    key: `attn_fwd_d${headDim}_r${R}`,
    bindings: ["uniform", "read", "read", "read", "read", "rw", "rw"],
    code: `${prologue(headDim, R)}
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read> bounds: array<i32>;
@group(0) @binding(5) var<storage, read_write> o: array<T>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
${LINEAR_MAIN}
${rowSetup(R, N)}
${
      each(R, (r) =>
        `  let st${r} = u32(bounds[2u * t${r}]);
${each(N, (e) => `  let q${r}_${e} = q[rb${r} + ${e}u] * p.scale;\n  var acc${r}_${e} = T(0.0);`)}
  var m${r} = -1.0e30;
  var l${r} = 0.0;`)
    }
  let jend = t${R - 1} + 1u;
  var j = st0;
  for (; j + 4u <= jend; j += 4u) {
${forwardBlock(R, N, 4)}
  }
  for (; j < jend; j++) {
${forwardBlock(R, N, 1)}
  }
${
      each(R, (r) =>
        `  if (ok${r}) {
    let inv = 1.0 / l${r};
${each(N, (e) => `    o[rb${r} + ${e}u] = acc${r}_${e} * inv;`)}
    lse[hb + t${r}] = m${r} + log(l${r});
  }`)
    }
}
`,
  };
}

// One online-softmax step over keys j .. j+B-1 for all R rows (masked per row to its own causal range).
function forwardBlock(R: number, N: number, B: number): string {
  const scores = each(B, (b) =>
    `    {
      let kb = (hb + j + ${b}u) * ${N}u;
${each(N, (e) => `      let k${e} = k[kb + ${e}u];`)}
${each(R, (r) => `      s${r}_${b} = ${dotSum(N, (e) => `q${r}_${e}`, (e) => `k${e}`)};`)}
    }`);
  const softmax = each(
    R,
    (r) =>
      `${
        each(B, (b) =>
          `    let in${r}_${b} = ok${r} && j + ${b}u >= st${r} && j + ${b}u <= t${r};
    s${r}_${b} = select(-1.0e30, s${r}_${b}, in${r}_${b});`)
      }
    let mx${r} = max(m${r}, ${range(B).slice(1).reduce((acc, b) => `max(${acc}, s${r}_${b})`, `s${r}_0`)});
    let c${r} = exp(m${r} - mx${r});
${each(B, (b) => `    let w${r}_${b} = select(0.0, exp(s${r}_${b} - mx${r}), in${r}_${b});`)}
    l${r} = l${r} * c${r} + ${each(B, (b) => `w${r}_${b}`, " + ")};
    m${r} = mx${r};
${each(N, (e) => `    acc${r}_${e} *= c${r};`)}`,
  );
  const values = each(B, (b) =>
    `    {
      let vb = (hb + j + ${b}u) * ${N}u;
${each(N, (e) => `      let v${e} = v[vb + ${e}u];`)}
${each(R, (r) => each(N, (e) => `      acc${r}_${e} += w${r}_${b} * v${e};`))}
    }`);
  return `${each(R, (r) => `    ${each(B, (b) => `var s${r}_${b} = 0.0;`, " ")}`)}
${scores}
${softmax}
${values}`;
}

/**
 * Backward dq (and D_i = dout_i·out_i, saved for the dk/dv pass), R query rows per invocation. Bindings: uniforms
 * {heads, seq, scale}, q, k, v, out, dout, lse, bounds, dq, dsum.
 */
export function attentionBackwardDqKernel(headDim: number, R = attentionRowsPerThread(headDim)): KernelSpec {
  const N = elem(headDim).n;
  return {
    key: `attn_bwd_dq_d${headDim}_r${R}`,
    bindings: ["uniform", "read", "read", "read", "read", "read", "read", "read", "rw", "rw"],
    code: `${prologue(headDim, R)}
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read> o: array<T>;
@group(0) @binding(5) var<storage, read> dout: array<T>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read> bounds: array<i32>;
@group(0) @binding(8) var<storage, read_write> dq: array<T>;
@group(0) @binding(9) var<storage, read_write> dsum: array<f32>;
${LINEAR_MAIN}
${rowSetup(R, N)}
${
      each(R, (r) =>
        `  let st${r} = u32(bounds[2u * t${r}]);
${
          each(N, (e) =>
            `  let q${r}_${e} = q[rb${r} + ${e}u] * p.scale;\n  let do${r}_${e} = dout[rb${r} + ${e}u];\n  var acc${r}_${e} = T(0.0);`)
        }
  let di${r} = ${
          dotSum(N, (e) => `do${r}_${e}`, (e) =>
            `o[rb${r} + ${e}u]`)
        };
  if (ok${r}) { dsum[hb + t${r}] = di${r}; }
  let li${r} = lse[hb + t${r}];`)
    }
  for (var j = st0; j <= t${R - 1}; j++) {
    let kb = (hb + j) * ${N}u;
${each(N, (e) => `    let k${e} = k[kb + ${e}u];`)}
${each(N, (e) => `    let v${e} = v[kb + ${e}u];`)}
${
      each(R, (r) =>
        `    let s${r} = ${dotSum(N, (e) => `q${r}_${e}`, (e) => `k${e}`)};
    let dp${r} = ${dotSum(N, (e) => `do${r}_${e}`, (e) => `v${e}`)};
    let ds${r} = select(0.0, exp(s${r} - li${r}) * (dp${r} - di${r}), ok${r} && j >= st${r} && j <= t${r});
${each(N, (e) => `    acc${r}_${e} += ds${r} * k${e};`)}`)
    }
  }
${
      each(R, (r) =>
        `  if (ok${r}) {
${each(N, (e) => `    dq[rb${r} + ${e}u] = acc${r}_${e} * p.scale;`)}
  }`)
    }
}
`,
  };
}

/**
 * Backward dk and dv, R key rows per invocation, looping over the query rows of their sequences from the last one
 * down (so neighbouring invocations read the same rows). Bindings: uniforms {heads, seq, scale}, q, k, v, dout,
 * lse, dsum, bounds, dk, dv.
 */
export function attentionBackwardDkvKernel(headDim: number, R = attentionRowsPerThread(headDim)): KernelSpec {
  const N = elem(headDim).n;
  return {
    key: `attn_bwd_dkv_d${headDim}_r${R}`,
    bindings: ["uniform", "read", "read", "read", "read", "read", "read", "read", "rw", "rw"],
    code: `${prologue(headDim, R)}
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read> dout: array<T>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dsum: array<f32>;
@group(0) @binding(7) var<storage, read> bounds: array<i32>;
@group(0) @binding(8) var<storage, read_write> dk: array<T>;
@group(0) @binding(9) var<storage, read_write> dv: array<T>;
${LINEAR_MAIN}
${rowSetup(R, N)}
${
      each(R, (r) =>
        `  let en${r} = u32(bounds[2u * t${r} + 1u]);
${
          each(N, (e) =>
            `  let k${r}_${e} = k[rb${r} + ${e}u] * p.scale;\n  let v${r}_${e} = v[rb${r} + ${e}u];\n  var ak${r}_${e} = T(0.0);\n  var av${r}_${e} = T(0.0);`)
        }`)
    }
  for (var ii = en${R - 1}; ii > t0; ii--) {
    let i = ii - 1u;
    let qb = (hb + i) * ${N}u;
${each(N, (e) => `    let q${e} = q[qb + ${e}u];`)}
${each(N, (e) => `    let d${e} = dout[qb + ${e}u];`)}
    let li = lse[hb + i];
    let di = dsum[hb + i];
${
      each(R, (r) =>
        `    let in${r} = ok${r} && i >= t${r} && i < en${r};
    let s${r} = ${dotSum(N, (e) => `q${e}`, (e) => `k${r}_${e}`)};
    let dp${r} = ${dotSum(N, (e) => `d${e}`, (e) => `v${r}_${e}`)};
    let pr${r} = select(0.0, exp(s${r} - li), in${r});
    let ds${r} = pr${r} * (dp${r} - di);
${each(N, (e) => `    av${r}_${e} += pr${r} * d${e};\n    ak${r}_${e} += ds${r} * q${e};`)}`)
    }
  }
${
      each(R, (r) =>
        `  if (ok${r}) {
${each(N, (e) => `    dk[rb${r} + ${e}u] = ak${r}_${e} * p.scale;\n    dv[rb${r} + ${e}u] = av${r}_${e};`)}
  }`)
    }
}
`,
  };
}
