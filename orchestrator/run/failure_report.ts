// The report of a failed step: the cause (the root cause of the faults) with its host, devices and the SP groups and sequences it
// held in that step, the victims (faults that followed it), and the last log lines. A wave of lost nodes (a switch,
// a rack) is one grouped report instead (cluster/failure_wave.ts): every lost node named once, one line per reason.

import type { ExecutorStepPlan } from "../../core/protocol.ts";
import { type Fault, type RankPlace, rankRanges, rootCause } from "../cluster/fault.ts";
import { waveReport } from "../cluster/failure_wave.ts";

/** Ranks a fault concerns: its rank, or every rank of its node. */
export function faultRanks(f: Fault, places: RankPlace[]): RankPlace[] {
  return f.rank !== undefined ? places.filter((p) => p.rank === f.rank) : places.filter((p) => p.node === f.node);
}

/** The ranks one by one when few, else as ranges (a lost node of 100,000 devices stays one short line). */
function rankList(ps: RankPlace[]): string {
  if (ps.length <= 8) return ps.map((p) => `rank ${p.rank} (device ${p.device}, ${p.deviceName ?? p.kind})`).join(", ");
  const kinds = [...new Set(ps.map((p) => p.kind))].join(", ");
  return `${ps.length} ranks ${rankRanges(ps.map((p) => p.rank))} (devices ${rankRanges(ps.map((p) => p.device))}, ` +
    `${kinds})`;
}

/** Multi-line report of faults during `phase` (cause first, see `rootCause` in cluster/fault.ts), with the step plan if a step ran. */
export function failureReport(
  phase: string,
  faults: Fault[],
  places: RankPlace[],
  plan?: ExecutorStepPlan,
): string {
  const cause = rootCause(faults);
  const lost = faults.filter((f) => f.kind === "node_lost");
  if (lost.length > 1) return waveFailure(phase, lost, faults, places);
  const ranks = faultRanks(cause, places);
  const host = cause.node.inventory?.hostname ?? cause.node.config.host;
  const lines = [
    `${phase} failed: ${cause.rank !== undefined ? `rank ${cause.rank}: ` : ""}${cause.reason}`,
    `  cause: ${cause.node.name}, hostname ${host}: ${rankList(ranks) || "no ranks"}`,
  ];
  if (plan) {
    const mine = new Set(ranks.map((p) => p.rank));
    plan.microBatches.forEach((mb, i) => {
      for (const g of mb.groups) {
        if (!g.ranks.some((r) => mine.has(r))) continue;
        const seqs = g.sequences.length
          ? g.sequences.map((s) => `${s.id} (${s.length} tokens)`).join(", ")
          : "no sequences (idle)";
        lines.push(
          `  step ${plan.step}, micro-batch ${i}: SP group of degree ${g.degree} on ranks ${g.ranks.join(",")} ` +
            `with sequences ${seqs}`,
        );
      }
    });
  }
  consequences(lines, faults.filter((f) => f !== cause));
  if (cause.logTail?.trim()) {
    // Protocol lines the executor printed are in the log too; show what it wrote besides them.
    const all = cause.logTail.trim().split("\n");
    const text = all.filter((l) => !l.startsWith("[stdout] "));
    lines.push(`  last log lines of ${cause.rank !== undefined ? `rank ${cause.rank}` : "the agent"}:`);
    for (const l of (text.length ? text : all).slice(-8)) lines.push(`    ${l.slice(0, 300)}`);
  }
  return lines.join("\n");
}

/** The faults that followed the cause, at most 8 named. */
function consequences(lines: string[], victims: Fault[]): void {
  if (!victims.length) return;
  lines.push(`  then, as a consequence:`);
  for (const v of victims.slice(0, 8)) {
    const who = v.rank !== undefined ? `rank ${v.rank} on ${v.node.name}` : v.node.name;
    lines.push(`    ${who}: ${v.reason.split("\n")[0]}`);
  }
  if (victims.length > 8) lines.push(`    ... and ${victims.length - 8} more`);
}

/** Several nodes lost in one phase: every one named once, grouped by reason, then the other faults on other nodes. */
function waveFailure(phase: string, lost: Fault[], faults: Fault[], places: RankPlace[]): string {
  const total = new Set(places.map((p) => p.node)).size;
  const failures = [...lost].sort((a, b) => a.node.config.index - b.node.config.index)
    .map((f) => ({ name: f.node.name, host: f.node.config.host, error: f.detail }));
  const lines = [waveReport(`${phase} failed: node lost`, failures, total)];
  const gone = new Set(lost.map((f) => f.node));
  consequences(lines, faults.filter((f) => !gone.has(f.node)));
  return lines.join("\n");
}
