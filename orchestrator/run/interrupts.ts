// What SIGINT and SIGTERM do to a training run. The first one asks the run to finish its current step and save a
// checkpoint. The same interrupt often arrives twice: `deno task` forwards a SIGINT or SIGTERM sent to the process
// group (Ctrl-C in a terminal, `timeout`, a service manager) to the orchestrator, which got it from the group
// already; a repeat within `SAME_INTERRUPT_MS` is that one interrupt and counts once. A later, deliberate second
// Ctrl-C stops at once. SIGTERM never stops at once: it is what `timeout`, service managers and Slurm send to
// have the run saved (they send SIGKILL when they stop waiting).

import type { InterruptFlag } from "./train_attempt.ts";

/** Repeats of an interrupt within this window are one interrupt delivered twice. */
export const SAME_INTERRUPT_MS = 1000;

/** The SIGINT and SIGTERM listeners of a run (see the file header); `stopNow` ends the process. */
export function interruptListeners(
  interrupt: InterruptFlag,
  log: (line: string) => void,
  stopNow: () => void,
  now: () => number = () => performance.now(),
): [Deno.Signal, () => void][] {
  let first = -Infinity;
  let termNoted = false;
  const on = (sig: "SIGINT" | "SIGTERM") => () => {
    const t = now();
    if (!interrupt.requested) {
      interrupt.requested = true;
      first = t;
      log(
        sig === "SIGINT"
          ? "interrupted: finishing the current step, then saving a checkpoint (Ctrl-C again to stop at once)"
          : "SIGTERM: finishing the current step, then saving a checkpoint",
      );
      return;
    }
    if (t - first < SAME_INTERRUPT_MS) return;
    if (sig === "SIGTERM") {
      if (!termNoted) log("SIGTERM again: still finishing the step and saving (SIGINT twice stops at once)");
      termNoted = true;
      return;
    }
    stopNow();
  };
  return [["SIGINT", on("SIGINT")], ["SIGTERM", on("SIGTERM")]];
}
