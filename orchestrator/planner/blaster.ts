// Sequence Blaster (paper §4.3, App. A): split a global batch into M micro-batches, sorted by length and cut
// into contiguous runs so the heaviest run is as light as possible (linear partition).

/**
 * Splits `items` (already in the desired order) into exactly `m` non-empty contiguous runs minimising the
 * largest run weight. Exact DP with binary search on the monotone split point: O(m·K·log K).
 * Returns the run boundaries as index ranges [start, end).
 */
export function linearPartition(weights: readonly number[], m: number): [number, number][] {
  const k = weights.length;
  if (m <= 0 || m > k) throw new RangeError(`cannot split ${k} items into ${m} non-empty runs`);
  const pre = new Float64Array(k + 1);
  for (let i = 0; i < k; i++) pre[i + 1] = pre[i] + weights[i];
  // dp[i][j]: best bottleneck splitting the first j items into i runs; arg[i][j]: start of the last run.
  let prev = new Float64Array(k + 1).fill(Infinity);
  prev[0] = 0;
  const arg: Int32Array[] = [];
  for (let i = 1; i <= m; i++) {
    const cur = new Float64Array(k + 1).fill(Infinity);
    const a = new Int32Array(k + 1);
    for (let j = i; j <= k - (m - i); j++) {
      // Last run is [t, j) with t in [i-1, j-1]; prev[t] grows with t, pre[j]-pre[t] shrinks: bisect the crossing.
      let lo = i - 1;
      let hi = j - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (prev[mid] >= pre[j] - pre[mid]) hi = mid;
        else lo = mid + 1;
      }
      let bestT = lo;
      let best = Math.max(prev[lo], pre[j] - pre[lo]);
      if (lo > i - 1) {
        const alt = Math.max(prev[lo - 1], pre[j] - pre[lo - 1]);
        if (alt <= best) [best, bestT] = [alt, lo - 1];
      }
      cur[j] = best;
      a[j] = bestT;
    }
    arg.push(a);
    prev = cur;
  }
  const runs: [number, number][] = [];
  let end = k;
  for (let i = m; i >= 1; i--) {
    const start = arg[i - 1][end];
    runs.unshift([start, end]);
    end = start;
  }
  return runs;
}

/** Largest run weight of a partition. */
export function bottleneck(weights: readonly number[], runs: readonly [number, number][]): number {
  let worst = 0;
  for (const [s, e] of runs) {
    let w = 0;
    for (let i = s; i < e; i++) w += weights[i];
    worst = Math.max(worst, w);
  }
  return worst;
}

/** Sequence indices sorted by descending length (ties by index, so the order is deterministic). */
export function sortedByLength(lengths: readonly number[], seqs: readonly number[]): number[] {
  return [...seqs].sort((a, b) => lengths[b] - lengths[a] || a - b);
}

/**
 * Chunks sequences into `m` micro-batches: sort by length, then linear-partition by `weight` (tokens for the
 * paper's memory balance; work for time balance).
 */
export function chunk(
  lengths: readonly number[],
  seqs: readonly number[],
  m: number,
  weight: (s: number) => number = (s) => s,
): number[][] {
  const order = sortedByLength(lengths, seqs);
  const runs = linearPartition(order.map((k) => weight(lengths[k])), m);
  return runs.map(([s, e]) => order.slice(s, e));
}

/**
 * Chunks sequences into `m` micro-batches by dealing them out longest first to the micro-batch with the least
 * weight so far (LPT). Each micro-batch then mixes long and short sequences, which relieves memory pressure
 * when long sequences would otherwise fill whole micro-batches and force wide, inter-node groups.
 */
export function dealChunks(
  lengths: readonly number[],
  seqs: readonly number[],
  m: number,
  weight: (s: number) => number,
): number[][] {
  const out: number[][] = Array.from({ length: m }, () => []);
  const load = new Float64Array(m);
  for (const k of sortedByLength(lengths, seqs)) {
    let best = 0;
    for (let i = 1; i < m; i++) if (load[i] < load[best]) best = i;
    out[best].push(k);
    load[best] += weight(lengths[k]);
  }
  return out.filter((c) => c.length > 0);
}
