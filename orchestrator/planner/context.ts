// Everything a planner needs besides the lengths: cost model, topology, allowed degrees, capacities.

import { UserError } from "../errors.ts";
import { degreeProblem } from "../../core/model_shape.ts";
import type { CostModel } from "./cost_model.ts";
import { BlockAllocator, BlockTable, floorPow2 } from "./placement.ts";
import type { Topology } from "./topology.ts";

/** Solver knobs (the planner part of the config, plus run-time budgets). */
export interface PlannerOptions {
  /** Micro-batch counts tried above the minimum. */
  microBatchTrials: number;
  /** Bucket count for the MILP, or adaptive. */
  buckets: number | "auto";
  /** MILP backend used to improve the combinatorial plan. */
  milp: "glpk" | "highs" | "none";
  /** Wall-clock budget for the whole step (ms); ignored in deterministic mode. */
  timeLimitMs: number;
  /** No wall-clock limits: the same input gives the same plan on any machine. */
  deterministic: boolean;
  /** Smallest SP degree allowed (1 = plain data parallelism for short sequences). */
  minDegree: number;
  /** What to do with a sequence no group can hold. */
  overflow: "error" | "drop";
  /** Fixed degree for the static strategy. */
  staticDegree?: number;
}

/** Default options: all micro-batch trials, adaptive buckets, HiGHS, 1 s budget. */
export const DEFAULT_PLANNER_OPTIONS: PlannerOptions = {
  microBatchTrials: 4,
  buckets: "auto",
  milp: "highs",
  timeLimitMs: 1000,
  deterministic: false,
  minDegree: 1,
  overflow: "error",
};

/** Precomputed facts about the cluster and model for one planning call. */
export class PlanContext {
  /** Allowed degrees, ascending: powers of two dividing the head count, up to the largest block. */
  readonly degrees: number[];
  /** Token capacity per rank. */
  readonly capacity: number[];
  /** Smallest per-rank capacity (used for bounds). */
  readonly minCapacity: number;
  readonly maxDegree: number;

  constructor(
    readonly cost: CostModel,
    readonly topo: Topology,
    readonly heads: number,
    readonly options: PlannerOptions,
  ) {
    if (topo.devices < 1) throw new UserError("the cluster has no devices");
    this.maxDegree = floorPow2(topo.devices);
    this.degrees = [];
    for (let d = 1; d <= this.maxDegree; d *= 2) {
      if (d >= options.minDegree && heads % d === 0 && degreeProblem(cost.model, d) === undefined) {
        this.degrees.push(d);
      }
    }
    if (this.degrees.length === 0) {
      throw new UserError(
        `no SP degree is allowed: min_degree ${options.minDegree}, ${heads} heads, ${topo.devices} devices`,
      );
    }
    this.capacity = topo.memoryGb.map((m) => cost.tokenCapacity(m));
    this.minCapacity = Math.min(...this.capacity);
    this.blocks = new BlockTable(topo, (r) => this.capacity[r]);
  }

  /** Descriptors of every aligned block. */
  readonly blocks: BlockTable;

  /** A fresh allocator over all devices (one per micro-batch). */
  newAllocator(): BlockAllocator {
    return new BlockAllocator(this.blocks);
  }

  private readonly blockCapCache = new Map<number, number>();
  private readonly spansCache = new Map<number, boolean>();

  /** Largest token capacity of any aligned block of degree d. */
  blockCapacity(d: number): number {
    const hit = this.blockCapCache.get(d);
    if (hit !== undefined) return hit;
    let best = 0;
    for (let s = 0; s + d <= this.topo.devices; s += d) {
      let c = Infinity;
      for (let r = s; r < s + d; r++) c = Math.min(c, this.capacity[r]);
      best = Math.max(best, c);
    }
    this.blockCapCache.set(d, best);
    return best;
  }

  /** Smallest allowed degree whose best block can hold s tokens, or Infinity. */
  minDegreeOf(s: number): number {
    for (const d of this.degrees) if (s <= d * this.blockCapacity(d)) return d;
    return Infinity;
  }

  /** Largest sequence any group can hold. */
  get maxSequence(): number {
    const d = this.degrees[this.degrees.length - 1];
    return d * this.blockCapacity(d);
  }

  /** Fastest time of a sequence on any allowed degree that can hold it (β1 excluded; homogeneous speed 1). */
  bestSeqMs(s: number): number {
    let best = Infinity;
    for (const d of this.degrees) {
      if (s > d * this.blockCapacity(d)) continue;
      best = Math.min(best, this.cost.seqMs(s, d, this.degreeSpans(d), this.maxSpeed));
    }
    return best;
  }

  /** Least device-time (degree x time) of a sequence on any degree that can hold it. */
  minWork(s: number): number {
    let best = Infinity;
    for (const d of this.degrees) {
      if (s > d * this.blockCapacity(d)) continue;
      best = Math.min(best, d * this.cost.seqMs(s, d, this.degreeSpans(d), this.maxSpeed));
    }
    return best;
  }

  /** Whether every block of degree d spans nodes (for bounds: the optimistic choice when some do not). */
  degreeSpans(d: number): boolean {
    let spans = this.spansCache.get(d);
    if (spans === undefined) {
      spans = true;
      for (let s = 0; s + d <= this.topo.devices; s += d) {
        if (this.topo.nodeOf[s] === this.topo.nodeOf[s + d - 1]) spans = false;
      }
      this.spansCache.set(d, spans);
    }
    return spans;
  }

  /** Fastest device speed (for optimistic bounds). */
  get maxSpeed(): number {
    return this.topo.speed.reduce((a, b) => Math.max(a, b), 0);
  }
}
