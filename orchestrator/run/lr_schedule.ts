// The learning rate of each step: linear warmup over `training.warmup_steps`, then cosine decay to a tenth of
// `training.lr` at `training.steps`. A pure function of the step, so a resumed run uses the same rates.

import type { TrainingConfig } from "../config/types.ts";

/** Floor of the cosine decay, as a fraction of the peak rate. */
export const LR_FLOOR = 0.1;

/** Learning rate of step `step` (1-based). */
export function learningRate(t: Pick<TrainingConfig, "lr" | "warmupSteps" | "steps">, step: number): number {
  if (t.warmupSteps > 0 && step <= t.warmupSteps) return (t.lr * step) / t.warmupSteps;
  const span = Math.max(1, t.steps - t.warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - t.warmupSteps) / span));
  const floor = LR_FLOOR * t.lr;
  return floor + 0.5 * (t.lr - floor) * (1 + Math.cos(Math.PI * progress));
}
