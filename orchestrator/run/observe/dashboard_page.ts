// The dashboard page: one self-contained HTML document (no external scripts, fonts or styles). It reads its token
// from its own URL, subscribes to `/events` (server-sent snapshots; it falls back to polling `/api/state`), and
// draws inline SVG: loss, tokens/s and MFU over steps, predicted against measured step time, the latest steps'
// plans as a timeline (micro-batches left to right, each SP group a bar over its ranks coloured by degree, measured
// filled and predicted outlined), nodes and ranks with heartbeat ages, stragglers and hangs, and the run's config
// and profile fingerprint.

/** The page's HTML. */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flexsp run</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 16px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:16px;margin:0}header .kv b{color:#9ecbff;font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px;padding:12px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 10px}
section.wide{grid-column:1/-1}h2{font-size:13px;margin:0 0 6px;color:#3b4454}
svg text{font-size:10px;fill:#555}table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;text-align:left;border-bottom:1px solid #eee}
.bad{color:#c0392b;font-weight:600}.ok{color:#1e8449}.na{color:#999}pre{font-size:11px;max-height:260px;overflow:auto;background:#f3f4f6;padding:6px;margin:0}
.legend span{display:inline-block;margin-right:10px}.legend i{display:inline-block;width:10px;height:10px;margin-right:3px;vertical-align:middle}
#alerts div{padding:4px 6px;margin:2px 0;border-radius:4px;background:#fdecea}
</style></head><body>
<header><h1 id="title">flexsp</h1><span class="kv">step <b id="step">-</b></span><span class="kv">loss <b id="loss">-</b></span>
<span class="kv">tok/s <b id="tps">-</b></span><span class="kv">MFU <b id="mfu">-</b></span><span class="kv">TFLOP/s/dev <b id="tflops">-</b></span>
<span class="kv">grad norm <b id="gnorm">-</b></span><span class="kv">lr <b id="lr">-</b></span><span class="kv" id="live">-</span></header>
<main>
<section class="wide" id="alerts-box"><h2>Stragglers and hangs</h2><div id="alerts"><span class="na">none</span></div></section>
<section><h2>Loss</h2><div id="chart-loss" class="chart"></div></section>
<section><h2>Tokens/s</h2><div id="chart-tps" class="chart"></div></section>
<section><h2>MFU</h2><div id="chart-mfu" class="chart"></div></section>
<section><h2>Step time: measured (wall) vs predicted</h2><div id="chart-time" class="chart"></div></section>
<section class="wide"><h2>Latest plans: micro-batches left to right, SP groups over their ranks (filled: measured, outline: predicted)</h2>
<div class="legend" id="legend"></div><div id="timeline"></div></section>
<section><h2>Nodes</h2><table id="nodes"></table></section>
<section><h2>Ranks</h2><table id="ranks"></table></section>
<section class="wide"><h2>Run</h2><table id="info"></table><pre id="config"></pre></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const q = "?token=" + encodeURIComponent(token);
const NS = "http://www.w3.org/2000/svg";
const COLORS = {1:"#4e79a7",2:"#f28e2b",4:"#59a14f",8:"#e15759",16:"#b07aa1",32:"#76b7b2",64:"#edc948",128:"#9c755f"};
const color = (d) => COLORS[d] || "#888";
const $ = (id) => document.getElementById(id);
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v, d) { return v === null || v === undefined || !isFinite(v) ? "n/a" : Number(v).toFixed(d); }
function fmtInt(v) { return v === null || v === undefined || !isFinite(v) ? "n/a" : Math.round(v).toLocaleString("en-US"); }
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"})[c]); }

function lineChart(box, series, yfmt) {
  box.textContent = "";
  const W = 420, H = 170, L = 48, R = 8, T = 8, B = 22;
  const pts = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1])));
  if (!pts.length) { box.innerHTML = '<div class="na" style="height:60px">n/a (no device peak known: set observe.peak_tflops)</div>'; return; }
  const svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: "100%", role: "img"}, box);
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y1 += Math.abs(y1) * 0.05 + 1e-9; y0 -= Math.abs(y0) * 0.05 + 1e-9; }
  const pad = (y1 - y0) * 0.05; const nonNeg = y0 >= 0; y0 -= pad; y1 += pad; if (nonNeg && y0 < 0) y0 = 0;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#ccc"}, svg);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    el("line", {x1: L, x2: W - R, y1: Y(y), y2: Y(y), stroke: "#eee"}, svg);
    el("text", {x: L - 4, y: Y(y) + 3, "text-anchor": "end"}, svg).textContent = yfmt(y);
  }
  const ticks = [...new Set([0, 1, 2, 3, 4].map((i) => Math.round(x0 + (x1 - x0) * i / 4)))];
  for (const x of ticks) el("text", {x: X(x), y: H - 6, "text-anchor": "middle"}, svg).textContent = x;
  series.forEach((s, k) => {
    const p = s.points.filter((q) => q[1] !== null && isFinite(q[1]));
    el("polyline", {points: p.map((q) => X(q[0]).toFixed(1) + "," + Y(q[1]).toFixed(1)).join(" "), fill: "none",
      stroke: s.color, "stroke-width": 1.6, "data-series": s.name, "data-points": p.length}, svg);
    if (p.length === 1) el("circle", {cx: X(p[0][0]), cy: Y(p[0][1]), r: 2.5, fill: s.color}, svg);
    if (series.length > 1) {
      el("rect", {x: L + 8 + k * 90, y: T + 4, width: 10, height: 3, fill: s.color}, svg);
      el("text", {x: L + 22 + k * 90, y: T + 9}, svg).textContent = s.name;
    }
  });
}

