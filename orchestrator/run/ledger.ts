// `ledger.jsonl`: one JSON object per executed step (the plan with its groups, degrees, ranks and sequence ids,
// predicted and measured times, loss, tokens, solve time and whether execution hid it). On resume, records after the
// checkpoint's step move to `ledger.discarded.jsonl` and their plans are replayed, so the ledger reads as one
// uninterrupted run.
//
// Times are in ms. Per group, `measuredMs` is the max over the group's ranks of their measured micro-batch time;
// per micro-batch the max over its groups. Per step, `measuredMs` is the slowest rank's whole step as the executors
// time it (micro-batches, gradient all-reduce, optimizer), `microBatchMs` the sum over micro-batches of their
// measured time (what the plan's `predictedMs` models), `wallMs` dispatch to last result, and
// `overheadMs = wallMs - measuredMs` (dispatch and collect: serialising, pipes through the agents, parsing).

import { writeAtomic } from "../atomic_write.ts";

/** One SP group of a step, as executed. */
export interface LedgerGroup {
  degree: number;
  ranks: number[];
  /** Sequence ids (the sampler's ids into the dataset's sequence table). */
  sequences: number[];
  /** Positions of those sequences in the step's global batch. */
  indices: number[];
  lengths: number[];
  predictedMs: number;
  measuredMs: number;
  /** Mean loss of the group's target tokens (null for an idle group). */
  loss: number | null;
  /** Target tokens of the group. */
  tokens: number;
}

/** One micro-batch of a step. */
export interface LedgerMicroBatch {
  predictedMs: number;
  measuredMs: number;
  groups: LedgerGroup[];
}

/** One line of the ledger. */
export interface LedgerRecord {
  step: number;
  time: string;
  /** Mean next-token loss over the step's target tokens. */
  loss: number;
  /** Tokens processed (sum of sequence lengths). */
  tokens: number;
  /** Tokens with a target (sum of length - 1); the loss is averaged over these. */
  targetTokens: number;
  sequences: number;
  epoch: number;
  lr: number;
  predictedMs: number;
  measuredMs: number;
  microBatchMs: number;
  wallMs: number;
  overheadMs: number;
  /** Orchestrator time spent building and sending the step's commands. */
  dispatchMs: number;
  tokensPerS: number;
  /** Wall time the planner spent on this step's plan (0 when replayed). */
  solveMs: number;
  /** Time the loop waited for the plan after the previous step finished. */
  planWaitMs: number;
  /** Whether the solve ran entirely while the previous step (or the launch) executed. */
  solveHidden: boolean;
  planSource: "solved" | "replayed";
  worldSize: number;
  strategy: string;
  lowerBoundMs: number;
  /** Sequence ids the plan dropped (planner.overflow: drop). */
  dropped: number[];
  plan: { strategy: string; microBatches: LedgerMicroBatch[] };
  /** Tokens of every step of the run up to and including this one (orchestrator/run/observe/). */
  consumedTokens?: number;
  /** L2 norm of the gradient before clipping (null when the executors do not report it). */
  gradNorm?: number | null;
  /** Model TFLOP/s per device over the step's wall time (observe/flops.ts). */
  tflopsPerDevice?: number;
  /** Model FLOPs utilisation against the devices' peaks; null where a peak is unknown (CPUs). */
  mfu?: number | null;
}

/** Appends records to a run's ledger. */
export class Ledger {
  #file: Deno.FsFile;
  readonly path: string;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /** Opens `<runDir>/ledger.jsonl` for appending. */
  static async open(runDir: string): Promise<Ledger> {
    const path = `${runDir}/ledger.jsonl`;
    return new Ledger(path, await Deno.open(path, { append: true, create: true }));
  }

  /** Appends one record (one write of one line). */
  async append(r: LedgerRecord): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(r) + "\n");
    let o = 0;
    while (o < bytes.length) o += await this.#file.write(bytes.subarray(o));
  }

  /** Makes every appended record durable (called before a checkpoint becomes `latest`). */
  async sync(): Promise<void> {
    await this.#file.sync();
  }

  close(): void {
    try {
      this.#file.close();
    } catch { /* closed */ }
  }
}

/** Reads a ledger; a torn last line (a write cut by a kill) is ignored. */
export async function readLedger(path: string): Promise<LedgerRecord[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: LedgerRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch { /* torn line */ }
  }
  return out;
}

/**
 * Cuts the ledger back to the steps up to `step` (rewritten atomically); the records after it are appended to
 * `ledger.discarded.jsonl` and returned (their plans can be replayed).
 */
export async function truncateLedger(runDir: string, step: number): Promise<LedgerRecord[]> {
  const path = `${runDir}/ledger.jsonl`;
  const all = await readLedger(path);
  const keep = all.filter((r) => r.step <= step);
  const drop = all.filter((r) => r.step > step);
  if (drop.length) {
    const f = await Deno.open(`${runDir}/ledger.discarded.jsonl`, { append: true, create: true });
    try {
      const bytes = new TextEncoder().encode(drop.map((r) => JSON.stringify(r)).join("\n") + "\n");
      let o = 0;
      while (o < bytes.length) o += await f.write(bytes.subarray(o));
    } finally {
      f.close();
    }
  }
  await writeAtomic(path, keep.map((r) => JSON.stringify(r) + "\n").join(""));
  return drop;
}
