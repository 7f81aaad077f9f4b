// The HTML report of a profile: one self-contained page with SVG plots — compute time vs length per device type
// (measured points, held-out points and the fitted curves), time vs length per SP degree from the validation
// (measured points, the cost model's curve), activation memory vs tokens, all-to-all bandwidth vs degree and time vs
// message size, the node-pair bandwidth and latency matrix with slow links marked, and predicted vs measured steps.

import type { ProfileDoc } from "../config/profile_doc.ts";
import { fitMs } from "./compute_fit.ts";
import type { LedgerEntry } from "../ledger/ledger.ts";
import { formatProfileSummary } from "./report_text.ts";
import { esc, heatmap, lineChart, type Series } from "./svg_plot.ts";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];
const color = (i: number) => COLORS[i % COLORS.length];

function range(lo: number, hi: number, n = 40): number[] {
  return Array.from({ length: n + 1 }, (_, i) => lo + ((hi - lo) * i) / n);
}

function logRange(lo: number, hi: number, n = 40): number[] {
  return range(Math.log(lo), Math.log(hi), n).map(Math.exp);
}

function computeCharts(doc: ProfileDoc): string[] {
  const pts = doc.compute.grid.points;
  return doc.compute.deviceTypes.map((t) => {
    const counts = [...new Set(pts.map((p) => p.count))].sort((a, b) => a - b);
    const maxLen = Math.max(...pts.map((p) => p.length));
    const series: Series[] = [];
    counts.forEach((c, i) => {
      const mine = pts.map((p, k) => ({ p, ms: t.pointMs[k] })).filter((x) => x.p.count === c);
      series.push({
        name: `${c} seq, measured`,
        color: color(i),
        mode: "points",
        points: mine.filter((x) => !x.p.heldOut).map((x) => [x.p.length, x.ms]),
      });
      const held = mine.filter((x) => x.p.heldOut);
      if (held.length) {
        series.push({
          name: `${c} seq, held out`,
          color: color(i),
          mode: "points",
          marker: "diamond",
          points: held.map((x) => [x.p.length, x.ms]),
        });
      }
      series.push({
        name: `${c} seq, fit`,
        color: color(i),
        mode: "line",
        points: range(8, Math.min(maxLen, doc.fingerprint.cluster.model.maxSeq / c)).map((l) => [
          l,
          fitMs(t.fit, { count: c, length: l }),
        ]),
      });
    });
    return lineChart({
      title: `compute: ${t.type.slice(0, 60)} (R² ${t.fit.r2.toFixed(3)})`,
      xLabel: "sequence length (tokens); packed batch = count x length",
      yLabel: "forward+backward ms",
      series,
    });
  });
}

function validationChart(doc: ProfileDoc): string {
  const v = doc.validation;
  if (!v) return "";
  const c = doc.constants;
  const m = doc.fingerprint.cluster.model;
  const commMbPerToken = (4 * 2 * m.layers * m.hidden * 2) / 2 ** 20;
  const keys = [...new Set(v.points.map((p) => `${p.degree}|${p.spans}`))];
  const series: Series[] = [];
  keys.forEach((k, i) => {
    const [d, spans] = [Number(k.split("|")[0]), k.endsWith("true")];
    const mine = v.points.filter((p) => p.degree === d && p.spans === spans);
    const label = `SP ${d}${spans ? " across nodes" : ""}`;
    series.push({
      name: `${label}, measured`,
      color: color(i),
      mode: "points",
      points: mine.map((p) => [p.length, p.measuredMs]),
    });
    const table = spans ? c.bandwidth_gbps.inter : c.bandwidth_gbps.intra;
    const bw = table[String(d)] ?? Object.values({ ...c.bandwidth_gbps.intra, ...c.bandwidth_gbps.inter })[0] ??
      Infinity;
    const comm = (s: number) => (d === 1 ? 0 : (commMbPerToken * s) / d / bw);
    // The group's speed, as the validation's predictions imply it (1 on a uniform cluster of the reference type).
    const p0 = mine[mine.length - 1];
    const sp = (c.beta1 + (c.alpha1 * p0.length ** 2 + c.alpha2 * p0.length) / d) /
      Math.max(1e-9, p0.predictedMs - comm(p0.length));
    series.push({
      name: `${label}, cost model`,
      color: color(i),
      mode: "line",
      dashed: spans,
      points: range(8, m.maxSeq).map((s) => [s, (c.beta1 + (c.alpha1 * s * s + c.alpha2 * s) / d) / sp + comm(s)]),
    });
  });
  return lineChart({
    title: `time vs length per SP degree (real steps; median error ${(v.medianRelErr * 100).toFixed(1)}%)`,
    xLabel: "sequence length (tokens), one per group",
    yLabel: "group ms",
    series,
    width: 640,
    height: 380,
  });
}