function timeline(box, plans, worldSize) {
  box.textContent = "";
  if (!plans.length) { box.innerHTML = '<span class="na">no step yet</span>'; return; }
  const rowH = Math.max(8, Math.min(18, Math.floor(160 / Math.max(1, worldSize)))), L = 90, W = 1000, gap = 14;
  const span = (p) => p.microBatches.reduce((s, mb) => s + Math.max(mb.measuredMs, mb.predictedMs), 0);
  const maxMs = Math.max(1, ...plans.map(span));
  const blockH = worldSize * rowH;
  const H = plans.length * (blockH + gap) + 16;
  const svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: "100%", id: "timeline-svg"}, box);
  const X = (ms) => ms / maxMs * (W - L - 10);
  plans.forEach((p, k) => {
    const top = k * (blockH + gap);
    const t = el("text", {x: 2, y: top + 11}, svg); t.textContent = "step " + p.step;
    const t2 = el("text", {x: 2, y: top + 23}, svg); t2.textContent = Math.round(p.measuredMs) + "/" + Math.round(p.predictedMs) + " ms";
    el("rect", {x: L, y: top, width: W - L - 10, height: blockH, fill: "#fafafa", stroke: "#eee"}, svg);
    let off = 0;
    p.microBatches.forEach((mb, i) => {
      if (i > 0) el("line", {x1: L + X(off), x2: L + X(off), y1: top, y2: top + blockH, stroke: "#bbb", "stroke-dasharray": "2,2"}, svg);
      for (const g of mb.groups) {
        const r0 = Math.min(...g.ranks), y = top + r0 * rowH + 1, h = g.ranks.length * rowH - 2;
        const bar = el("rect", {x: L + X(off), y, width: Math.max(1, X(g.measuredMs)), height: h, fill: color(g.degree),
          "fill-opacity": 0.85, class: "group", "data-step": p.step, "data-degree": g.degree}, svg);
        const tip = el("title", {}, bar);
        tip.textContent = "step " + p.step + " micro-batch " + (i + 1) + ": SP degree " + g.degree + " on ranks " +
          g.ranks.join(",") + ", " + g.lengths.length + " sequence(s) (" + g.lengths.reduce((a, b) => a + b, 0) +
          " tokens); measured " + Math.round(g.measuredMs) + " ms, predicted " + Math.round(g.predictedMs) + " ms";
        el("rect", {x: L + X(off), y, width: Math.max(1, X(g.predictedMs)), height: h, fill: "none", stroke: "#1d2330",
          "stroke-width": 1, "stroke-dasharray": "3,2", class: "predicted"}, svg);
      }
      off += Math.max(mb.measuredMs, mb.predictedMs);
    });
  });
  el("text", {x: W - 10, y: H - 3, "text-anchor": "end"}, svg).textContent = Math.round(maxMs) + " ms";
}

