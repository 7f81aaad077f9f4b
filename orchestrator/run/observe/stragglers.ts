// Straggler detection: per step, each rank's measured time in its busy SP groups against the groups' predicted
// times. A rank whose ratio stays at or above `factor` (and whose excess is at least `minMs`) for `steps` steps in a
// row (relative to the other ranks' median when the whole cluster runs slower than predicted) is reported once per streak, with its host and device and the ratios of the same device type elsewhere. In a
// group every member waits for the slowest one, so a slow rank's partners look slow in the steps they share it;
// the slow rank is the one that stays slow as the plans regroup it.

import type { LedgerRecord } from "../../ledger/ledger.ts";
import type { StepDone } from "../../ledger/step_record.ts";
import type { RankView, StragglerReport } from "./run_state.ts";

/** Straggler thresholds (config `observe.straggler_*`). */
export interface StragglerOptions {
  factor: number;
  steps: number;
  minMs: number;
}

/** The device type of a rank (`cpu:2 cpu` -> `cpu`). */
export function deviceType(deviceName: string): string {
  return deviceName.replace(/^\w+:\d+\s*/, "") || deviceName;
}

/** Per rank, measured and predicted ms over its busy groups in one step (own times when `done` is given). */
export function rankGroupTimes(
  r: LedgerRecord,
  done?: StepDone[],
): Map<number, { measured: number; predicted: number }> {
  const out = new Map<number, { measured: number; predicted: number }>();
  r.plan.microBatches.forEach((mb, i) => {
    for (const g of mb.groups) {
      if (!g.sequences.length) continue;
      for (const rank of g.ranks) {
        const own = done?.[rank]?.microBatches[i]?.ms;
        const t = out.get(rank) ?? { measured: 0, predicted: 0 };
        t.measured += own ?? g.measuredMs;
        t.predicted += g.predictedMs;
        out.set(rank, t);
      }
    }
  });
  return out;
}

/**
 * For values `xs`: a function giving the (lower) median of the values left when one value `v` of them is taken out,
 * 1 when none are left. One sort for all ranks, then a binary search each: O(N log N) per step, not O(N² log N).
 */
export function medianWithoutOne(xs: number[]): (v: number) => number {
  const sorted = Float64Array.from(xs).sort();
  const n = sorted.length;
  const m = Math.floor((n - 2) / 2);
  return (v) => {
    if (n <= 1) return 1;
    let lo = 0, hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < v) lo = mid + 1;
      else hi = mid;
    }
    // Without the copy of v at `lo`, the element at m is sorted[m] before it, sorted[m + 1] from it on.
    return m < lo ? sorted[m] : sorted[m + 1];
  };
}

/** Follows every rank's ratio over the steps and reports stragglers (see the file header). */
export class StragglerDetector {
  readonly #streak = new Map<number, number>();
  readonly #history = new Map<number, number[]>();
  /** Latest measured/predicted ratio per rank. */
  readonly ratios = new Map<number, number>();
  /** Ranks whose current streak was reported. */
  readonly active = new Set<number>();

  constructor(readonly opts: StragglerOptions) {}

  /** Feeds one step; returns the reports it raises. */
  observe(r: LedgerRecord, ranks: RankView[], done?: StepDone[]): StragglerReport[] {
    const times = rankGroupTimes(r, done);
    const out: StragglerReport[] = [];
    const all = new Map<number, number>();
    for (const [rank, t] of times) if (t.predicted > 0) all.set(rank, t.measured / t.predicted);
    const othersMedian = medianWithoutOne([...all.values()]);
    for (const [rank, t] of times) {
      if (t.predicted <= 0) continue;
      const ratio = all.get(rank)!;
      this.ratios.set(rank, ratio);
      // A cost model off for the whole cluster (a loaded machine, stale constants) is no straggler: the ratio is
      // taken relative to the median of the other ranks when they too run slower than predicted.
      const median = othersMedian(ratio);
      const relative = ratio / Math.max(1, median);
      const h = this.#history.get(rank) ?? [];
      h.push(ratio);
      if (h.length > this.opts.steps) h.shift();
      this.#history.set(rank, h);
      const slow = relative >= this.opts.factor && t.measured - t.predicted >= this.opts.minMs;
      const streak = slow ? (this.#streak.get(rank) ?? 0) + 1 : 0;
      this.#streak.set(rank, streak);
      if (!slow) this.active.delete(rank);
      if (streak === this.opts.steps) {
        this.active.add(rank);
        out.push(this.#report(r, rank, ratio, t, ranks));
      }
    }
    return out;
  }

  #mean(rank: number): number | null {
    const h = this.#history.get(rank);
    return h?.length ? h.reduce((a, b) => a + b, 0) / h.length : null;
  }

  #report(
    r: LedgerRecord,
    rank: number,
    ratio: number,
    t: { measured: number; predicted: number },
    ranks: RankView[],
  ): StragglerReport {
    const me = ranks.find((x) => x.rank === rank);
    const host = me?.host ?? "?";
    const type = deviceType(me?.deviceName ?? "");
    const peers = ranks
      .filter((x) => x.rank !== rank && deviceType(x.deviceName) === type)
      .sort((a, b) => Number(a.host === host) - Number(b.host === host) || a.rank - b.rank)
      .map((x) => ({ rank: x.rank, host: x.host, ratio: this.#mean(x.rank) }));
    const fmt = (v: number | null) => (v === null ? "idle" : `${v.toFixed(1)}x`);
    const others = peers.length
      ? `; the same device type (${type}) elsewhere: ` +
        peers.slice(0, 6).map((p) => `rank ${p.rank} on ${p.host} ${fmt(p.ratio)}`).join(", ")
      : `; no other ${type} device to compare with`;
    return {
      time: new Date().toISOString(),
      step: r.step,
      rank,
      host,
      device: me?.device ?? -1,
      deviceName: me?.deviceName ?? "",
      steps: this.opts.steps,
      ratio,
      measuredMs: t.measured,
      predictedMs: t.predicted,
      peers,
      text: `straggler: rank ${rank} on ${host} (device ${me?.device ?? "?"}, ${type}) took ${ratio.toFixed(1)}x ` +
        `its predicted group time for ${this.opts.steps} steps in a row (step ${r.step}: ` +
        `${Math.round(t.measured)} ms vs ${Math.round(t.predicted)} ms predicted)${others}`,
    };
  }
}
