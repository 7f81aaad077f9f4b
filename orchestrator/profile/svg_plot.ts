// Minimal SVG charts for the profile report: scatter/line charts with linear or log axes and a legend, and a
// labelled heatmap. Plain strings, no dependencies.

/** One data series. */
export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  /** Markers, a polyline, or both. */
  mode: "points" | "line" | "both";
  /** Marker shape (points). */
  marker?: "circle" | "square" | "diamond";
  /** Dashed line. */
  dashed?: boolean;
}

/** Options of {@link lineChart}. */
export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
  logX?: boolean;
  logY?: boolean;
}

/** HTML-escapes text. */
export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Short number label. */
export function fmtNum(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e9 || a < 1e-3) return v.toExponential(1);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return Number(v.toPrecision(3)).toString();
}

function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
    }
    return out.length >= 2 ? out : [lo, hi];
  }
  const span = hi - lo || 1;
  const step0 = 10 ** Math.floor(Math.log10(span / 5));
  const step = [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= 6)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function marker(shape: Series["marker"], x: number, y: number, color: string, title: string): string {
  const t = `<title>${esc(title)}</title>`;
  if (shape === "square") return `<rect x="${x - 3.5}" y="${y - 3.5}" width="7" height="7" fill="${color}">${t}</rect>`;
  if (shape === "diamond") {
    return `<path d="M${x} ${y - 5}L${x + 5} ${y}L${x} ${y + 5}L${x - 5} ${y}Z" fill="none" stroke="${color}" ` +
      `stroke-width="1.5">${t}</path>`;
  }
  return `<circle cx="${x}" cy="${y}" r="3.5" fill="${color}" fill-opacity="0.8">${t}</circle>`;
}

/** A chart of series over shared axes (SVG text). */
export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 560, H = o.height ?? 340;
  const L = 64, R = 16, T = 30, B = 46;
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) =>
    Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0)
  );
  if (pts.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="60"><text x="8" y="30">${
      esc(o.title)
    }: no data</text></svg>`;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (!o.logY) y0 = Math.min(0, y0);
  if (!o.logX && x0 > 0 && x0 < (x1 - x0) * 0.5) x0 = 0;
  if (x1 === x0) x1 = x0 + (o.logX ? x0 : 1);
  if (y1 === y0) y1 = y0 + (o.logY ? y0 : 1);
  if (!o.logY) y1 += (y1 - y0) * 0.05;
  const tx = (x: number) =>
    L + ((o.logX ? Math.log(x) - Math.log(x0) : x - x0) / (o.logX ? Math.log(x1) - Math.log(x0) : x1 - x0)) *
      (W - L - R);
  const ty = (y: number) =>
    H - B - ((o.logY ? Math.log(y) - Math.log(y0) : y - y0) / (o.logY ? Math.log(y1) - Math.log(y0) : y1 - y0)) *
      (H - T - B);
  const parts: string[] = [];
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(o.title)}</text>`);
  for (const v of ticks(x0, x1, Boolean(o.logX))) {
    const x = tx(v);
    parts.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#eee"/>`);
    parts.push(`<text x="${x}" y="${H - B + 16}" text-anchor="middle">${fmtNum(v)}</text>`);
  }
  for (const v of ticks(y0, y1, Boolean(o.logY))) {
    const y = ty(v);
    parts.push(`<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${y + 4}" text-anchor="end">${fmtNum(v)}</text>`);
  }
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(
    `<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})">${
      esc(o.yLabel)
    }</text>`,
  );
  for (const s of o.series) {
    const ok = s.points.filter(([x, y]) =>
      Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0)
    );
    if (s.mode !== "points" && ok.length > 1) {
      const d = [...ok].sort((a, b) => a[0] - b[0]).map(([x, y], i) =>
        `${i ? "L" : "M"}${tx(x).toFixed(1)} ${ty(y).toFixed(1)}`
      )
        .join("");
      parts.push(
        `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${
          s.dashed ? ' stroke-dasharray="5 3"' : ""
        }/>`,
      );
    }
    if (s.mode !== "line") {
      for (const [x, y] of ok) {
        parts.push(marker(s.marker, tx(x), ty(y), s.color, `${s.name}: ${fmtNum(x)}, ${fmtNum(y)}`));
      }
    }
  }
  const legend = o.series.filter((s) => s.name && s.points.length > 0);
  const legendW = 24 + 6.2 * Math.max(0, ...legend.map((s) => s.name.length));
  if (legend.length) {
    parts.push(
      `<rect x="${L + 2}" y="${T + 2}" width="${legendW}" height="${legend.length * 15 + 4}" fill="#fff" ` +
        `fill-opacity="0.8"/>`,
    );
  }
  legend.forEach((s, i) => {
    const y = T + 12 + i * 15;
    const x = L + 10;
    if (s.mode === "line") {
      parts.push(
        `<line x1="${x - 6}" y1="${y - 4}" x2="${x + 6}" y2="${y - 4}" stroke="${s.color}" stroke-width="2"/>`,
      );
    } else parts.push(marker(s.marker, x, y - 4, s.color, s.name));
    parts.push(`<text x="${x + 12}" y="${y}">${esc(s.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" ` +
    `font-size="11">${parts.join("")}</svg>`;
}

/** A square heatmap with a value label per cell; flagged cells get a red border. */
export function heatmap(o: {
  title: string;
  labels: string[];
  values: (number | null)[][];
  format: (v: number) => string;
  /** Larger is better (green) unless false. */
  higherIsBetter?: boolean;
  flagged?: (i: number, j: number) => boolean;
}): string {
  const n = o.labels.length;
  const cell = 70, L = 120, T = 40;
  const W = L + n * cell + 10, H = T + n * cell + 10;
  const vals = o.values.flat().filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = Math.min(...vals), hi = Math.max(...vals);
  // A log scale when the values span more than a decade (links of very different speeds).
  const log = lo > 0 && hi / lo > 10;
  const color = (v: number) => {
    let f = hi > lo ? (log ? Math.log(v / lo) / Math.log(hi / lo) : (v - lo) / (hi - lo)) : 1;
    if (o.higherIsBetter === false) f = 1 - f;
    return `hsl(${Math.round(f * 120)},65%,${Math.round(75 - f * 15)}%)`;
  };
  const parts = [`<text x="${W / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(o.title)}</text>`];
  o.labels.forEach((l, i) => {
    parts.push(`<text x="${L - 6}" y="${T + i * cell + cell / 2 + 4}" text-anchor="end">${esc(l)}</text>`);
    parts.push(
      `<text x="${L + i * cell + cell / 2}" y="${T - 6}" text-anchor="middle">${esc(l.split(" ")[0])}</text>`,
    );
  });
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = o.values[i][j];
      const x = L + j * cell, y = T + i * cell;
      const flag = o.flagged?.(i, j) ?? false;
      parts.push(
        `<rect x="${x + 1}" y="${y + 1}" width="${cell - 2}" height="${cell - 2}" fill="${
          v === null ? "#f4f4f4" : color(v)
        }" stroke="${flag ? "#d00" : "#fff"}" stroke-width="${flag ? 3 : 1}"/>`,
      );
      parts.push(
        `<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle">${v === null ? "-" : esc(o.format(v))}${
          flag ? " !" : ""
        }</text>`,
      );
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" ` +
    `font-size="11">${parts.join("")}</svg>`;
}
