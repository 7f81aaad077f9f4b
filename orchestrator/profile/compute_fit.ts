// Fits the compute model `ms = α1·Σs² + α2·Σs + β1` per device type from the compute grid (non-negative least
// squares on relative error; per point the median over repeats and devices of the type), measures the fit's error on
// held-out points, and derives per-device and per-executor-kind relative speeds.

import { fitQuality, geomean, median, nnls, predict } from "./fit.ts";
import type { ComputeFit, ComputeSection, GridPoint } from "../config/profile_doc.ts";

/** A rank's device type and place. */
export interface RankInfo {
  rank: number;
  node: number;
  kind: string;
  /** Device type: ranks of one type share a fit. */
  type: string;
}

/** Features [Σs², Σs, 1] of a grid point. */
export function features(p: { count: number; length: number }): number[] {
  return [p.count * p.length * p.length, p.count * p.length, 1];
}

function toFit(coef: number[], q: { r2: number; maxRelErr: number; medianRelErr: number }): ComputeFit {
  return { alpha1: coef[0], alpha2: coef[1], beta1: coef[2], ...q };
}

/** Predicted ms of a grid point under a fit. */
export function fitMs(f: ComputeFit, p: { count: number; length: number }): number {
  return predict(features(p), [f.alpha1, f.alpha2, f.beta1]);
}

/** Fits one device type: all points, and without the held-out points (evaluated on them). */
export function fitType(points: GridPoint[], pointMs: number[]): ComputeSection["deviceTypes"][number]["heldOut"] & {
  all: ComputeFit;
} {
  const idx = points.map((_, i) => i).filter((i) => Number.isFinite(pointMs[i]));
  const train = idx.filter((i) => !points[i].heldOut);
  const held = idx.filter((i) => points[i].heldOut);
  const fitOn = (ids: number[]) => {
    const r = nnls(ids.map((i) => features(points[i])), ids.map((i) => pointMs[i]), { relative: true });
    return toFit(r.coef, r);
  };
  const all = fitOn(idx);
  const trainFit = held.length && train.length >= 3 ? fitOn(train) : all;
  const q = fitQuality(held.map((i) => fitMs(trainFit, points[i])), held.map((i) => pointMs[i]));
  return { all, fit: trainFit, points: held.length, maxRelErr: q.maxRelErr, medianRelErr: q.medianRelErr };
}

/** One timed run of one rank. */
export interface ComputeSample {
  rank: number;
  point: number;
  ms: number;
  /** Round (repeat) it was measured in. */
  round: number;
}

/**
 * Load factor of every round: the median over points of (round's time / the point's median over rounds), each time
 * the median over `ranks`. On a shared machine the load changes between rounds; dividing by these factors removes
 * what the rounds' points share, and their spread tells how steady the machine was.
 */
export function roundFactors(points: number, samples: ComputeSample[], ranks?: Set<number>): number[] {
  const rounds = [...new Set(samples.map((s) => s.round))].sort((a, b) => a - b);
  const mine = ranks ? samples.filter((s) => ranks.has(s.rank)) : samples;
  const cell = (r: number, p: number) => median(mine.filter((s) => s.round === r && s.point === p).map((s) => s.ms));
  const table = rounds.map((r) => Array.from({ length: points }, (_, p) => cell(r, p)));
  const mid = Array.from({ length: points }, (_, p) => median(table.map((row) => row[p]).filter((x) => x > 0)));
  return table.map((row) => {
    const ratios = row.map((x, p) => x / mid[p]).filter((x) => Number.isFinite(x) && x > 0);
    return ratios.length ? median(ratios) : 1;
  });
}

/** Result of {@link fitCompute}: the section for the profile and the constants' parts. */
export interface ComputeResult {
  section: ComputeSection;
  /** The reference type's fit (the constants α1, α2, β1). */
  reference: ComputeFit;
  /** Relative speed per executor kind (reference kind = 1). */
  deviceSpeed: Record<string, number>;
  warnings: string[];
}

/**
 * Fits every device type. The reference type (the one most ranks have; on a tie the slowest) gives the constants;
 * other types get a speed relative to it over the grid (geometric mean of time ratios).
 */
