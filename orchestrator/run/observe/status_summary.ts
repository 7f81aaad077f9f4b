// `deno task status RUN_DIR`: a terminal summary of a running or finished run from its files: state, progress and
// ETA, the last step's loss, tokens/s, TFLOP/s and MFU, the slowest ranks (measured over predicted group time over
// the last steps), straggler and hang reports, the last checkpoint and the command that resumes the run.

import { readLedger } from "../../ledger/ledger.ts";
import type { RunState } from "./run_state.ts";
import { rankGroupTimes } from "./stragglers.ts";
import type { lockState } from "../run_lock.ts";

function dur(s: number): string {
  if (!Number.isFinite(s)) return "n/a";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** The summary's lines (see the file header). */
export async function statusLines(
  st: RunState,
  now = Date.now(),
  lock?: ReturnType<typeof lockState>,
): Promise<string[]> {
  const i = st.info;
  const steps = st.steps;
  const last = steps[steps.length - 1];
  const out = [`run ${i.runId} (${i.runDir})`];
  if (!last) {
    out.push("no step finished yet", `resume: ${i.resumeCommand}`);
    return out;
  }
  const recent = steps.slice(-20);
  const perStepS = recent.length > 1
    ? (Date.parse(recent[recent.length - 1].time) - Date.parse(recent[0].time)) / 1000 / (recent.length - 1)
    : last.wallMs / 1000;
  const ago = (now - Date.parse(last.time)) / 1000;
  const done = last.step >= i.totalSteps;
  // The run directory's lock says for sure on this host; otherwise the age of the last step is the guess.
  const state = done
    ? "finished"
    : lock?.state === "held"
    ? `running (process ${lock.holder!.pid}; last step ${dur(ago)} ago)`
    : lock?.state === "free"
    ? `stopped at step ${last.step} (no orchestrator runs it; last step ${dur(ago)} ago)`
    : ago < Math.max(60, 10 * perStepS)
    ? `running (last step ${dur(ago)} ago)`
    : `stopped at step ${last.step} (last step ${dur(ago)} ago)`;
  out.push(`state: ${state}`);
  const pct = (100 * last.step / Math.max(1, i.totalSteps)).toFixed(0);
  const eta = done ? "" : `; ETA ${dur((i.totalSteps - last.step) * perStepS)} at ${perStepS.toFixed(2)} s/step`;
  out.push(
    `progress: step ${last.step}/${i.totalSteps} (${pct}%), ${
      last.consumedTokens.toLocaleString("en-US")
    } tokens${eta}`,
  );
  out.push(
    `last step: loss ${last.loss.toFixed(4)}, ${Math.round(last.tokensPerS).toLocaleString("en-US")} tok/s, ` +
      `step ${Math.round(last.wallMs)} ms (pred ${Math.round(last.predictedMs)} ms), ` +
      `${last.tflopsPerDevice === null ? "n/a" : last.tflopsPerDevice.toPrecision(3)} TFLOP/s/dev, MFU ` +
      `${last.mfu === null ? "n/a" : `${(100 * last.mfu).toFixed(1)}%`}, grad norm ` +
      `${last.gradNorm === null ? "n/a" : last.gradNorm.toFixed(3)}, lr ${last.lr.toExponential(2)}`,
  );
  // Slowest ranks over the last 10 steps of the ledger.
  const recs = (await readLedger(`${i.runDir}/ledger.jsonl`)).slice(-10);
  const sum = new Map<number, { m: number; p: number }>();
  for (const r of recs) {
    for (const [rank, t] of rankGroupTimes(r)) {
      const s = sum.get(rank) ?? { m: 0, p: 0 };
      s.m += t.measured;
      s.p += t.predicted;
      sum.set(rank, s);
    }
  }
  const slow = [...sum].filter(([, s]) => s.p > 0).map(([rank, s]) => ({ rank, ratio: s.m / s.p }))
    .sort((a, b) => b.ratio - a.ratio).slice(0, 3);
  if (slow.length) {
    out.push(
      `slowest ranks (measured/predicted group time, last ${recs.length} steps): ` + slow.map((s) => {
        const r = st.ranks.find((x) => x.rank === s.rank);
        return `rank ${s.rank}${r ? ` on ${r.host} (device ${r.device})` : ""} ${s.ratio.toFixed(2)}x`;
      }).join(", "),
    );
  }
  if (st.stragglers.length) {
    out.push(`stragglers reported: ${st.stragglers.length}; last: ${st.stragglers[st.stragglers.length - 1].text}`);
  }
  if (st.hangs.length) {
    out.push(`overdue steps reported: ${st.hangs.length}; last: ${st.hangs[st.hangs.length - 1].text}`);
  }
  out.push(
    `last checkpoint: ${st.lastCheckpoint ? `${st.lastCheckpoint.name} (step ${st.lastCheckpoint.step})` : "none"}`,
  );
  if (!done) out.push(`resume: ${i.resumeCommand}`);
  else out.push(`resume command (nothing left to do): ${i.resumeCommand}`);
  return out;
}