function memoryChart(doc: ProfileDoc): string {
  const m = doc.memory;
  const ranks = [...new Set(m.samples.map((s) => s.rank))].sort((a, b) => a - b);
  const maxT = Math.max(...m.samples.map((s) => s.tokens));
  return lineChart({
    title: `activation memory (${m.actMbPerToken.toPrecision(3)} MB/token, ${m.source})`,
    xLabel: "tokens per device",
    yLabel: "peak activation MB",
    series: [
      ...ranks.slice(0, 8).map((r, i): Series => ({
        name: `rank ${r}`,
        color: color(i),
        mode: "points",
        points: m.samples.filter((s) => s.rank === r).map((s) => [s.tokens, s.peakMb]),
      })),
      {
        name: "fit",
        color: "#000",
        mode: "line",
        points: [[0, m.actFit.interceptMb], [maxT, m.actFit.interceptMb + m.actFit.slopeMb * maxT]],
      },
    ],
  });
}

function networkCharts(doc: ProfileDoc): string[] {
  const a = doc.network.alltoall;
  if (a.length === 0) return [];
  const out: string[] = [];
  const by = (spans: boolean, f: (x: typeof a[number]) => number): [number, number][] =>
    a.filter((x) => x.spans === spans).map((x) => [x.degree, f(x)]);
  const used = (spans: boolean): [number, number][] =>
    Object.entries(spans ? doc.constants.bandwidth_gbps.inter : doc.constants.bandwidth_gbps.intra)
      .map(([d, v]) => [Number(d), v]);
  out.push(lineChart({
    title: "all-to-all bandwidth vs SP degree (all aligned groups at once)",
    xLabel: "SP degree",
    yLabel: "GB/s per device",
    logX: true,
    logY: true,
    series: [
      { name: "inside a node: measured", color: color(0), mode: "both", points: by(false, (x) => x.gbps) },
      { name: "across nodes: measured", color: color(1), mode: "both", points: by(true, (x) => x.gbps) },
      {
        name: "inside a node: v[d] (cost model)",
        color: color(0),
        mode: "both",
        marker: "square",
        dashed: true,
        points: by(false, (x) => x.effectiveGbps),
      },
      {
        name: "across nodes: v[d] (cost model)",
        color: color(1),
        mode: "both",
        marker: "square",
        dashed: true,
        points: by(true, (x) => x.effectiveGbps),
      },
      { name: "inside a node: v[d] used", color: color(2), mode: "both", marker: "diamond", points: used(false) },
      { name: "across nodes: v[d] used", color: color(3), mode: "both", marker: "diamond", points: used(true) },
    ].filter((s) => s.points.length > 0) as Series[],
  }));
  const series: Series[] = [];
  a.forEach((x, i) => {
    const name = `SP ${x.degree}${x.spans ? " across" : ""}`;
    series.push({
      name: `${name} measured`,
      color: color(i),
      mode: "points",
      points: x.samples.map((s) => [s.bytes, s.ms]),
    });
    const b = x.samples.map((s) => s.bytes);
    series.push({
      name: `${name} fit`,
      color: color(i),
      mode: "line",
      dashed: x.spans,
      points: logRange(Math.min(...b), Math.max(...b), 30).map((v) => [v, x.latencyMs + v / (x.gbps * 2 ** 20)]),
    });
  });
  out.push(lineChart({
    title: "all-to-all time vs message size",
    xLabel: "bytes per rank per call",
    yLabel: "ms (slowest member)",
    logX: true,
    logY: true,
    series,
  }));
  const p = doc.network.p2p;
  if (p) {
    const labels = p.hosts.map((h, i) => `${i} ${h}`);
    const flagged = (i: number, j: number) => p.slow.some((s) => (s.a === i && s.b === j) || (s.a === j && s.b === i));
    out.push(
      heatmap({ title: "node pairs: bandwidth (GB/s)", labels, values: p.gbps, format: (v) => v.toFixed(3), flagged }),
    );
    out.push(heatmap({
      title: "node pairs: latency (ms)",
      labels,
      values: p.latencyMs,
      format: (v) => v.toFixed(2),
      higherIsBetter: false,
      flagged,
    }));
  }
  return out;
}

