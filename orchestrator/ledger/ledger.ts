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

import { writeAtomic } from "../../core/atomic_write.ts";
import { UserError, writing } from "../errors.ts";
import type { LedgerSequence } from "../data/data_ledger.ts";

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
  /** The sequences trained, in batch order: id, document, token range of that document (data/data_ledger.ts). */
  sequences: LedgerSequence[];
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

/** Bytes of `file` up to and including its last newline (its whole lines). */
async function wholeLinesSize(file: Deno.FsFile): Promise<number> {
  const size = (await file.stat()).size;
  const chunk = new Uint8Array(64 * 1024);
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - chunk.length);
    await file.seek(start, Deno.SeekMode.Start);
    let got = 0;
    while (got < end - start) {
      const n = await file.read(chunk.subarray(got, end - start));
      if (n === null) break;
      got += n;
    }
    const nl = chunk.subarray(0, got).lastIndexOf(10);
    if (nl >= 0) return start + nl + 1;
    end = start;
  }
  return 0;
}

/** Appends records to a run's ledger. */
export class Ledger {
  #file: Deno.FsFile;
  /** Bytes of whole lines in the file: a failed append is cut back to this. */
  #size: number;
  readonly path: string;

  private constructor(path: string, file: Deno.FsFile, size: number) {
    this.path = path;
    this.#file = file;
    this.#size = size;
  }

  /**
   * Opens `<runDir>/ledger.jsonl` for appending. A torn last line (a write cut by a kill or a full disk) is cut off
   * first, so the next record starts on a line of its own.
   */
  static async open(runDir: string): Promise<Ledger> {
    const path = `${runDir}/ledger.jsonl`;
    return await writing(path, async () => {
      const file = await Deno.open(path, { read: true, append: true, create: true });
      try {
        const size = await wholeLinesSize(file);
        if (size < (await file.stat()).size) await file.truncate(size);
        return new Ledger(path, file, size);
      } catch (e) {
        file.close();
        throw e;
      }
    });
  }

  /**
   * Appends one record as one line. On a failure (a full disk) the file is cut back to its whole lines and a
   * WriteFailure naming the file is thrown: no torn line is left.
   */
  async append(r: LedgerRecord): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(r) + "\n");
    await writing(this.path, async () => {
      try {
        let o = 0;
        while (o < bytes.length) o += await this.#file.write(bytes.subarray(o));
      } catch (e) {
        await this.#file.truncate(this.#size).catch(() => {});
        throw e;
      }
    });
    this.#size += bytes.length;
  }

  /** Makes every appended record durable (called before a checkpoint becomes `latest`). */
  async sync(): Promise<void> {
    await writing(this.path, () => this.#file.sync());
  }

  close(): void {
    try {
      this.#file.close();
    } catch { /* closed */ }
  }
}

/**
 * The part of a ledger record `profile --check` reads: what every ledger has, also one written before the record
 * gained its other fields (`microBatchMs` is absent in the oldest).
 */
export type LedgerEntry = Pick<LedgerRecord, "step" | "loss" | "tokens" | "predictedMs" | "measuredMs"> & {
  microBatchMs?: number;
  plan: {
    microBatches: {
      predictedMs: number;
      groups: Pick<LedgerGroup, "degree" | "ranks" | "sequences" | "predictedMs" | "measuredMs">[];
    }[];
  };
};

/** Options of {@link readLedger}. */
export interface ReadLedgerOptions {
  /**
   * Strict (for `profile --check`): a missing or empty ledger, a damaged line or a field of the wrong type is a
   * UserError naming the file, line and field. Lenient (the default, for resume): a missing ledger reads as empty.
   * Either way a torn last line (a write cut by a kill) is ignored.
   */
  strict?: boolean;
}

const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);

/** Why a parsed ledger line is not a record (`where`: file and line), or undefined. */
function recordProblem(v: Record<string, unknown>, where: string): string | undefined {
  for (const k of ["step", "predictedMs", "measuredMs"]) {
    if (!num(v[k])) return `${where}: ${k}: expected a number, got ${JSON.stringify(v[k] ?? null)}`;
  }
  const plan = v.plan as { microBatches?: unknown } | undefined;
  if (!plan || !Array.isArray(plan.microBatches)) return `${where}: plan.microBatches: expected a list`;
  for (const [m, mb] of (plan.microBatches as { groups?: unknown }[]).entries()) {
    if (!mb || !Array.isArray(mb.groups)) return `${where}: plan.microBatches[${m}].groups: expected a list`;
    for (const [j, g] of (mb.groups as Record<string, unknown>[]).entries()) {
      const at = `${where}: plan.microBatches[${m}].groups[${j}]`;
      if (!num(g.degree) || !Array.isArray(g.ranks)) return `${at}: needs degree and ranks`;
      if (!num(g.predictedMs)) return `${at}.predictedMs: expected a number`;
      if (g.measuredMs !== undefined && g.measuredMs !== null && !num(g.measuredMs)) {
        return `${at}.measuredMs: expected a number`;
      }
    }
  }
  return undefined;
}

/** Reads a ledger (see {@link ReadLedgerOptions}); the one reader of `ledger.jsonl` files. */
export async function readLedger(path: string, opts: ReadLedgerOptions = {}): Promise<LedgerRecord[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!opts.strict && e instanceof Deno.errors.NotFound) return [];
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(`${path}: no ledger here; pass the run directory of a launch (it holds ledger.jsonl)`);
    }
    if (!opts.strict) throw e;
    throw new UserError(`${path}: cannot read (${(e as Error).message})`);
  }
  const out: LedgerRecord[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${path}:${i + 1}`;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line);
    } catch {
      // A torn last line is what a killed run leaves; anything else is damage.
      if (!opts.strict || i >= lines.length - 2) return;
      throw new UserError(`${where}: not JSON`);
    }
    if (opts.strict) {
      const problem = recordProblem(v, where);
      if (problem) throw new UserError(problem);
    }
    out.push(v as unknown as LedgerRecord);
  });
  if (opts.strict && out.length === 0) throw new UserError(`${path}: the ledger has no steps yet`);
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
    const discarded = `${runDir}/ledger.discarded.jsonl`;
    await writing(discarded, async () => {
      const f = await Deno.open(discarded, { append: true, create: true });
      try {
        const bytes = new TextEncoder().encode(drop.map((r) => JSON.stringify(r)).join("\n") + "\n");
        let o = 0;
        while (o < bytes.length) o += await f.write(bytes.subarray(o));
      } finally {
        f.close();
      }
    });
  }
  await writing(path, () => writeAtomic(path, keep.map((r) => JSON.stringify(r) + "\n").join("")));
  return drop;
}
