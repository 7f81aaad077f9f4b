// A wave of node failures (a switch dies and 32 SSH connections fail at once) as one report: the nodes grouped by
// the same reason (their own names and addresses taken out of it), every node named once, one line per reason.

/** One failed node: its display name (`node 3 (10.0.0.4)`), address and error text. */
export interface NodeFailure {
  name: string;
  host: string;
  error: string;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The first line of a failure's error without the node's name in front (errors often start with it). */
export function ownReason(f: NodeFailure): string {
  return f.error.split("\n")[0].replace(new RegExp(`^(?:${escape(f.name)}(?:: )?)+`), "").trim();
}

/** The reason of a failure without the node's own name and address (so that a wave's reasons compare equal). */
export function genericReason(f: NodeFailure): string {
  let r = ownReason(f);
  r = r.replace(new RegExp(escape(f.name), "g"), "<node>");
  r = r.replace(new RegExp(`${escape(f.host)}(?![\\w.])`, "g"), "<host>");
  return r.trim();
}

/**
 * One report for all failed nodes of `total`: `launch failed on 5 of 32 nodes:` then per distinct reason a line with
 * the reason (host shown as <host>) and the nodes it hit.
 */
export function waveReport(what: string, failures: NodeFailure[], total: number): string {
  const groups = new Map<string, NodeFailure[]>();
  for (const f of failures) {
    const key = genericReason(f);
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const lines = [`${what} on ${failures.length} of ${total} node(s):`];
  for (const [reason, fs] of groups) {
    if (fs.length === 1) lines.push(`  ${fs[0].name}: ${ownReason(fs[0])}`);
    else lines.push(`  ${fs.length} nodes: ${reason}\n    ${fs.map((f) => f.name).join(", ")}`);
  }
  return lines.join("\n");
}
