// A run's observable state from its files alone (`deno task dashboard RUN_DIR`, `deno task status RUN_DIR`): run.json,
// config.yaml, ledger.jsonl, observe.jsonl (rank placement, straggler and hang reports) and the checkpoints'
// `latest`. Heartbeats are not in the files: node state is unknown there.

import { UserError } from "../../errors.ts";
import { readLedger } from "../../ledger/ledger.ts";
import { readRunInfo } from "../run_dir.ts";
import type { ObserveEvent } from "./observer.ts";
import { type RunInfoView, RunState } from "./run_state.ts";
import { StragglerDetector } from "./stragglers.ts";

/** The newest checkpoint named by `<root>/latest`, or null. */
export async function readLatestCheckpoint(root: string): Promise<{ step: number; name: string } | null> {
  const name = (await Deno.readTextFile(`${root}/latest`).catch(() => "")).trim();
  const m = /^step-(\d+)$/.exec(name);
  return m ? { step: Number(m[1]), name } : null;
}

/** The lines of RUN_DIR/observe.jsonl (a torn last line is ignored). */
export async function readObserveEvents(runDir: string): Promise<ObserveEvent[]> {
  const text = await Deno.readTextFile(`${runDir}/observe.jsonl`).catch(() => "");
  const out: ObserveEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch { /* torn */ }
  }
  return out;
}

function shellArg(s: string): string {
  return /^[A-Za-z0-9_./=:,@+-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Builds a RunState from a run directory's files; a directory that is not a run is a UserError. */
export async function loadRunState(runDir: string): Promise<RunState> {
  const info = await readRunInfo(runDir);
  if (!info) throw new UserError(`${runDir}: not a run directory (no run.json); pass the directory of a run`);
  const fp = info.fingerprint as { training?: { steps?: number }; model?: Record<string, unknown> };
  const abs = await Deno.realPath(runDir);
  const view: RunInfoView = {
    runId: info.runId,
    name: info.name,
    runDir: abs,
    totalSteps: Number(fp.training?.steps ?? 0),
    model: JSON.stringify(fp.model ?? {}),
    configText: await Deno.readTextFile(`${runDir}/config.yaml`).catch(() => ""),
    fingerprintHash: info.fingerprintHash,
    datasetHash: info.datasetHash,
    profileHash: info.profileHash,
    profileSource: "as recorded in run.json",
    resumeCommand: "deno task launch " + [...info.argv, "--resume", abs].map(shellArg).join(" "),
  };
  const st = new RunState(view);
  const events = await readObserveEvents(runDir);
  const attach = events.filter((e) => e.type === "attach").pop();
  if (attach && attach.type === "attach") {
    st.ranks = attach.ranks;
    st.nodes = attach.nodes.map((n) => ({ ...n, up: null }));
  }
  const det = new StragglerDetector({ factor: Infinity, steps: 1, minMs: 0 });
  for (const r of await readLedger(`${runDir}/ledger.jsonl`)) {
    st.addRecord(r, false);
    det.observe(r, st.ranks);
  }
  for (const [rank, ratio] of det.ratios) st.ratios.set(rank, ratio);
  for (const e of events) {
    if (e.type === "straggler") st.stragglers.push(e);
    else if (e.type === "hang") st.hangs.push(e);
  }
  st.lastCheckpoint = await readLatestCheckpoint(`${runDir}/checkpoints`);
  return st;
}
