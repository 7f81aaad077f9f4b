// Sequence bucketing for the MILP (paper §3.3, eq. 15-16; reference `bucketing_seqs` / `bucket_seqs`): sort the
// lengths, cut them into Q contiguous buckets minimising the total round-up error Σ (bound − s) by DP, each
// bucket represented by its largest length. The adaptive rule raises Q until the rounding error uses at most
// half of the micro-batch's spare memory.

/** One bucket: its upper bound (its longest member) and the sequences it holds (indices, longest first). */
export interface Bucket {
  bound: number;
  seqs: number[];
}

/** The default starting bucket count of the paper. */
export const DEFAULT_BUCKETS = 16;

/** Distinct lengths ascending with their multiplicities and the member indices of each. */
interface Distinct {
  values: number[];
  counts: number[];
  members: number[][];
}

function distinctLengths(lengths: readonly number[], seqs: readonly number[]): Distinct {
  const sorted = [...seqs].sort((a, b) => lengths[a] - lengths[b] || a - b);
  const values: number[] = [];
  const counts: number[] = [];
  const members: number[][] = [];
  for (const k of sorted) {
    const s = lengths[k];
    if (values.length > 0 && values[values.length - 1] === s) {
      counts[counts.length - 1]++;
      members[members.length - 1].push(k);
    } else {
      values.push(s);
      counts.push(1);
      members.push([k]);
    }
  }
  return { values, counts, members };
}

/**
 * The bucketing DP over distinct values (with multiplicities), one layer per bucket count. Layer q holds
 * err[q][j] = least round-up error of the first j distinct values in exactly q buckets and the argmin start
 * of the last bucket. `layers(q)` extends the table lazily so the adaptive rule pays O(Q·D²) in total.
 */
class BucketDp {
  readonly distinct: number;
  private readonly pre: Float64Array;
  private readonly cnt: Float64Array;
  readonly err: Float64Array[] = [];
  readonly arg: Int32Array[] = [];

  constructor(private readonly d: Distinct) {
    const n = d.values.length;
    this.distinct = n;
    this.pre = new Float64Array(n + 1);
    this.cnt = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) {
      this.pre[i + 1] = this.pre[i] + d.values[i] * d.counts[i];
      this.cnt[i + 1] = this.cnt[i] + d.counts[i];
    }
    const e0 = new Float64Array(n + 1).fill(Infinity);
    e0[0] = 0;
    this.err.push(e0);
    this.arg.push(new Int32Array(n + 1));
  }

  /** Round-up error of one bucket holding distinct values j..k-1 (bound values[k-1]). */
  private cost(j: number, k: number): number {
    return this.d.values[k - 1] * (this.cnt[k] - this.cnt[j]) - (this.pre[k] - this.pre[j]);
  }

  /** Ensures layers 0..q exist; returns the least error of all values in exactly q buckets. */
  layer(q: number): number {
    const n = this.d.values.length;
    while (this.err.length <= q) {
      const p = this.err.length;
      const prev = this.err[p - 1];
      const cur = new Float64Array(n + 1).fill(Infinity);
      const a = new Int32Array(n + 1);
      for (let k = p; k <= n; k++) {
        let best = Infinity;
        let bestJ = p - 1;
        for (let j = p - 1; j < k; j++) {
          if (prev[j] === Infinity) continue;
          const v = prev[j] + this.cost(j, k);
          if (v < best) [best, bestJ] = [v, j];
        }
        cur[k] = best;
        a[k] = bestJ;
      }
      this.err.push(cur);
      this.arg.push(a);
    }
    return this.err[q][n];
  }

  /** Backtracks the buckets of the q-bucket optimum. */
  buckets(q: number, lengths: readonly number[]): Bucket[] {
    this.layer(q);
    const out: Bucket[] = [];
    let k = this.d.values.length;
    for (let p = q; p > 0; p--) {
      const j = this.arg[p][k];
      const seqs: number[] = [];
      for (let i = k - 1; i >= j; i--) {
        for (let x = this.d.members[i].length - 1; x >= 0; x--) seqs.push(this.d.members[i][x]);
      }
      seqs.sort((a, b) => lengths[b] - lengths[a] || a - b);
      out.push({ bound: this.d.values[k - 1], seqs });
      k = j;
    }
    return out.reverse();
  }
}

/**
 * Optimal bucketing of `seqs` into at most `q` buckets (exactly min(q, distinct lengths)), minimising the total
 * round-up error. Buckets come back in ascending bound order; each bucket's bound is its longest member.
 */
export function bucketSequences(lengths: readonly number[], seqs: readonly number[], q: number): Bucket[] {
  if (seqs.length === 0) return [];
  if (!Number.isInteger(q) || q < 1) throw new RangeError(`bucket count must be a positive integer, got ${q}`);
  const d = distinctLengths(lengths, seqs);
  const dp = new BucketDp(d);
  return dp.buckets(Math.min(q, d.values.length), lengths);
}

/** Total round-up error Σ_q Σ_{k in q} (bound_q − s_k) of a bucketing. */
export function bucketError(lengths: readonly number[], buckets: readonly Bucket[]): number {
  let e = 0;
  for (const b of buckets) for (const k of b.seqs) e += b.bound - lengths[k];
  return e;
}

/**
 * Optimal bucketings of one set of sequences for growing bucket counts, sharing one DP table (each extra bucket
 * costs one DP layer). Used by the adaptive rules.
 */
export class BucketLadder {
  private readonly dp: BucketDp;
  /** Σ s over the sequences. */
  readonly tokens: number;

  constructor(private readonly lengths: readonly number[], seqs: readonly number[]) {
    this.dp = new BucketDp(distinctLengths(lengths, seqs));
    let t = 0;
    for (const k of seqs) t += lengths[k];
    this.tokens = t;
  }

  /** Number of distinct lengths (the bucket count at which bucketing is exact). */
  get distinct(): number {
    return this.dp.distinct;
  }

  /** Least total round-up error with q buckets (q ≤ distinct). */
  error(q: number): number {
    return this.dp.layer(q);
  }

  /** The optimal q-bucket bucketing (q ≤ distinct), ascending bounds. */
  buckets(q: number): Bucket[] {
    return this.dp.buckets(q, this.lengths);
  }

  /**
   * The reference's adaptive count: start at min(K, 16) and add buckets while the bucketed token total
   * Σ bound·count = Σ s + error exceeds (Σ s + capacityTokens) / 2; capped at the number of distinct lengths.
   */
  adaptiveCount(capacityTokens: number): number {
    const n = this.dp.distinct;
    if (n === 0) return 0;
    const allowed = (capacityTokens - this.tokens) / 2;
    let q = Math.min(DEFAULT_BUCKETS, n);
    while (q < n && this.dp.layer(q) > allowed) q++;
    return q;
  }
}
