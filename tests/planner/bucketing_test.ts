// Bucketing DP (paper §3.3) against brute force over all bucket boundaries, and the adaptive bucket count rule.

import { assert, assertEquals } from "../assert.ts";
import { type Bucket, bucketError, BucketLadder, bucketSequences } from "../../orchestrator/planner/bucketing.ts";
import { pickBuckets } from "../../orchestrator/planner/microbatch_milp.ts";
import { Rng } from "../../orchestrator/data/rng.ts";
import { toyContext } from "./fixtures.ts";

/**
 * The planner's bucket choice (`pickBuckets`, what the MILP runs) for a micro-batch whose token capacity is
 * `capacityTokens`: one device holding exactly that many tokens.
 */
function chooseBuckets(
  lengths: readonly number[],
  seqs: readonly number[],
  buckets: number | "auto",
  capacityTokens: number,
): Bucket[] {
  const { ctx } = toyContext([1], { buckets }, capacityTokens);
  assertEquals(ctx.capacity, [capacityTokens], "the context holds the capacity asked for");
  return pickBuckets(ctx, lengths, seqs, {});
}

/** Least round-up error over every split of the sorted lengths into at most q contiguous non-empty buckets. */
function bruteForce(lengths: number[], q: number): number {
  const s = [...lengths].sort((a, b) => a - b);
  const k = s.length;
  let best = Infinity;
  // Bit i set: a bucket ends after sorted position i (i < k-1).
  for (let mask = 0; mask < 1 << (k - 1); mask++) {
    let cuts = 0;
    for (let i = 0; i < k - 1; i++) if (mask & (1 << i)) cuts++;
    if (cuts + 1 > q) continue;
    let err = 0;
    let start = 0;
    for (let i = 0; i < k; i++) {
      if (i === k - 1 || mask & (1 << i)) {
        for (let j = start; j <= i; j++) err += s[i] - s[j];
        start = i + 1;
      }
    }
    best = Math.min(best, err);
  }
  return best;
}

/** Buckets are a partition of seqs into contiguous sorted ranges, bound = max member, ascending bounds. */
function checkShape(lengths: number[], seqs: number[], buckets: Bucket[]): void {
  const seen = new Set<number>();
  let prevMax = -Infinity;
  for (const b of buckets) {
    assert(b.seqs.length > 0, "empty bucket");
    const ls = b.seqs.map((k) => lengths[k]);
    assertEquals(b.bound, Math.max(...ls), "bound is the bucket's largest length");
    assert(Math.min(...ls) > prevMax, "buckets are contiguous ranges of the sorted lengths, ascending");
    prevMax = b.bound;
    for (let i = 1; i < ls.length; i++) assert(ls[i - 1] >= ls[i], "members longest first");
    for (const k of b.seqs) {
      assert(!seen.has(k), `sequence ${k} in two buckets`);
      seen.add(k);
    }
  }
  assertEquals([...seen].sort((a, b) => a - b), [...seqs].sort((a, b) => a - b), "every sequence in one bucket");
}

Deno.test("bucketing DP matches brute force over all bucket boundaries (K <= 9, with duplicates)", () => {
  const rng = new Rng(11);
  let cases = 0;
  for (let trial = 0; trial < 60; trial++) {
    const k = 1 + (trial % 9);
    // Small value range so duplicates are common; a few long ones.
    const lengths = Array.from({ length: k }, () => 1 + Math.floor(rng.next() ** 2 * (trial % 2 ? 20 : 5000)));
    const seqs = lengths.map((_, i) => i);
    const distinct = new Set(lengths).size;
    for (let q = 1; q <= k + 1; q++) {
      const buckets = bucketSequences(lengths, seqs, q);
      checkShape(lengths, seqs, buckets);
      assertEquals(buckets.length, Math.min(q, distinct), `bucket count for q=${q}`);
      const err = bucketError(lengths, buckets);
      assertEquals(err, bruteForce(lengths, q), `error of ${JSON.stringify(lengths)} with q=${q}`);
      assertEquals(new BucketLadder(lengths, seqs).error(Math.min(q, distinct)), err, "ladder error");
      cases++;
    }
  }
  assert(cases > 300);
});

Deno.test("bucketing works on a subset of indices and keeps the original indices", () => {
  const lengths = [900, 5, 300, 7, 300, 1000, 6];
  const seqs = [0, 2, 4, 6, 1];
  const buckets = bucketSequences(lengths, seqs, 2);
  checkShape(lengths, seqs, buckets);
  // {5, 6} and {300, 300, 900}: error 1 + 600+600 = 1201 vs {5,6,300,300} + {900}: 295+294 = 589.
  assertEquals(buckets.map((b) => b.bound), [300, 900]);
  assertEquals(buckets.map((b) => b.seqs), [[2, 4, 6, 1], [0]]);
  assertEquals(bucketError(lengths, buckets), 589);
});

Deno.test("adaptive bucket count: starts at min(K, 16), grows until rounding uses at most half the spare memory", () => {
  const rng = new Rng(3);
  const lengths = Array.from({ length: 200 }, () => 1 + Math.floor(rng.next() ** 3 * 60000));
  const seqs = lengths.map((_, i) => i);
  const total = lengths.reduce((a, b) => a + b, 0);
  const ladder = new BucketLadder(lengths, seqs);
  const rule = (q: number, cap: number) => total + ladder.error(q) <= (total + cap) / 2;
  let sawGrowth = false;
  for (const spare of [0.002, 0.01, 0.03, 0.1, 0.5, 2]) {
    const cap = Math.round(total * (1 + spare));
    const buckets = chooseBuckets(lengths, seqs, "auto", cap);
    const q = buckets.length;
    checkShape(lengths, seqs, buckets);
    assert(q >= 16, "never below the paper's 16 when there are more lengths");
    const bucketed = buckets.reduce((a, b) => a + b.bound * b.seqs.length, 0);
    if (q < ladder.distinct) assert(rule(q, cap), `rule holds at the chosen q=${q}`);
    if (q > 16) {
      assert(!rule(q - 1, cap), `rule fails one bucket earlier (q=${q - 1})`);
      sawGrowth = true;
    }
    if (spare >= 0.5) assertEquals(q, 16, "plenty of spare memory: the paper's 16");
    assert(bucketed >= total);
  }
  assert(sawGrowth, "some capacity forces more than 16 buckets");
  // No spare memory at all: one bucket per distinct length (exact).
  const exact = chooseBuckets(lengths, seqs, "auto", total);
  assertEquals(exact.length, new Set(lengths).size);
  assertEquals(bucketError(lengths, exact), 0);
});

Deno.test("adaptive bucket count with fewer than 16 sequences is one bucket per distinct length; a number fixes Q", () => {
  const lengths = [10, 20, 20, 30, 40, 50];
  const seqs = lengths.map((_, i) => i);
  assertEquals(chooseBuckets(lengths, seqs, "auto", 1e9).map((b) => b.bound), [10, 20, 30, 40, 50]);
  assertEquals(chooseBuckets(lengths, seqs, 2, 1e9).length, 2);
  assertEquals(chooseBuckets(lengths, [], "auto", 1e9), []);
});
