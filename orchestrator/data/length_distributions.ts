// Sequence-length distributions of the paper's three corpora, for planning and benchmarks without a dataset.
//
// Wikipedia is the histogram derived from the released `wikipedia.txt` (10^6 tokenized lengths, mean 1,014,
// median 347; see reference notes §6.1). The GitHub and CommonCrawl length lists were not retrievable, so
// those two are synthetic long-tailed histograms shaped after the paper's description (far more long
// sequences than Wikipedia; GitHub's tail heavier than CommonCrawl's), with the tail bins (>= 4K) scaled so
// that the static SP=64 baseline's predicted step time for GPT-7B at 192K under the paper's cost model
// matches the paper's measured DeepSpeed times (CommonCrawl 24.2 s, GitHub 28.9 s; scratch calibration over
// 16 batches, scale factors 0.63 and 0.495 of the initial tail shares). Within a bin, lengths are
// log-uniform; the first bin's lower edge is set so Wikipedia's median comes out at 347.

import { Rng } from "./rng.ts";

/** A histogram bin: share of sequences with length in [lo, hi). */
export interface LengthBin {
  lo: number;
  hi: number;
  share: number;
}

const K = 1024;
const bins = (lo0: number, shares: number[], top: number): LengthBin[] => {
  const edges = [lo0, 1 * K, 2 * K, 4 * K, 8 * K, 16 * K, 32 * K, 64 * K, 128 * K, top];
  return shares.map((share, i) => ({ lo: edges[i], hi: edges[i + 1], share }));
};

/** The distributions by name. The last bin is open-ended up to 2M tokens; callers cap it at the model's context. */
export const LENGTH_DISTRIBUTIONS: Record<string, LengthBin[]> = {
  wikipedia: bins(53, [78.81, 10.84, 5.96, 2.8, 1.12, 0.35, 0.1, 0.023, 0.005], 1820 * K),
  commoncrawl: bins(128, [44.24, 20, 20, 8.26, 4.41, 1.89, 0.76, 0.32, 0.12], 2048 * K),
  github: bins(128, [55.66, 15, 14, 5.94, 4.45, 2.97, 1.29, 0.5, 0.19], 2048 * K),
};

/** Draws `count` lengths in [1, maxLen] from a named distribution (truncated at maxLen), deterministically. */
export function sampleLengths(name: string, count: number, maxLen: number, rng: Rng): number[] {
  const dist = LENGTH_DISTRIBUTIONS[name];
  if (!dist) throw new Error(`unknown length distribution "${name}"`);
  const usable = dist.filter((b) => b.lo < maxLen).map((b) => ({ ...b, hi: Math.min(b.hi, maxLen + 1) }));
  const total = usable.reduce((s, b) => s + b.share, 0);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    let u = rng.next() * total;
    let bin = usable[usable.length - 1];
    for (const b of usable) {
      if (u < b.share) {
        bin = b;
        break;
      }
      u -= b.share;
    }
    const len = Math.floor(Math.exp(Math.log(bin.lo) + rng.next() * (Math.log(bin.hi) - Math.log(bin.lo))));
    out.push(Math.max(1, Math.min(maxLen, len)));
  }
  return out;
}
