// The readable stdout summary of a profile: cluster, compute fit and its errors, memory and token capacity,
// all-to-all bandwidth per degree, the node-pair matrix, the per-degree validation and the warnings.

import type { ProfileDoc } from "../config/profile_doc.ts";

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** Left-aligned columns. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

/** The summary printed after a profile run. */
export function formatProfileSummary(doc: ProfileDoc, paths: { profile?: string; report?: string } = {}): string {
  const out = [
    ...clusterLines(doc),
    "",
    ...computeLines(doc),
    "",
    ...memoryLines(doc),
    "",
    ...networkLines(doc),
    ...(doc.validation ? ["", ...validationLines(doc, doc.validation)] : []),
    "",
    constantsLine(doc.constants),
  ];
  for (const w of doc.warnings) out.push(`warning: ${w}`);
  if (paths.profile) out.push(`wrote ${paths.profile}`);
  if (paths.report) out.push(`report ${paths.report}`);
  return out.join("\n");
}

/** The cluster measured: its size, duration and one line per node. */
function clusterLines(doc: ProfileDoc): string[] {
  const out: string[] = [];
  const fp = doc.fingerprint;
  const devices = fp.cluster.nodes.reduce((s, n) => s + n.devices, 0);
  out.push(
    `profile of ${doc.config}: ${fp.cluster.nodes.length} node(s), ${devices} device(s), measured in ` +
      `${(doc.durationMs / 1000).toFixed(1)} s (cluster ${fp.clusterHash})`,
  );
  for (const n of fp.nodes) {
    out.push(
      `  node ${n.index} ${n.host} (${n.hostname}): ${n.devices.length}x ${n.devices[0]?.replace(/^\S+:\d+ /, "")}`,
    );
  }
  return out;
}

/** The compute fit per device type, the per-device speeds and the machine's steadiness. */
function computeLines(doc: ProfileDoc): string[] {
  const out: string[] = [];
  out.push("compute: ms = α1·Σs² + α2·Σs + β1 per group, fitted per device type (non-negative least squares)");
  const rows = [[
    "device type",
    "ranks",
    "α1 ms/tok²",
    "α2 ms/tok",
    "β1 ms",
    "R²",
    "fit max err",
    "held-out max err",
    "speed",
  ]];
  for (const t of doc.compute.deviceTypes) {
    rows.push([
      t.type.length > 48 ? t.type.slice(0, 47) + "…" : t.type,
      String(t.ranks.length),
      t.fit.alpha1.toExponential(3),
      t.fit.alpha2.toExponential(3),
      ms(t.fit.beta1),
      t.fit.r2.toFixed(4),
      pct(t.fit.maxRelErr),
      t.heldOut.points ? `${pct(t.heldOut.maxRelErr)} (${t.heldOut.points} pts)` : "-",
      t.speed.toFixed(2),
    ]);
  }
  out.push(table(rows).replace(/^/gm, "  "));
  const slow = doc.compute.perDevice.map((d) => `${d.rank}:${d.speed.toFixed(2)}`).join(" ");
  out.push(`  per-device speed (rank:speed): ${slow}`);
  const f = doc.compute.roundFactors;
  if (f?.length) {
    const lo = Math.min(...f);
    out.push(
      `  machine steadiness: rounds ran at ${f.map((x) => (x / lo).toFixed(2)).join(", ")}x the fastest round's ` +
        `time (the fit uses the fastest)`,
    );
  }
  return out;
}

/** Activation memory per token, model states and the token capacity. */
function memoryLines(doc: ProfileDoc): string[] {
  const out: string[] = [];
  const m = doc.memory;
  out.push(
    `memory (${m.source}): ${m.actMbPerToken.toPrecision(4)} MB activations per token (fit R² ${
      m.actFit.r2.toFixed(4)
    }), model states ${m.modelStateMb.toFixed(2)} MB per device (planner assumes ${
      m.plannerModelStateMb.toFixed(2)
    } MB)`,
  );
  out.push(
    Number.isFinite(m.tokenCapacity)
      ? `  token capacity: ${m.tokenCapacity.toLocaleString("en-US")} tokens per device under a ${
        m.budgetMb.toFixed(0)
      } MB budget`
      : "  token capacity: unknown (set planner.memory_budget_gb or device_memory_gb)",
  );
  return out;
}

