// CPU matrix multiply for the reference backend: C (+)= op(A)·op(B) with optional transposes. One strided kernel
// serves every transpose case: 4x4 register blocks accumulated in float64 over k-chunks of 256 (so the A and B
// panels stay in cache), partial sums kept in a float64 buffer and rounded once per output element.

/** A float buffer the CPU kernels run on (float32 normally, float64 for gradient checks). */
export type FArray = Float32Array | Float64Array;

/** Depth of one k-chunk. */
const KC = 256;

let scratch = new Float64Array(0);
function scratchOf(n: number): Float64Array {
  if (scratch.length < n) scratch = new Float64Array(Math.max(n, scratch.length * 2));
  return scratch;
}

/**
 * `C[m, n] (+)= op(A)[m, k] · op(B)[k, n]`, A stored `[m, k]` (or `[k, m]` when `transA`), B stored `[k, n]`
 * (or `[n, k]` when `transB`). Accumulates in float64 and rounds once per output element.
 */
export function matmul(
  a: FArray,
  b: FArray,
  c: FArray,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  accumulate: boolean,
): void {
  // Element (i, p) of op(A) is a[i·ars + p·aps]; element (p, j) of op(B) is b[p·bps + j·bjs].
  const ars = transA ? 1 : k, aps = transA ? m : 1;
  const bps = transB ? 1 : n, bjs = transB ? k : 1;
  const mn = m * n;
  const s = scratchOf(mn);
  if (accumulate) { for (let x = 0; x < mn; x++) s[x] = c[x]; }
  else s.fill(0, 0, mn);
  const m4 = m - (m % 4), n4 = n - (n % 4);
  for (let p0 = 0; p0 < k; p0 += KC) {
    const p1 = Math.min(k, p0 + KC);
    for (let i = 0; i < m4; i += 4) {
      block4x4Row(a, b, s, i, n, n4, p0, p1, ars, aps, bps, bjs);
      for (let j = n4; j < n; j++) {
        for (let r = 0; r < 4; r++) s[(i + r) * n + j] += dot(a, b, (i + r) * ars, j * bjs, p0, p1, aps, bps);
      }
    }
    for (let i = m4; i < m; i++) {
      for (let j = 0; j < n; j++) s[i * n + j] += dot(a, b, i * ars, j * bjs, p0, p1, aps, bps);
    }
  }
  for (let x = 0; x < mn; x++) c[x] = s[x];
}

function dot(a: FArray, b: FArray, ai: number, bj: number, p0: number, p1: number, aps: number, bps: number): number {
  let acc = 0;
  let pa = ai + p0 * aps, pb = bj + p0 * bps;
  for (let p = p0; p < p1; p++) {
    acc += a[pa] * b[pb];
    pa += aps;
    pb += bps;
  }
  return acc;
}

// Rows i..i+3, columns 0..n4 in blocks of 4, depth p0..p1: 16 float64 accumulators in locals.
function block4x4Row(
  a: FArray,
  b: FArray,
  s: Float64Array,
  i: number,
  n: number,
  n4: number,
  p0: number,
  p1: number,
  ars: number,
  aps: number,
  bps: number,
  bjs: number,
): void {
  const ia = i * ars + p0 * aps;
  const a1o = ars, a2o = 2 * ars, a3o = 3 * ars, b1o = bjs, b2o = 2 * bjs, b3o = 3 * bjs;
  for (let j = 0; j < n4; j += 4) {
    let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
    let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
    let pa = ia, pb = p0 * bps + j * bjs;
    for (let p = p0; p < p1; p++) {
      const a0 = a[pa], a1 = a[pa + a1o], a2 = a[pa + a2o], a3 = a[pa + a3o];
      const b0 = b[pb], b1 = b[pb + b1o], b2 = b[pb + b2o], b3 = b[pb + b3o];
      c00 += a0 * b0;
      c01 += a0 * b1;
      c02 += a0 * b2;
      c03 += a0 * b3;
      c10 += a1 * b0;
      c11 += a1 * b1;
      c12 += a1 * b2;
      c13 += a1 * b3;
      c20 += a2 * b0;
      c21 += a2 * b1;
      c22 += a2 * b2;
      c23 += a2 * b3;
      c30 += a3 * b0;
      c31 += a3 * b1;
      c32 += a3 * b2;
      c33 += a3 * b3;
      pa += aps;
      pb += bps;
    }
    let o = i * n + j;
    s[o] += c00, s[o + 1] += c01, s[o + 2] += c02, s[o + 3] += c03;
    o += n;
    s[o] += c10, s[o + 1] += c11, s[o + 2] += c12, s[o + 3] += c13;
    o += n;
    s[o] += c20, s[o + 1] += c21, s[o + 2] += c22, s[o + 3] += c23;
    o += n;
    s[o] += c30, s[o + 1] += c31, s[o + 2] += c32, s[o + 3] += c33;
  }
}
