// Rendering benchmark sections: aligned tables on stdout, JSON files under bench/results/.

/** One part of the benchmark. */
export interface BenchSection {
  title: string;
  rows: Record<string, string | number>[];
  json: unknown;
  /** Further tables of the same part (printed after the first, their rows also in `json`). */
  extra?: { title: string; rows: Record<string, string | number>[] }[];
}

/** Prints a section as an aligned table. */
export function printSection(s: BenchSection): void {
  console.log(`\n## ${s.title}\n`);
  if (s.rows.length === 0) {
    console.log("(no rows)");
    return;
  }
  const cols = [...new Set(s.rows.flatMap((r) => Object.keys(r)))];
  const width = cols.map((c) => Math.max(c.length, ...s.rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join("  ").trimEnd();
  console.log(line(cols));
  console.log(line(width.map((w) => "-".repeat(w))));
  for (const r of s.rows) console.log(line(cols.map((c) => String(r[c] ?? ""))));
  for (const e of s.extra ?? []) printSection({ title: e.title, rows: e.rows, json: undefined });
}
