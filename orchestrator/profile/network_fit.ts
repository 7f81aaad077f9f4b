// Network results: all-to-all time per message size for every degree (all aligned groups of the degree at once, as
// the reference's test_all2all_perf does), split by whether the groups stay inside a node; a latency + size /
// bandwidth fit per degree; the cost model's per-device bandwidth v[d] derived from it; and the node-pair matrix.
//
// Mapping onto the cost model. The cost model charges a group of degree d holding T tokens
//   commMs = (4·2·L·h·2 bytes · T/d / 2^20) / v[d]
// (the paper's 8 bf16 all-to-alls per layer). Our executors are float32 and do 2 all-to-alls per layer forward
// (Q,K,V together: 3h per token; the output: h) and 2 backward (dO: h; dQ,dK,dV: 3h): the same 8·h elements per
// token and layer at twice the bytes, in 4·L calls, plus one tiny loss exchange per micro-batch. With the fitted
// per-call time t(x) = latency + x / bandwidth for x bytes per rank, their time is
//   2·L·(t(3·X) + t(X)) + t(8),   X = (T/d)·h·4 bytes,
// and v[d] is the value that makes the cost model give exactly this time at T = the representative token count
// (the model's context): so v[d] absorbs the float32 factor, the (d-1)/d share that stays local and the per-call
// latency at that size. It is written in the cost model's units (MB of bf16 volume per ms, "GB/s").

import type { ProfileAllToAllResult } from "../../core/protocol.ts";
import { median, nnls } from "./fit.ts";
import type { AllToAllResult, P2PSection } from "../config/profile_doc.ts";

const MB = 2 ** 20;

/** Per-call latency (ms) and bandwidth (bytes per ms) of a fitted all-to-all. */
export interface CallFit {
  latencyMs: number;
  bytesPerMs: number;
  r2: number;
}

/** Fits `ms = latency + bytes / bandwidth` (non-negative, relative error). */
export function fitCalls(samples: { bytes: number; ms: number }[]): CallFit {
  const ok = samples.filter((s) => Number.isFinite(s.ms) && s.ms > 0);
  if (ok.length === 0) return { latencyMs: 0, bytesPerMs: Infinity, r2: 0 };
  const f = nnls(ok.map((s) => [1, s.bytes]), ok.map((s) => s.ms), { relative: true });
  return { latencyMs: f.coef[0], bytesPerMs: f.coef[1] > 0 ? 1 / f.coef[1] : Infinity, r2: f.r2 };
}

/** The executors' all-to-all time (ms) of a group of degree d holding `tokens` tokens (see the file header). */
export function executorCommMs(fit: CallFit, shape: { layers: number; hidden: number }, d: number, tokens: number) {
  const t = (x: number) => fit.latencyMs + x / fit.bytesPerMs;
  const x = (tokens / d) * shape.hidden * 4;
  return 2 * shape.layers * (t(3 * x) + t(x)) + t(8);
}

/** The cost model's v[d] (GB/s, its units) that reproduces {@link executorCommMs} at `tokens`. */
export function effectiveGbps(fit: CallFit, shape: { layers: number; hidden: number }, d: number, tokens: number) {
  const modelMb = (4 * 2 * shape.layers * shape.hidden * 2 * (tokens / d)) / MB;
  return modelMb / executorCommMs(fit, shape, d, tokens);
}

/**
 * Aggregates one degree's run: per group, size and iteration the slowest member; per group and size the median
 * over iterations; per placement class (inside a node / spanning nodes) and size the median over its groups.
 */
