// FlexSP cost model: time and memory of sequences on an SP group of degree d (paper §2, eq. 11-14).

import { UserError } from "../errors.ts";
import { headDimOf, kvHeadsPerRank, parameterCount } from "../../core/model_shape.ts";
import type { Checkpointing, CostConstants, ModelConfig } from "../config/types.ts";

/** Extra compute of full activation checkpointing: one more forward pass, about a third of forward+backward. */
export const FULL_CHECKPOINT_COMPUTE = 4 / 3;

/** Inputs of the cost model besides the constants. */
export interface CostModelOptions {
  /** Memory budget per device in GB (model states + activations must fit). */
  memoryBudgetGb: number;
  /** ZeRO stage of the model states, sharded over all devices. */
  zeroStage: 0 | 1 | 2 | 3;
  /** Devices the model states are sharded over. */
  devices: number;
}

/** Fraction of the 16 bytes/param of mixed-precision Adam states a device keeps under each ZeRO stage. */
export function zeroRatio(stage: 0 | 1 | 2 | 3, n: number): number {
  return [1, (6 / 8) / n + 2 / 8, (7 / 8) / n + 1 / 8, 1 / n][stage];
}

/** Time (ms) and memory (tokens) model of one model on one cluster. */
export class CostModel {
  readonly alpha1: number;
  readonly alpha2: number;
  readonly beta1: number;
  /** Fixed ms of every micro-batch on every rank (0 when not profiled). */
  readonly microBatchMs: number;
  /** Fixed ms of every step outside its micro-batches (0 when not profiled). */
  readonly stepMs: number;
  private readonly groupExtra: [number, number][];
  /** Activation MB per token under the checkpointing policy in force. */
  readonly actMbPerToken: number;
  /** Model-state MB per device. */
  readonly modelStateMb: number;
  /** MB moved per token per unit degree by the 8 all-to-alls of a layer stack (fwd+bwd, bf16), for MHA. */
  private readonly commMbPerToken: number;
  private readonly intra: [number, number][];
  private readonly inter: [number, number][];
  private readonly budgetMb: number;

  constructor(
    readonly constants: CostConstants,
    readonly model: ModelConfig,
    readonly options: CostModelOptions,
  ) {
    const ckpt: Checkpointing = model.checkpointing;
    const recompute = ckpt === "full" ? FULL_CHECKPOINT_COMPUTE : 1;
    this.alpha1 = constants.alpha1 * recompute;
    this.alpha2 = constants.alpha2 * recompute;
    this.beta1 = constants.beta1;
    this.microBatchMs = constants.microBatchMs ?? 0;
    this.stepMs = constants.stepMs ?? 0;
    this.actMbPerToken = ckpt === "full"
      ? constants.actMbPerTokenFull ??
        (2 * model.hidden * model.layers) / 2 ** 20 + constants.actMbPerToken / model.layers
      : constants.actMbPerToken;
    const params = model.params ?? constants.params ?? parameterCount(model);
    this.modelStateMb = (params * 16 * zeroRatio(options.zeroStage, options.devices)) / 2 ** 20;
    this.commMbPerToken = (4 * 2 * model.layers * model.hidden * 2) / 2 ** 20;
    const sorted = (t: Record<number, number>) =>
      Object.entries(t).map(([d, v]) => [Number(d), v] as [number, number]).sort((a, b) => a[0] - b[0]);
    this.intra = sorted(constants.bandwidth.intra);
    this.inter = sorted(constants.bandwidth.inter);
    this.budgetMb = options.memoryBudgetGb * 1024;
    this.groupExtra = sorted(constants.groupMs ?? {});
  }

  /** Fixed ms a group of degree d pays per micro-batch on top of β1 (nearest profiled degree; degree 1: its own). */
  groupExtraMs(d: number): number {
    const t = this.groupExtra;
    if (t.length === 0) return 0;
    const exact = t.find(([k]) => k === d);
    if (exact) return exact[1];
    if (d === 1) return 0;
    let best = t[0];
    for (const e of t) if (Math.abs(Math.log2(e[0] / d)) < Math.abs(Math.log2(best[0] / d))) best = e;
    return best[1];
  }

  /**
   * Fixed ms of a non-empty group of degree d per micro-batch: β1 at its speed, its degree's fixed cost and the
   * micro-batch's own (every group of a micro-batch waits for it, so a micro-batch's slowest group carries it).
   */
  groupFixedMs(d: number, speed = 1): number {
    return this.beta1 / speed + this.groupExtraMs(d) + this.microBatchMs;
  }

