// Least-squares fitting for the profile: non-negative weighted linear least squares over a few features (exact,
// by trying every subset of active features), goodness of fit (R², relative errors), and robust summaries.

/** A fitted linear model `y ≈ Σ coef[j]·x[j]`. */
export interface LinearFit {
  coef: number[];
  /** 1 - SS_res/SS_tot over the fitted points (unweighted). */
  r2: number;
  /** max and median of |pred - y| / y over the fitted points. */
  maxRelErr: number;
  medianRelErr: number;
}

/** Solves the square system `a·x = b` by Gaussian elimination with partial pivoting; undefined when singular. */
export function solve(a: number[][], b: number[]): number[] | undefined {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    const scale = Math.max(...m.map((row) => Math.abs(row[c])), 1e-300);
    if (Math.abs(m[p][c]) <= 1e-12 * scale) return undefined;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c] / m[c][c];
      for (let k = c; k <= n; k++) m[r][k] -= f * m[c][k];
    }
  }
  return m.map((row, i) => row[n] / row[i]);
}

/** Unconstrained weighted least squares on the feature columns `cols`; coefficients of the other features are 0. */
function wls(x: number[][], y: number[], w: number[], cols: number[]): number[] | undefined {
  const k = cols.length;
  // Column scaling keeps the normal equations well conditioned when features differ by orders of magnitude.
  const scale = cols.map((j) => Math.max(1e-300, Math.sqrt(x.reduce((s, row, i) => s + w[i] * row[j] * row[j], 0))));
  const ata = Array.from({ length: k }, () => new Array(k).fill(0));
  const aty = new Array(k).fill(0);
  for (let i = 0; i < y.length; i++) {
    for (let p = 0; p < k; p++) {
      const xp = x[i][cols[p]] / scale[p];
      aty[p] += w[i] * xp * y[i];
      for (let q = 0; q < k; q++) ata[p][q] += w[i] * xp * (x[i][cols[q]] / scale[q]);
    }
  }
  const sol = solve(ata, aty);
  if (!sol) return undefined;
  const coef = new Array(x[0].length).fill(0);
  cols.forEach((j, p) => (coef[j] = sol[p] / scale[p]));
  return coef;
}

/** Σ w·(x·coef - y)². */
function sse(x: number[][], y: number[], w: number[], coef: number[]): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) {
    const r = predict(x[i], coef) - y[i];
    s += w[i] * r * r;
  }
  return s;
}

/** `x·coef`. */
export function predict(x: number[], coef: number[]): number {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += x[j] * coef[j];
  return s;
}

/**
 * Non-negative weighted least squares: the coefficients ≥ 0 minimising Σ w_i (x_i·c - y_i)². Exact for a handful of
 * features (every subset of free features is solved; the best feasible one wins). `relative` weights each point by
 * 1/y², i.e. minimises relative errors, which suits timings spanning orders of magnitude.
 */
export function nnls(x: number[][], y: number[], opts: { relative?: boolean } = {}): LinearFit {
  if (x.length === 0 || x.length !== y.length) throw new Error("nnls: needs as many rows as targets (at least one)");
  const k = x[0].length;
  if (k > 12) throw new Error("nnls: at most 12 features");
  const w = y.map((v) => (opts.relative ? 1 / Math.max(v * v, 1e-300) : 1));
  let best: number[] | undefined;
  let bestErr = Infinity;
  for (let mask = 1; mask < 1 << k; mask++) {
    const cols = [...Array(k).keys()].filter((j) => mask & (1 << j));
    if (cols.length > x.length) continue;
    const coef = wls(x, y, w, cols);
    if (!coef || coef.some((c) => c < 0 || !Number.isFinite(c))) continue;
    const e = sse(x, y, w, coef);
    if (e < bestErr) [best, bestErr] = [coef, e];
  }
  const coef = best ?? new Array(k).fill(0);
  return { coef, ...fitQuality(x.map((row) => predict(row, coef)), y) };
}

/** R² and relative errors of predictions against measurements. */
export function fitQuality(pred: number[], y: number[]): { r2: number; maxRelErr: number; medianRelErr: number } {
  const mean = y.reduce((a, b) => a + b, 0) / Math.max(1, y.length);
  let res = 0, tot = 0;
  for (let i = 0; i < y.length; i++) {
    res += (pred[i] - y[i]) ** 2;
    tot += (y[i] - mean) ** 2;
  }
  const rel = y.map((v, i) => Math.abs(pred[i] - v) / Math.max(Math.abs(v), 1e-12));
  return {
    r2: tot > 0 ? 1 - res / tot : (res === 0 ? 1 : 0),
    maxRelErr: rel.length ? Math.max(...rel) : 0,
    medianRelErr: median(rel),
  };
}

/** Median (0 for an empty list). */
export function median(v: readonly number[]): number {
  return quantile(v, 0.5);
}

/** Linear-interpolated quantile q in [0, 1] (0 for an empty list). */
export function quantile(v: readonly number[], q: number): number {
  if (v.length === 0) return 0;
  const s = [...v].sort((a, b) => a - b);
  const pos = (s.length - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Geometric mean of positive values (1 for an empty list). */
export function geomean(v: readonly number[]): number {
  if (v.length === 0) return 1;
  return Math.exp(v.reduce((a, b) => a + Math.log(b), 0) / v.length);
}
