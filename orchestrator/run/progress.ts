// What the user sees while a run trains: one line per step on stdout (step, loss, tokens/s, measured vs predicted
// step time, the SP groups of each micro-batch, solve time and whether execution hid it), and on a terminal a live
// bar on stderr (progress, mean tokens/s, time left), redrawn under the step lines.

import type { LedgerRecord } from "../ledger/ledger.ts";

function fmtS(ms: number): string {
  return ms >= 10_000
    ? `${(ms / 1000).toFixed(1)} s`
    : ms >= 1000
    ? `${(ms / 1000).toFixed(2)} s`
    : `${ms.toFixed(0)} ms`;
}

/** The SP groups of a step: per micro-batch, the degrees of its busy groups, e.g. `[4] [1 1 2]`. */
export function groupsText(r: LedgerRecord): string {
  return r.plan.microBatches
    .map((mb) => `[${mb.groups.filter((g) => g.sequences.length).map((g) => g.degree).join(" ")}]`)
    .join(" ");
}

/** One progress line of a step. */
export function stepLine(r: LedgerRecord, totalSteps: number): string {
  const w = String(totalSteps).length;
  const solve = r.planSource === "replayed"
    ? "plan replayed"
    : `solve ${fmtS(r.solveMs)} ${r.solveHidden ? "hidden" : `NOT hidden (waited ${fmtS(r.planWaitMs)})`}`;
  return [
    `step ${String(r.step).padStart(w)}/${totalSteps}`,
    `loss ${r.loss.toFixed(4)}`,
    `${Math.round(r.tokensPerS).toLocaleString("en-US")} tok/s`,
    `step ${fmtS(r.measuredMs)} (pred ${fmtS(r.predictedMs)})`,
    `groups ${groupsText(r)}`,
    solve,
  ].join("  ");
}

/** Prints step lines and keeps a live bar under them on a terminal. */
export class Progress {
  #bar = "";
  readonly #enc = new TextEncoder();
  readonly #t0 = performance.now();
  #tokens = 0;
  #steps = 0;

  constructor(
    readonly firstStep: number,
    readonly totalSteps: number,
    readonly print: (line: string) => void = (l) => console.log(l),
    readonly tty = Deno.stderr.isTerminal(),
  ) {}

  #write(text: string): void {
    Deno.stderr.writeSync(this.#enc.encode(text));
  }

  /** Prints a step's line and redraws the bar. */
  step(r: LedgerRecord): void {
    this.#tokens += r.tokens;
    this.#steps++;
    this.clear();
    this.print(stepLine(r, this.totalSteps));
    this.#drawBar(r.step);
  }

  /** Prints a log line above the bar. */
  log(line: string, sink: (line: string) => void = (l) => console.error(l)): void {
    this.clear();
    sink(line);
    if (this.#bar) this.#write(this.#bar);
  }

  #drawBar(step: number): void {
    if (!this.tty) return;
    const done = step / this.totalSteps;
    const width = 30;
    const filled = Math.round(done * width);
    const elapsed = (performance.now() - this.#t0) / 1000;
    const perStep = elapsed / Math.max(1, this.#steps);
    const left = (this.totalSteps - step) * perStep;
    const rate = this.#tokens / Math.max(1e-3, elapsed);
    this.#bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${step}/${this.totalSteps} ` +
      `${(100 * done).toFixed(0)}%  ${Math.round(rate).toLocaleString("en-US")} tok/s  ` +
      `${Math.round(left)} s left`;
    this.#write(this.#bar);
  }

  /** Removes the bar from the screen (it comes back with the next step). */
  clear(): void {
    if (this.tty && this.#bar) this.#write("\r\x1b[K");
  }

  /** Removes the bar for good. */
  finish(): void {
    this.clear();
    this.#bar = "";
  }
}