export function aggregateAllToAll(a: {
  degree: number;
  groups: number[][];
  /** Whether a group spans nodes. */
  spans: (g: number[]) => boolean;
  results: Map<number, ProfileAllToAllResult>;
  shape: { layers: number; hidden: number };
  tokens: number;
}): AllToAllResult[] {
  const { degree, groups, spans, results, shape, tokens } = a;
  const out: AllToAllResult[] = [];
  for (const cls of [false, true]) {
    const mine = groups.filter((g) => spans(g) === cls);
    if (mine.length === 0) continue;
    const sizes = results.get(mine[0][0])!.samples.map((s) => s.bytes);
    const samples = sizes.map((bytes, si) => {
      const perGroup = mine.map((g) => {
        const iters = results.get(g[0])!.samples[si].ms.length;
        const worst = Array.from(
          { length: iters },
          (_, it) => Math.max(...g.map((r) => results.get(r)!.samples[si].ms[it])),
        );
        return median(worst);
      });
      return { bytes, ms: median(perGroup) };
    });
    const fit = fitCalls(samples);
    out.push({
      degree,
      spans: cls,
      groups: mine,
      samples,
      latencyMs: fit.latencyMs,
      gbps: fit.bytesPerMs / MB,
      r2: fit.r2,
      effectiveGbps: effectiveGbps(fit, shape, degree, tokens),
    });
  }
  return out;
}

/** The bandwidth tables of the constants: v[d] per degree, inside nodes and across nodes. */
export function bandwidthTables(
  results: AllToAllResult[],
): { intra: Record<string, number>; inter: Record<string, number> } {
  const intra: Record<string, number> = {}, inter: Record<string, number> = {};
  for (const r of results) (r.spans ? inter : intra)[String(r.degree)] = Number(r.effectiveGbps.toPrecision(4));
  return { intra, inter };
}

/** One pair's measurement for the matrix. */
export interface PairSample {
  a: number;
  b: number;
  /** Ms of the fastest small exchange (latency) and of the median large exchange. */
  smallMs: number;
  largeMs: number;
  /** Bytes each side sends to the other in the large exchange. */
  largeBytes: number;
}

/**
 * The node-pair matrix: latency = one small exchange; bandwidth = bytes each side sends in the large exchange over
 * its time (an effective figure that includes the latency; the large size keeps that share small). A link is slow when its bandwidth is under half the best link's, or its latency over twice the best plus
 * 0.5 ms; a node all of whose links are slow is named.
 */
export function p2pMatrix(ranks: number[], hosts: string[], pairs: PairSample[]): P2PSection {
  const n = ranks.length;
  const latencyMs: (number | null)[][] = Array.from({ length: n }, () => new Array(n).fill(null));
  const gbps: (number | null)[][] = Array.from({ length: n }, () => new Array(n).fill(null));
  for (const p of pairs) {
    const bw = p.largeBytes / Math.max(1e-6, p.largeMs) / MB;
    latencyMs[p.a][p.b] = latencyMs[p.b][p.a] = p.smallMs;
    gbps[p.a][p.b] = gbps[p.b][p.a] = bw;
  }
  const links = pairs.filter((p) => p.a !== p.b).map((p) => ({ a: p.a, b: p.b, bw: gbps[p.a][p.b]!, lat: p.smallMs }));
  const slow: P2PSection["slow"] = [];
  if (links.length > 1) {
    const bestBw = Math.max(...links.map((l) => l.bw));
    const bestLat = Math.min(...links.map((l) => l.lat));
    for (const l of links) {
      const why: string[] = [];
      if (l.bw < 0.5 * bestBw) why.push(`${l.bw.toFixed(3)} GB/s, best link ${bestBw.toFixed(3)} GB/s`);
      if (l.lat > 2 * bestLat + 0.5) why.push(`latency ${l.lat.toFixed(2)} ms, best ${bestLat.toFixed(2)} ms`);
      if (why.length) slow.push({ a: l.a, b: l.b, why: why.join("; ") });
    }
    for (let k = 0; k < n; k++) {
      const mine = links.filter((l) => l.a === k || l.b === k);
      const slowMine = slow.filter((s) => s.a === k || s.b === k);
      if (mine.length > 0 && slowMine.length === mine.length && slow.length < links.length) {
        slow.push({ a: k, b: k, why: `every link of node ${k} (${hosts[k]}) is slow: check its network` });
      }
    }
  }
  return { ranks, hosts, latencyMs, gbps, slow };
}