function render(s) {
  const last = s.steps[s.steps.length - 1];
  $("title").textContent = "flexsp " + s.info.runId;
  $("step").textContent = last ? last.step + "/" + s.info.totalSteps : "0/" + s.info.totalSteps;
  $("loss").textContent = last ? fmt(last.loss, 4) : "-";
  $("tps").textContent = last ? fmtInt(last.tokensPerS) : "-";
  $("mfu").textContent = last && last.mfu !== null ? (100 * last.mfu).toFixed(2) + "%" : "n/a";
  $("tflops").textContent = last && last.tflopsPerDevice !== null ? last.tflopsPerDevice.toPrecision(3) : "n/a";
  $("gnorm").textContent = last ? fmt(last.gradNorm, 3) : "-";
  $("lr").textContent = last ? Number(last.lr).toExponential(2) : "-";
  $("live").textContent = s.live ? "live" : "from the run's files";
  const xs = (f) => s.steps.map((p) => [p.step, f(p)]);
  lineChart($("chart-loss"), [{name: "loss", color: "#c0392b", points: xs((p) => p.loss)}], (v) => v.toFixed(2));
  lineChart($("chart-tps"), [{name: "tokens/s", color: "#2874a6", points: xs((p) => p.tokensPerS)}], (v) => Math.round(v));
  lineChart($("chart-mfu"), [{name: "MFU", color: "#7d3c98", points: xs((p) => p.mfu === null ? null : 100 * p.mfu)}], (v) => v.toFixed(2) + "%");
  lineChart($("chart-time"), [
    {name: "measured", color: "#d35400", points: xs((p) => p.wallMs)},
    {name: "predicted", color: "#117a65", points: xs((p) => p.predictedMs)},
  ], (v) => Math.round(v) + " ms");
  const world = Math.max(s.ranks.length, ...s.plans.flatMap((p) => p.microBatches.flatMap((m) => m.groups.flatMap((g) => g.ranks.map((r) => r + 1)))));
  timeline($("timeline"), s.plans, world);
  const degrees = [...new Set(s.plans.flatMap((p) => p.microBatches.flatMap((m) => m.groups.map((g) => g.degree))))].sort((a, b) => a - b);
  $("legend").innerHTML = degrees.map((d) => '<span><i style="background:' + color(d) + '"></i>SP ' + d + "</span>").join("");
  const age = (t) => t ? ((s.now - t) / 1000).toFixed(1) + " s" : "n/a";
  $("nodes").innerHTML = "<tr><th>node</th><th>host</th><th>state</th><th>heartbeat age</th></tr>" + s.nodes.map((n) =>
    "<tr><td>" + esc(n.name) + "</td><td>" + esc(n.host) + "</td><td class=" + (n.up === null ? "na>unknown" : n.up ? "ok>up" : "bad>lost") + "</td><td>" + age(n.lastHeartbeat) + "</td></tr>").join("");
  $("ranks").innerHTML = "<tr><th>rank</th><th>host</th><th>device</th><th>seen</th><th>measured/pred</th><th>peak TF/s</th></tr>" + s.ranks.map((r) =>
    "<tr" + (r.straggler ? ' class="bad"' : "") + "><td>" + r.rank + "</td><td>" + esc(r.host) + "</td><td>" + esc(r.deviceName) + "</td><td>" +
    (r.lastSeenAgeS === null ? "n/a" : r.lastSeenAgeS.toFixed(1) + " s") + "</td><td>" + (r.ratio === null ? "n/a" : r.ratio.toFixed(2) + "x") +
    (r.straggler ? " straggler" : "") + "</td><td>" + (r.peakTflops === null ? "n/a" : r.peakTflops) + "</td></tr>").join("");
  const alerts = [];
  if (s.hang) alerts.push("<div class=bad id=hang>" + esc(s.hang.text) + "</div>");
  for (const r of s.stragglers.slice().reverse()) alerts.push('<div class="straggler">' + esc(r.text) + "</div>");
  for (const h of s.hangs.slice().reverse()) if (!s.hang || h.step !== s.hang.step) alerts.push("<div>" + esc(h.text) + "</div>");
  $("alerts").innerHTML = alerts.length ? alerts.join("") : '<span class="na">none</span>';
  const i = s.info;
  $("info").innerHTML = [["run", i.runId], ["directory", i.runDir], ["model", i.model], ["config fingerprint", i.fingerprintHash.slice(0, 16)],
    ["dataset hash", i.datasetHash.slice(0, 16)], ["profile", i.profileSource + " (hash " + i.profileHash.slice(0, 16) + ")"],
    ["last checkpoint", s.lastCheckpoint ? s.lastCheckpoint.name : "none"], ["resume", i.resumeCommand],
    ["tokens so far", last ? fmtInt(last.consumedTokens) : "0"]].map((r) => "<tr><th>" + r[0] + "</th><td>" + esc(r[1]) + "</td></tr>").join("");
  $("config").textContent = i.configText;
  document.body.dataset.step = last ? String(last.step) : "0";
}

let polling = false;
async function poll() {
  polling = true;
  for (;;) {
    try { const r = await fetch("/api/state" + q); if (r.ok) render(await r.json()); } catch (e) { /* retry */ }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
if (window.EventSource) {
  const es = new EventSource("/events" + q);
  es.onmessage = (e) => render(JSON.parse(e.data));
  es.onerror = () => { if (es.readyState === 2 && !polling) poll(); };
} else poll();
</script></body></html>
`;