export function fitCompute(
  points: GridPoint[],
  samples: ComputeSample[],
  ranks: RankInfo[],
  grid: { repeats: number; warmup: number },
): ComputeResult {
  const warnings: string[] = [];
  // Per rank and point: median over rounds of the load-normalised times, at the level of the fastest round (other
  // work on a shared machine only ever slows a round down).
  const factors = roundFactors(points.length, samples);
  const rounds = [...new Set(samples.map((s) => s.round))].sort((a, b) => a - b);
  const fastest = Math.min(...factors);
  const factorOf = new Map(rounds.map((r, i) => [r, factors[i] / fastest]));
  const perRank = new Map<number, number[]>();
  for (const r of ranks) {
    perRank.set(
      r.rank,
      points.map((_, p) =>
        median(samples.filter((s) => s.rank === r.rank && s.point === p).map((s) => s.ms / factorOf.get(s.round)!))
      ),
    );
  }
  const spread = Math.max(...factors) / Math.min(...factors) - 1;
  if (spread > 0.15) {
    warnings.push(
      `compute timings varied by ${(spread * 100).toFixed(0)}% between rounds (round factors ${
        factors.map((f) => f.toFixed(2)).join(", ")
      }): the machine's load changed while profiling; the fit uses times normalised to the fastest round, but ` +
        `re-run on a quiet cluster for the best constants`,
    );
  }
  const types = [...new Set(ranks.map((r) => r.type))];
  const fits = types.map((type) => {
    const members = ranks.filter((r) => r.type === type);
    const pointMs = points.map((_, p) => median(members.map((m) => perRank.get(m.rank)![p])));
    const f = fitType(points, pointMs);
    return { type, kind: members[0].kind, ranks: members.map((m) => m.rank), pointMs, f };
  });
  const total = (f: ComputeFit) => points.reduce((s, p) => s + fitMs(f, p), 0);
  const ref = [...fits].sort((a, b) => b.ranks.length - a.ranks.length || total(b.f.all) - total(a.f.all))[0];
  const speedOf = (f: ComputeFit) => geomean(points.map((p) => fitMs(ref.f.all, p) / fitMs(f, p)));
  const deviceTypes = fits.map((t) => ({
    type: t.type,
    kind: t.kind,
    ranks: t.ranks,
    fit: t.f.all,
    heldOut: { fit: t.f.fit, points: t.f.points, maxRelErr: t.f.maxRelErr, medianRelErr: t.f.medianRelErr },
    pointMs: t.pointMs,
    speed: t === ref ? 1 : speedOf(t.f.all),
  }));
  const perDevice = ranks.map((r) => {
    const t = deviceTypes.find((d) => d.type === r.type)!;
    const mine = perRank.get(r.rank)!;
    const ratios = points.map((p, i) => fitMs(t.fit, p) / mine[i]).filter((x) => Number.isFinite(x) && x > 0);
    return { rank: r.rank, node: r.node, type: r.type, speed: t.speed * geomean(ratios) };
  });
  const deviceSpeed: Record<string, number> = {};
  for (const kind of new Set(ranks.map((r) => r.kind))) {
    const ofKind = deviceTypes.filter((t) => t.kind === kind);
    deviceSpeed[kind] = median(ofKind.flatMap((t) => t.ranks.map(() => t.speed)));
    if (ofKind.length > 1) {
      warnings.push(
        `${kind} devices of different types run at different speeds (${
          ofKind.map((t) => `${t.type}: ${t.speed.toFixed(2)}`).join("; ")
        }); device_speed.${kind} is their median: set cluster.nodes[].speed per node for the difference`,
      );
    }
  }
  for (const t of deviceTypes) {
    if (t.fit.r2 < 0.9) {
      warnings.push(`compute fit of ${t.type} is poor (R² ${t.fit.r2.toFixed(3)}): timings were noisy; re-run`);
    }
  }
  return {
    section: {
      grid: { points, repeats: grid.repeats, warmup: grid.warmup },
      deviceTypes,
      reference: ref.type,
      perDevice,
      roundFactors: factors,
      samples,
    },
    reference: ref.f.all,
    deviceSpeed,
    warnings,
  };
}