  /** The least fixed ms any non-empty group pays per micro-batch at `speed` (for lower bounds). */
  minGroupFixedMs(speed = 1): number {
    const extras = [0, ...this.groupExtra.map(([, v]) => v)];
    const least = this.groupExtra.some(([k]) => k === 1) ? Math.min(...extras.slice(1)) : Math.min(...extras);
    return this.beta1 / speed + least + this.microBatchMs;
  }

  /** Per-device all-to-all bandwidth (GB/s) of a group of degree d, inside one node or spanning nodes. */
  bandwidth(d: number, spans: boolean): number {
    const primary = spans
      ? (this.inter.length ? this.inter : this.intra)
      : (this.intra.length ? this.intra : this.inter);
    const exact = primary.find(([k]) => k === d);
    if (exact) return exact[1];
    // Nearest degree in log2 distance; on a tie, the lower bandwidth (conservative).
    let best = primary[0];
    let bestDist = Infinity;
    for (const e of primary) {
      const dist = Math.abs(Math.log2(e[0]) - Math.log2(d));
      if (dist < bestDist || (dist === bestDist && e[1] < best[1])) [best, bestDist] = [e, dist];
    }
    return best[1];
  }

  /** Compute ms of one sequence of s tokens on degree d at relative speed `speed`. */
  computeMs(s: number, d: number, speed = 1): number {
    return (this.alpha1 * s * s + this.alpha2 * s) / d / speed;
  }

  /**
   * MB per token per unit degree the all-to-alls move at degree d: per layer, forward and backward, Q and the
   * attention output (heads·headDim each) and K and V with the K/V heads each rank receives times d (fewer with
   * grouped-query attention; replicated up to d when d exceeds the K/V heads, as DeepSpeed-Ulysses does).
   */
  commMbPerTokenAt(d: number): number {
    const m = this.model;
    if (m.family !== "llama") return this.commMbPerToken;
    const kv = kvHeadsPerRank(m, d) ?? m.kvHeads ?? m.heads;
    const width = (2 * m.heads + 2 * kv * d) * headDimOf(m);
    return (2 * m.layers * width * 2) / 2 ** 20;
  }

  /** All-to-all ms of `tokens` packed tokens on degree d. */
  commMs(tokens: number, d: number, spans: boolean): number {
    if (d === 1) return 0;
    return (this.commMbPerTokenAt(d) * tokens) / d / this.bandwidth(d, spans);
  }

  /** Time of one sequence in a group, without the group's fixed cost β1. */
  seqMs(s: number, d: number, spans: boolean, speed = 1): number {
    return this.computeMs(s, d, speed) + this.commMs(s, d, spans);
  }

  /** Time of a group: its fixed costs plus the sum over its sequences (0 for an empty group). */
  groupMs(lengths: readonly number[], d: number, spans: boolean, speed = 1): number {
    if (lengths.length === 0) return 0;
    let t = this.groupFixedMs(d, speed);
    for (const s of lengths) t += this.seqMs(s, d, spans, speed);
    return t;
  }

  /**
   * Tokens of activations a device can hold: floor((budget − model states) / activation MB per token), with
   * the device's own budget when it has one (else the model's), capped by its memory when that is below.
   */
  tokenCapacity(deviceMemoryGb?: number, budgetGb?: number): number {
    let budget = budgetGb === undefined ? this.budgetMb : budgetGb * 1024;
    if (deviceMemoryGb !== undefined) budget = Math.min(budget, deviceMemoryGb * 1024);
    return Math.max(0, Math.floor((budget - this.modelStateMb) / this.actMbPerToken));
  }

  /** Smallest power-of-two degree whose group can hold a sequence of s tokens (Infinity if none up to maxDegree). */
  minDegree(s: number, capacity: number, maxDegree: number): number {
    for (let d = 1; d <= maxDegree; d *= 2) if (s <= d * capacity) return d;
    return Infinity;
  }
}

/** Builds the cost model of a config's model, raising a clear error when memory cannot hold the model states. */
export function buildCostModel(
  constants: CostConstants,
  model: ModelConfig,
  options: CostModelOptions,
): CostModel {
  const cm = new CostModel(constants, model, options);
  if (cm.tokenCapacity() <= 0) {
    throw new UserError(
      `model states need ${cm.modelStateMb.toFixed(0)} MB per device but the memory budget is ` +
        `${(options.memoryBudgetGb * 1024).toFixed(0)} MB; raise planner.memory_budget_gb, use more devices ` +
        `or ZeRO stage 3`,
    );
  }
  return cm;
}
