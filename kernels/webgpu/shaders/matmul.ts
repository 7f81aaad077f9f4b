// WGSL for register-blocked matrix multiply C (+)= op(A)·op(B) with op = identity or transpose. Each invocation
// computes a ROWS×4 block of C in registers; the vec4 variant loads A and B as vec4 along their contiguous axes
// (no workgroup memory, no barriers: on llvmpipe that is ~5x faster than naive and faster than shared tiling).

import type { KernelSpec } from "../context.ts";

/** Workgroup shape (invocations) of the matmul kernels: x over column blocks, y over row blocks. */
export const MATMUL_WG_X = 8;
/** Workgroup height in invocations. */
export const MATMUL_WG_Y = 8;

/** Variant selector for {@link matmulKernel}. */
export interface MatmulVariant {
  /** A is stored [K, M] and used transposed. */
  transA: boolean;
  /** B is stored [N, K] and used transposed. */
  transB: boolean;
  /** Use vec4 loads/stores (requires the contiguous axes of A, B and C to be multiples of 4). */
  vec4: boolean;
  /** Rows of C per invocation (4 or 8). */
  rows: 4 | 8;
  /** Groups of 4 columns of C per invocation in the vec4 variant (1 or 2); the scalar variant always uses 1. */
  colGroups: 1 | 2;
}

/** Whether the vec4 variant applies to shapes (M, N, K) with the given transposes. */
export function matmulVec4Ok(m: number, n: number, k: number, transA: boolean, transB: boolean): boolean {
  if (n % 4 !== 0) return false; // C rows and (unless transB) B rows are contiguous over N
  if (transA ? m % 4 !== 0 : k % 4 !== 0) return false;
  if (transB && k % 4 !== 0) return false;
  return true;
}

const UNIFORMS = `struct P { m: u32, n: u32, k: u32, acc: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;`;

