// Launcher for the register-blocked matmul kernels: picks the vec4 or scalar variant, sizes the 2-D grid, splits
// C's rows into chunks when A or C would exceed the storage binding limit, and splits K (Aᵀ·B with a small output
// and a long K, i.e. weight gradients) into partial products summed in a fixed order, so that enough workgroups
// exist to keep every core busy while the result stays deterministic.

import type { BufferRange, GpuContext } from "../context.ts";
import { WG } from "../shaders/common.ts";
import { MATMUL_WG_X, MATMUL_WG_Y, matmulKernel, matmulVec4Ok } from "../shaders/matmul.ts";
import { SUM_PARTS } from "../shaders/reduce.ts";

/** Split K when the output has fewer workgroups than this (and K is long enough). */
const SPLIT_K_MIN_WORKGROUPS = 16;
/** K rows per split-K chunk: at least this many, and a multiple of 64 (keeps chunk offsets 256-byte aligned). */
const SPLIT_K_MIN_ROWS = 256;

/** Options of {@link encodeMatmul}. */
export interface MatmulOptions {
  /** A is stored [K, M] (use Aᵀ). */
  transA?: boolean;
  /** B is stored [N, K] (use Bᵀ). */
  transB?: boolean;
  /** C += alpha·op(A)·op(B) instead of C = alpha·op(A)·op(B). */
  accumulate?: boolean;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** Rows of C per invocation (default 8, the faster one on llvmpipe). */
  rows?: 4 | 8;
  /** Groups of 4 columns per invocation in the vec4 variant (default 2). */
  colGroups?: 1 | 2;
  /** Force the scalar variant (tests). */
  scalar?: boolean;
  /** Allow splitting K for small outputs (default true). */
  splitK?: boolean;
}

/** Records C[M,N] (+)= alpha·op(A)·op(B) with float32 row-major operands. */
export function encodeMatmul(
  ctx: GpuContext,
  a: BufferRange,
  b: BufferRange,
  c: BufferRange,
  m: number,
  n: number,
  k: number,
  opts: MatmulOptions = {},
): void {
  if (m === 0 || n === 0) return;
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const rows = opts.rows ?? 8;
  const vec4 = !opts.scalar && matmulVec4Ok(m, n, k, transA, transB) && aligned16(a, b, c);
  const colGroups = vec4 ? opts.colGroups ?? 2 : 1;
  const spec = matmulKernel({ transA, transB, vec4, rows, colGroups });
  const acc = opts.accumulate ? 1 : 0;
  const alpha = { f: opts.alpha ?? 1 };
  if (k === 0) {
    if (!acc) ctx.clear(c.buffer, c.offset ?? 0, m * n * 4);
    return;
  }
  // Rows per chunk: as many as fit the binding limit for A (when not transposed) and C, a multiple of 64 rows so
  // that chunk offsets stay 256-byte aligned.
  const rowBytes = Math.max(n, transA ? 0 : k) * 4;
  let chunk = m;
  if (rowBytes * m > ctx.maxBindingBytes) {
    if (transA) throw new Error(`matmul: Aᵀ with M=${m} K=${k} exceeds the storage binding limit`);
    chunk = Math.floor(ctx.maxBindingBytes / rowBytes / 64) * 64;
    if (chunk === 0) throw new Error(`matmul: one row of ${rowBytes} bytes exceeds the storage binding limit`);
  }
  const gx = Math.ceil(Math.ceil(n / (4 * colGroups)) / MATMUL_WG_X);
  const wgs = gx * Math.ceil(Math.ceil(m / rows) / MATMUL_WG_Y);
  if (transA && !transB && opts.splitK !== false && wgs < SPLIT_K_MIN_WORKGROUPS && k >= 2 * SPLIT_K_MIN_ROWS) {
    const want = Math.ceil(SPLIT_K_MIN_WORKGROUPS / wgs);
    const kChunk = Math.max(SPLIT_K_MIN_ROWS, Math.ceil(k / want / 64) * 64);
    const parts = Math.ceil(k / kChunk);
    const stride = Math.ceil((m * n) / 64) * 64; // elements; a 256-byte multiple
    if (parts > 1 && parts * stride * 4 <= ctx.maxBindingBytes && m * k * 4 <= ctx.maxBindingBytes) {
      const scratch = ctx.scratch(parts * stride * 4);
      for (let p = 0; p < parts; p++) {
        const k0 = p * kChunk, kc = Math.min(kChunk, k - k0);
        const part = { buffer: scratch.buffer, offset: (scratch.offset ?? 0) + p * stride * 4, size: m * n * 4 };
        ctx.dispatch(spec, [m, n, kc, 0, { f: 1 }], [
          sub(a, k0 * m * 4, kc * m * 4),
          sub(b, k0 * n * 4, kc * n * 4),
          part,
        ], [
          gx,
          Math.ceil(Math.ceil(m / rows) / MATMUL_WG_Y),
        ]);
      }
      ctx.dispatch(SUM_PARTS, [m * n, parts, stride, acc, alpha], [
        sized(scratch, parts * stride * 4),
        sized(c, m * n * 4),
      ], ctx.grid(Math.ceil((m * n) / WG)));
      return;
    }
  }
  for (let r0 = 0; r0 < m; r0 += chunk) {
    const mr = Math.min(chunk, m - r0);
    const aR = transA ? sized(a, k * m * 4) : sub(a, r0 * k * 4, mr * k * 4);
    const cR = sub(c, r0 * n * 4, mr * n * 4);
    const gy = Math.ceil(Math.ceil(mr / rows) / MATMUL_WG_Y);
    ctx.dispatch(spec, [mr, n, k, acc, alpha], [aR, sized(b, n * k * 4), cR], [gx, gy]);
  }
}

function aligned16(...rs: BufferRange[]): boolean {
  return rs.every((r) => (r.offset ?? 0) % 16 === 0);
}

function sized(r: BufferRange, bytes: number): BufferRange {
  return { buffer: r.buffer, offset: r.offset ?? 0, size: bytes };
}

function sub(r: BufferRange, offset: number, bytes: number): BufferRange {
  return { buffer: r.buffer, offset: (r.offset ?? 0) + offset, size: bytes };
}