/** All-to-all bandwidth per degree and the node-pair matrix. */
function networkLines(doc: ProfileDoc): string[] {
  const out: string[] = [];
  const c = doc.constants;
  if (doc.network.alltoall.length) {
    out.push("network: all-to-all, every aligned group of a degree at once");
    const nrows = [[
      "degree",
      "placement",
      "groups",
      "latency/call",
      "bandwidth",
      "fit R²",
      "v[d] microbench",
      "v[d] used",
    ]];
    for (const a of doc.network.alltoall) {
      const used = (a.spans ? c.bandwidth_gbps.inter : c.bandwidth_gbps.intra)[String(a.degree)];
      nrows.push([
        String(a.degree),
        a.spans ? "across nodes" : "inside a node",
        String(a.groups.length),
        `${ms(a.latencyMs)} ms`,
        `${a.gbps.toFixed(3)} GB/s`,
        a.r2.toFixed(3),
        `${a.effectiveGbps.toPrecision(4)} GB/s`,
        used === undefined
          ? "-"
          : `${used} GB/s${
            doc.network.calibration?.some((k) => k.applied && k.degree === a.degree && k.spans === a.spans)
              ? " (calibrated)"
              : ""
          }`,
      ]);
    }
    out.push(table(nrows).replace(/^/gm, "  "));
  } else {
    out.push("network: no SP group of degree >= 2 on this cluster");
  }
  const p = doc.network.p2p;
  if (p) {
    out.push("  node pairs (latency ms / bandwidth GB/s):");
    const prow = [["", ...p.hosts.map((h, i) => `${i}:${h}`)]];
    p.hosts.forEach((h, i) => {
      prow.push([
        `${i}:${h}`,
        ...p.hosts.map((_, j) => {
          const l = p.latencyMs[i][j], g = p.gbps[i][j];
          const flag = p.slow.some((s) => (s.a === i && s.b === j) || (s.a === j && s.b === i)) && i !== j
            ? " SLOW"
            : "";
          return l === null || g === null ? "-" : `${ms(l)} / ${g.toFixed(3)}${flag}`;
        }),
      ]);
    });
    out.push(table(prow).replace(/^/gm, "    "));
  }
  return out;
}

/** The validation against real steps: errors overall, per step, of the planner's plans and per degree. */
function validationLines(doc: ProfileDoc, v: NonNullable<ProfileDoc["validation"]>): string[] {
  const out: string[] = [];
  const c = doc.constants;
  out.push(
    `validation (real steps, one sequence per group, predicted vs measured): median error ${pct(v.medianRelErr)}, max ${
      pct(v.maxRelErr)
    } over ${v.points.length} points${
      v.uncalibrated
        ? ` (with the microbenchmark's v[d]: median ${pct(v.uncalibrated.medianRelErr)}, max ${
          pct(v.uncalibrated.maxRelErr)
        })`
        : ""
    }`,
  );
  if (v.stepOverheadMs !== undefined) {
    out.push(
      `  per step outside the micro-batches (gradient all-reduce, optimizer): ${ms(v.stepOverheadMs)} ms ` +
        `(${c.step_ms ? "the cost model's step_ms" : "not in the cost model"})`,
    );
  }
  if (v.planned) {
    const e = (s: { medianAbs: number; median: number }) =>
      `median |error| ${pct(s.medianAbs)} (signed ${s.median >= 0 ? "+" : ""}${(s.median * 100).toFixed(1)}%)`;
    out.push(
      `  the planner's own plans, ${v.planned.steps} step(s) run: step time ${e(v.planned.step)}, group time ` +
        `${e(v.planned.group)}${
          v.planned.speedAfter !== undefined && Math.abs(v.planned.speedAfter - 1) > 0.15
            ? ` (the devices ran at ${v.planned.speedAfter}x their validation speed after them)`
            : ""
        }`,
    );
  }
  if (v.degreeOne) {
    out.push(
      `  degree-1 steps against the compute grid's fit: ${v.degreeOne.computeScale}x its compute plus ` +
        `${ms(v.degreeOne.microBatchMs)} ms per micro-batch${c.micro_batch_ms === undefined ? " (not applied)" : ""}`,
    );
  }
  const degs = [...new Set(v.points.map((x) => `${x.degree}${x.spans ? "x" : ""}`))];
  for (const d of degs) {
    const mine = v.points.filter((x) => `${x.degree}${x.spans ? "x" : ""}` === d);
    out.push(
      `  degree ${d.replace("x", " (across nodes)")}: ` +
        mine.map((x) => `${x.length} tok ${ms(x.measuredMs)}/${ms(x.predictedMs)} ms`).join(", "),
    );
  }
  return out;
}

/** The stored constants in one line. */
function constantsLine(c: ProfileDoc["constants"]): string {
  const bw = (t: Record<string, number>) => Object.entries(t).map(([k, v]) => `${k}: ${v}`).join(", ") || "-";
  return `constants: alpha1 ${c.alpha1}, alpha2 ${c.alpha2}, beta1 ${c.beta1}, act_mb_per_token ${c.act_mb_per_token}, ` +
    `bandwidth intra {${bw(c.bandwidth_gbps.intra)}} inter {${bw(c.bandwidth_gbps.inter)}}, device_speed ${
      JSON.stringify(c.device_speed ?? {})
    }, fixed ms per micro-batch ${c.micro_batch_ms ?? 0}, per group {${bw(c.group_ms ?? {})}}, per step ${
      c.step_ms ?? 0
    }`;
}