function fidelityChart(ledger: LedgerEntry[]): string {
  if (ledger.length === 0) return "";
  const groups = ledger.flatMap((e) =>
    e.plan.microBatches.flatMap((mb) =>
      mb.groups.filter((g) => g.sequences.length).map((g) => [g.predictedMs, g.measuredMs] as [number, number])
    )
  );
  const steps = ledger.map((e) => [e.predictedMs, e.measuredMs] as [number, number]);
  const hi = Math.max(...steps.flat(), ...groups.flat());
  return lineChart({
    title: "planned training steps: predicted vs measured",
    xLabel: "predicted ms",
    yLabel: "measured ms",
    series: [
      { name: "groups", color: color(0), mode: "points", points: groups },
      { name: "steps", color: color(1), mode: "points", marker: "square", points: steps },
      { name: "measured = predicted", color: "#000", mode: "line", dashed: true, points: [[0, 0], [hi, hi]] },
      { name: "±15%", color: "#aaa", mode: "line", dashed: true, points: [[0, 0], [hi, hi * 1.15]] },
      { name: "", color: "#aaa", mode: "line", dashed: true, points: [[0, 0], [hi, hi * 0.85]] },
    ],
    width: 480,
    height: 400,
  });
}

/** The report page. */
export function renderHtmlReport(doc: ProfileDoc, ledger: LedgerEntry[] = []): string {
  const sections: [string, string[]][] = [
    ["Compute", computeCharts(doc)],
    ["Per-degree validation", [validationChart(doc)]],
    ["Memory", [memoryChart(doc)]],
    ["Network", networkCharts(doc)],
    ["Planned steps", [fidelityChart(ledger)]],
  ];
  const body = sections
    .filter(([, charts]) => charts.some((c) => c))
    .map(([title, charts]) => `<h2>${esc(title)}</h2><div class="row">${charts.filter(Boolean).join("")}</div>`)
    .join("\n");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>flexsp profile: ${esc(doc.config)}</title>
<style>body{font-family:sans-serif;margin:20px;color:#222}pre{background:#f6f6f6;padding:10px;overflow-x:auto;
font-size:12px}.row{display:flex;flex-wrap:wrap;gap:16px}h2{border-bottom:1px solid #ddd}</style></head>
<body><h1>flexsp profile of ${esc(doc.config)}</h1>
<p>measured ${esc(doc.createdAt)} in ${(doc.durationMs / 1000).toFixed(1)} s; cluster fingerprint
${esc(doc.fingerprint.clusterHash)}; executor build ${esc(doc.fingerprint.software.executor)}; Deno
${esc(doc.fingerprint.software.deno)}</p>
<pre>${esc(formatProfileSummary(doc))}</pre>
${body}
</body></html>
`;
}
