// Hang detection: while a step runs, a timer at `max(factor x predicted, minMs)`; when it fires before every rank
// reported `step_done`, the report names the ranks that have not finished, with how many of their busy
// micro-batches they completed (from the executors' `step_progress`): a rank still inside a micro-batch (and its
// group's partners, which wait for it) against ranks that finished theirs and wait in the gradient all-reduce.
// The report comes before the step's timeout, so the failure policy acts on a step the operator already saw named.

import type { ExecutorStepPlan } from "../../../core/protocol.ts";
import type { HangReport, RankView } from "./run_state.ts";

/** Hang thresholds (config `observe.hang_factor`, `observe.hang_min_s`). */
export interface HangOptions {
  factor: number;
  minMs: number;
}

/** Watches one step at a time (see the file header). */
export class HangWatch {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #step = 0;
  #t0 = 0;
  #predictedMs = 0;
  #busy = new Map<number, number[]>();
  #progress = new Map<number, Set<number>>();
  #done = new Set<number>();
  #ranks: RankView[] = [];
  /** Ranks whose process their agent reports stopped (SIGSTOP, a debugger). */
  #stopped = new Set<number>();

  constructor(readonly opts: HangOptions, readonly onHang: (r: HangReport) => void) {}

  /** A step was dispatched. */
  start(plan: ExecutorStepPlan, predictedMs: number, ranks: RankView[]): void {
    this.stop();
    this.#step = plan.step;
    this.#t0 = performance.now();
    this.#predictedMs = predictedMs;
    this.#ranks = ranks;
    this.#busy = new Map(ranks.map((r) => [r.rank, []]));
    plan.microBatches.forEach((mb, i) => {
      for (const g of mb.groups) if (g.sequences.length) { for (const r of g.ranks) this.#busy.get(r)?.push(i); }
    });
    this.#progress = new Map();
    this.#done = new Set();
    const after = Math.max(this.opts.factor * predictedMs, this.opts.minMs);
    this.#timer = setTimeout(() => this.#fire(), after);
    Deno.unrefTimer(this.#timer);
  }

  /** A rank finished micro-batch `mb` of `step`. */
  progress(rank: number, step: number, mb: number): void {
    if (step !== this.#step) return;
    const s = this.#progress.get(rank) ?? new Set();
    s.add(mb);
    this.#progress.set(rank, s);
  }

  /** A heartbeat's word on a rank's process: stopped (SIGSTOP, a debugger) or not. */
  stopped(rank: number, stopped: boolean): void {
    if (stopped) this.#stopped.add(rank);
    else this.#stopped.delete(rank);
  }

  /** A rank reported `step_done`. */
  done(rank: number, step: number): void {
    if (step === this.#step) this.#done.add(rank);
  }

  /** The step ended (or failed). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    const runningMs = performance.now() - this.#t0;
    const unfinished = this.#ranks.filter((r) => !this.#done.has(r.rank)).map((r) => {
      const busy = this.#busy.get(r.rank) ?? [];
      const done = busy.filter((i) => this.#progress.get(r.rank)?.has(i)).length;
      return { rank: r.rank, host: r.host, device: r.device, doneMicroBatches: done, busyMicroBatches: busy.length };
    });
    if (!unfinished.length) return;
    const inside = unfinished.filter((u) => u.doneMicroBatches < u.busyMicroBatches);
    const waiting = unfinished.filter((u) => u.doneMicroBatches >= u.busyMicroBatches);
    const parts: string[] = [];
    const stopped = unfinished.filter((u) => this.#stopped.has(u.rank));
    if (stopped.length) {
      parts.push(
        `the process of ${stopped.map((u) => `rank ${u.rank} on ${u.host}`).join(", ")} is stopped (SIGSTOP or a ` +
          `debugger; SIGCONT resumes it)`,
      );
    }
    if (inside.length) {
      parts.push(
        "still computing: " +
          inside.map((u) =>
            `rank ${u.rank} on ${u.host} (device ${u.device}, micro-batch ${u.doneMicroBatches + 1} of its ` +
            `${u.busyMicroBatches})`
          ).join(", "),
      );
    }
    if (waiting.length) {
      parts.push(
        `finished their micro-batches, waiting for the others: ranks ${waiting.map((u) => u.rank).join(", ")}`,
      );
    }
    this.onHang({
      time: new Date().toISOString(),
      step: this.#step,
      runningMs,
      predictedMs: this.#predictedMs,
      unfinished,
      text:
        `step ${this.#step} has run ${(runningMs / 1000).toFixed(1)} s, ${
          (runningMs / Math.max(1e-9, this.#predictedMs)).toFixed(0)
        }x its prediction (${Math.round(this.#predictedMs)} ms); ${unfinished.length} rank(s) not finished: ` +
        parts.join("; "),
    });
  }
}