/** Builds the kernel for one variant. Bindings: uniforms {m,n,k,acc,alpha}, A, B, C (C read-write). */
export function matmulKernel(v: MatmulVariant): KernelSpec {
  const key = `matmul_${v.transA ? "t" : "n"}${v.transB ? "t" : "n"}_${v.vec4 ? `v4c${v.colGroups}` : "s"}_r${v.rows}`;
  const code = v.vec4 ? vec4Source(v) : scalarSource(v);
  return { key, code, bindings: ["uniform", "read", "read", "rw"] };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function vec4Source(v: MatmulVariant): string {
  const R = v.rows, G = v.colGroups;
  const rs = range(R), gs = range(G);
  const acc = (i: number, g: number) => `c${i}_${g}`;
  const decl = rs.map((i) => gs.map((g) => `  var ${acc(i, g)} = vec4<f32>(0.0);`).join("\n")).join("\n");
  // Column-group indices of this invocation, clamped for loads (stores are guarded).
  const cols = gs.map((g) => `  let cg${g} = min(col4 * ${G}u + ${g}u, n4o - 1u);`).join("\n");
  let body: string;
  if (!v.transA && !v.transB) {
    // A [M,K] rows as vec4 over k; B [K,N] rows as vec4 over n.
    body = `  let k4n = p.k / 4u;
${rs.map((i) => `  let ar${i} = min(row0 + ${i}u, p.m - 1u) * k4n;`).join("\n")}
  for (var k4 = 0u; k4 < k4n; k4++) {
    let kb = k4 * 4u * n4o;
${gs.map((g) => range(4).map((r) => `    let b${r}_${g} = B[kb + ${r}u * n4o + cg${g}];`).join("\n")).join("\n")}
${
      rs.map((i) =>
        `    let a${i} = A[ar${i} + k4];
${
          gs.map((g) =>
            `    ${
              acc(i, g)
            } = fma(vec4<f32>(a${i}.w), b3_${g}, fma(vec4<f32>(a${i}.z), b2_${g}, fma(vec4<f32>(a${i}.y), b1_${g}, fma(vec4<f32>(a${i}.x), b0_${g}, ${
              acc(i, g)
            }))));`
          ).join("\n")
        }`
      ).join("\n")
    }
  }`;
  } else if (v.transA && !v.transB) {
    // A [K,M] rows as vec4 over m (R/4 vec4 per k); B [K,N] rows as vec4 over n: outer products.
    const nv = R / 4;
    body = `  let m4 = p.m / 4u;
  let mr = row0 / 4u;
  for (var k = 0u; k < p.k; k++) {
${gs.map((g) => `    let b${g} = B[k * n4o + cg${g}];`).join("\n")}
${range(nv).map((j) => `    let a${j} = A[k * m4 + min(mr + ${j}u, m4 - 1u)];`).join("\n")}
${
      rs.map((i) =>
        gs.map((g) => `    ${acc(i, g)} = fma(vec4<f32>(a${Math.floor(i / 4)}[${i % 4}]), b${g}, ${acc(i, g)});`).join(
          "\n",
        )
      )
        .join("\n")
    }
  }`;
  } else if (!v.transA && v.transB) {
    // A [M,K] and B [N,K] rows as vec4 over k: dot products.
    body = `  let k4n = p.k / 4u;
${rs.map((i) => `  let ar${i} = min(row0 + ${i}u, p.m - 1u) * k4n;`).join("\n")}
${
      gs.map((g) => range(4).map((r) => `  let br${r}_${g} = min(cg${g} * 4u + ${r}u, p.n - 1u) * k4n;`).join("\n"))
        .join("\n")
    }
  for (var k4 = 0u; k4 < k4n; k4++) {
${gs.map((g) => range(4).map((r) => `    let b${r}_${g} = B[br${r}_${g} + k4];`).join("\n")).join("\n")}
${
      rs.map((i) =>
        `    let a${i} = A[ar${i} + k4];
${
          gs.map((g) =>
            `    ${
              acc(i, g)
            } += vec4<f32>(dot(a${i}, b0_${g}), dot(a${i}, b1_${g}), dot(a${i}, b2_${g}), dot(a${i}, b3_${g}));`
          ).join("\n")
        }`
      ).join("\n")
    }
  }`;
  } else {
    // A [K,M] rows as vec4 over m; B [N,K]: gather 4 scalars per k and column group.
    const nv = R / 4;
    body = `  let m4 = p.m / 4u;
  let mr = row0 / 4u;
  for (var k = 0u; k < p.k; k++) {
${
      gs.map((g) =>
        `    let b${g} = vec4<f32>(${
          range(4).map((r) => `B[min(cg${g} * 4u + ${r}u, p.n - 1u) * p.k + k]`).join(", ")
        });`
      ).join("\n")
    }
${range(nv).map((j) => `    let a${j} = A[k * m4 + min(mr + ${j}u, m4 - 1u)];`).join("\n")}
${
      rs.map((i) =>
        gs.map((g) => `    ${acc(i, g)} = fma(vec4<f32>(a${Math.floor(i / 4)}[${i % 4}]), b${g}, ${acc(i, g)});`).join(
          "\n",
        )
      )
        .join("\n")
    }
  }`;
  }
  const bType = v.transA && v.transB ? "array<f32>" : "array<vec4<f32>>";
  const store = rs.map((i) =>
    gs.map((g) =>
      `  if (row0 + ${i}u < p.m && col4 * ${G}u + ${g}u < n4o) {
    let o = (row0 + ${i}u) * n4o + col4 * ${G}u + ${g}u;
    if (p.acc != 0u) { C[o] = C[o] + p.alpha * ${acc(i, g)}; } else { C[o] = p.alpha * ${acc(i, g)}; }
  }`
    ).join("\n")
  ).join("\n");
  return `${UNIFORMS}
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: ${bType};
@group(0) @binding(3) var<storage, read_write> C: array<vec4<f32>>;

@compute @workgroup_size(${MATMUL_WG_X}, ${MATMUL_WG_Y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col4 = gid.x;
  let row0 = gid.y * ${R}u;
  let n4o = p.n / 4u;
  if (col4 * ${G}u >= n4o || row0 >= p.m) { return; }
${cols}
${decl}
${body}
${store}
}
`;
}

function scalarSource(v: MatmulVariant): string {
  const R = v.rows;
  const rs = range(R);
  const aIdx = v.transA ? "k * p.m + r" : "r * p.k + k";
  const bIdx = v.transB ? "c * p.k + k" : "k * p.n + c";
  return `${UNIFORMS}
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

fn la(r: u32, k: u32) -> f32 { return A[${aIdx}]; }
fn lb(k: u32, c: u32) -> f32 { return B[${bIdx}]; }

@compute @workgroup_size(${MATMUL_WG_X}, ${MATMUL_WG_Y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col0 = gid.x * 4u;
  let row0 = gid.y * ${R}u;
  if (col0 >= p.n || row0 >= p.m) { return; }
  let cl = vec4<u32>(min(col0, p.n - 1u), min(col0 + 1u, p.n - 1u), min(col0 + 2u, p.n - 1u), min(col0 + 3u, p.n - 1u));
${rs.map((i) => `  var c${i} = vec4<f32>(0.0);\n  let r${i} = min(row0 + ${i}u, p.m - 1u);`).join("\n")}
  for (var k = 0u; k < p.k; k++) {
    let b = vec4<f32>(lb(k, cl.x), lb(k, cl.y), lb(k, cl.z), lb(k, cl.w));
${rs.map((i) => `    c${i} = fma(vec4<f32>(la(r${i}, k)), b, c${i});`).join("\n")}
  }
${
    rs.map((i) =>
      `  if (row0 + ${i}u < p.m) {
    for (var j = 0u; j < 4u; j++) {
      if (col0 + j < p.n) {
        let o = (row0 + ${i}u) * p.n + col0 + j;
        if (p.acc != 0u) { C[o] = C[o] + p.alpha * c${i}[j]; } else { C[o] = p.alpha * c${i}[j]; }
      }
    }
  }`
    ).join("\n")
  }
}
`;
}
