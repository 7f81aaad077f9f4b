// The run directory: `run.json` (identity: config, fingerprint, dataset and profile hashes), `ledger.jsonl`,
// `checkpoints/`, `logs/`. New runs go under `runs/<name>-<timestamp>`; `--resume` without a directory picks the
// newest run of the same config name.

import { UserError } from "../errors.ts";
import { writeAtomic } from "../../core/atomic_write.ts";

/** `run.json`: what a run is, checked on every resume. */
export interface RunInfo {
  version: 1;
  runId: string;
  name: string;
  /** Absolute path of the config file it was started with. */
  config: string;
  createdAt: string;
  /** See fingerprint.ts. */
  fingerprint: Record<string, unknown>;
  fingerprintHash: string;
  datasetHash: string;
  profileHash: string;
  /** Command-line arguments of the first launch. */
  argv: string[];
}

/** Default parent of run directories. */
export const RUNS_DIR = "runs";

/** A new run directory name: `<name>-YYYYMMDD-HHMMSS`. */
export function newRunDirName(name: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return `${name.replace(/[^A-Za-z0-9._-]/g, "_")}-${stamp}`;
}

/** Reads `run.json` of a directory, or undefined when there is none. */
export async function readRunInfo(dir: string): Promise<RunInfo | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/run.json`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new UserError(`${dir}/run.json: cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text) as RunInfo;
  } catch (e) {
    throw new UserError(`${dir}/run.json: not valid JSON (${(e as Error).message})`);
  }
}

/** Writes `run.json` atomically. */
export async function writeRunInfo(dir: string, info: RunInfo): Promise<void> {
  await writeAtomic(`${dir}/run.json`, JSON.stringify(info, null, 2) + "\n");
}

/** The newest run of config `name` under `parent` (by creation time in run.json), or undefined. */
export async function findLatestRun(name: string, parent = RUNS_DIR): Promise<string | undefined> {
  let best: { dir: string; created: string } | undefined;
  try {
    for await (const e of Deno.readDir(parent)) {
      if (!e.isDirectory) continue;
      const dir = `${parent}/${e.name}`;
      const info = await readRunInfo(dir).catch(() => undefined);
      if (!info || info.name !== name) continue;
      if (!best || info.createdAt > best.created) best = { dir, created: info.createdAt };
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  return best?.dir;
}
