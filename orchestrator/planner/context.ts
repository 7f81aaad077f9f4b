// Everything a planner needs besides the lengths: cost model, topology, allowed degrees, capacities.

import { UserError } from "../errors.ts";
import type { PlannerConfig } from "../config/types.ts";
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
  milp: PlannerConfig["milp"];
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
  /** Token capacity per rank (its own memory budget; a group's capacity is its smallest device's). */
  readonly capacity: number[];
  /** Smallest per-rank capacity (used for bounds). */
  readonly minCapacity: number;
  readonly maxDegree: number;
  /** Fastest device speed (for optimistic bounds). */
  readonly maxSpeed: number;
  /** Slowest device speed. */
  readonly minSpeed: number;
  /** Sum of device speeds: the cluster's compute per ms in units of a speed-1 device. */
  readonly speedSum: number;
  /** Sum of the fastest devices' speeds, and their token capacity (for micro-batches on them alone). */
  readonly fastSpeedSum: number;
  readonly fastCapacity: number;
  /**
   * β1 weighted by speed over a micro-batch that uses some slower device: Σ_r speed_r · (β1 at the speed r's
   * groups can at best have), i.e. β1·(slow speeds / fastest slow speed + fast speeds / fastest speed). Equal
   * to β1·speedSum/maxSpeed on a cluster of one speed.
   */
  readonly slowBetaWork: number;

  constructor(
    readonly cost: CostModel,
    readonly topo: Topology,
    readonly heads: number,
    readonly options: PlannerOptions,
  ) {
    if (topo.devices < 1) throw new UserError("the cluster has no devices");
    this.maxDegree = floorPow2(topo.devices);
    this.maxSpeed = topo.speed.reduce((a, b) => Math.max(a, b), 0);
    this.minSpeed = topo.speed.reduce((a, b) => Math.min(a, b), Infinity);
    this.speedSum = topo.speed.reduce((a, b) => a + b, 0);
    const slow = topo.speed.filter((v) => v < this.maxSpeed);
    const v2 = slow.reduce((a, b) => Math.max(a, b), 0);
    const slowSum = slow.reduce((a, b) => a + b, 0);
    this.fastSpeedSum = this.speedSum - slowSum;
    this.slowBetaWork = cost.beta1 * (slow.length ? slowSum / v2 : 0) + cost.beta1 * this.fastSpeedSum / this.maxSpeed;
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
    this.capacity = topo.memoryGb.map((m, r) => cost.tokenCapacity(m, topo.budgetGb?.[r]));
    this.minCapacity = Math.min(...this.capacity);
    this.fastCapacity = this.capacity.reduce((t, c, r) => t + (topo.speed[r] === this.maxSpeed ? c : 0), 0);
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

  private readonly speedWorkCache = new Map<number, number>();
  private readonly minBlockCapCache = new Map<number, number>();

  /** Smallest token capacity of any aligned block of degree d (what a homogeneous plan can count on). */
  minBlockCapacity(d: number): number {
    const hit = this.minBlockCapCache.get(d);
    if (hit !== undefined) return hit;
    let worst = Infinity;
    for (let s = 0; s + d <= this.topo.devices; s += d) {
      let c = Infinity;
      for (let r = s; r < s + d; r++) c = Math.min(c, this.capacity[r]);
      worst = Math.min(worst, c);
    }
    this.minBlockCapCache.set(d, worst);
    return worst;
  }

  /** Smallest allowed degree every block of which can hold s tokens (a static degree), or Infinity. */
  uniformDegreeOf(s: number): number {
    for (const d of this.degrees) if (s <= d * this.minBlockCapacity(d)) return d;
    return Infinity;
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

  private readonly degreeSpeedCache = new Map<number, number>();

  /**
   * Fastest speed any group of degree d can run at: the best aligned block's slowest device (on a mixed
   * cluster a degree-64 group of 64 devices runs at the slow ones' speed). Optimistic, so bounds stay valid.
   */
  degreeSpeed(d: number): number {
    let v = this.degreeSpeedCache.get(d);
    if (v === undefined) {
      v = 0;
      for (let s = 0; s + d <= this.topo.devices; s += d) v = Math.max(v, this.blocks.get(s, d).speed);
      this.degreeSpeedCache.set(d, v);
    }
    return v;
  }

  private readonly blockSpeedSumCache = new Map<number, number>();

  /** Smallest sum of device speeds of any aligned block of degree d (what a degree-d group ties up at least). */
  minBlockSpeedSum(d: number): number {
    let v = this.blockSpeedSumCache.get(d);
    if (v === undefined) {
      v = Infinity;
      for (let s = 0; s + d <= this.topo.devices; s += d) {
        let sum = 0;
        for (let r = s; r < s + d; r++) sum += this.topo.speed[r];
        v = Math.min(v, sum);
      }
      this.blockSpeedSumCache.set(d, v);
    }
    return v;
  }

  /** Fastest time of a sequence on any allowed degree that can hold it (β1 excluded; at the degree's best speed). */
  bestSeqMs(s: number): number {
    let best = Infinity;
    for (const d of this.degrees) {
      if (s > d * this.blockCapacity(d)) continue;
      best = Math.min(best, this.cost.seqMs(s, d, this.degreeSpans(d), this.degreeSpeed(d)));
    }
    return best;
  }

  /** Least device-time (degree x time) of a sequence on any degree that can hold it. */
  minWork(s: number): number {
    let best = Infinity;
    for (const d of this.degrees) {
      if (s > d * this.blockCapacity(d)) continue;
      best = Math.min(best, d * this.cost.seqMs(s, d, this.degreeSpans(d), this.degreeSpeed(d)));
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

  /**
   * Lower bound on `count` micro-batches holding `tokens` tokens and speed-weighted work `work` in all (see
   * speedWork). A micro-batch that uses a slower device lasts at least (its work + slowBetaWork) / speedSum
   * (every device of speed v does at most v work per ms after its own β1); one on the fastest devices alone
   * holds at most fastCapacity tokens and lasts at least β1/maxSpeed + its work / fastSpeedSum. Minimised
   * over how many micro-batches run on the fast devices alone; on one speed this is count·β1/v + work/speedSum.
   */
  weightedBound(tokens: number, work: number, count: number): number {
    const total = this.capacity.reduce((a, b) => a + b, 0);
    const betaFast = this.cost.minGroupFixedMs(this.maxSpeed);
    if (this.fastSpeedSum === this.speedSum) return count * betaFast + work / this.speedSum;
    let best = Infinity;
    const maxFast = this.fastCapacity > 0 ? Math.ceil(tokens / this.fastCapacity) : 0;
    for (let mf = 0; mf <= maxFast; mf++) {
      const ms = Math.max(0, Math.ceil((tokens - mf * this.fastCapacity) / total - 1e-12));
      const mb = Math.max(count, ms + mf);
      // Micro-batches beyond the token minimum are charged as fast ones (the cheaper β).
      const extraFast = mb - ms - mf;
      const t = ms > 0
        ? ms * this.slowBetaWork / this.speedSum + (mf + extraFast) * betaFast + work / this.speedSum
        : (mf + extraFast) * betaFast + work / this.fastSpeedSum;
      best = Math.min(best, t);
    }
    return best;
  }

  /**
   * Speed-weighted work of a sequence: its compute at speed 1 plus the slowest speed times the device-ms of
   * its all-to-all, at the cheapest degree that can hold it. A device of speed v does at most v of this per
   * ms (it runs at its group's speed, never above its own), so a micro-batch lasts at least its total over
   * `speedSum`: tighter than `minWork / devices` when speeds differ, equal when they do not.
   */
  speedWork(s: number): number {
    const hit = this.speedWorkCache.get(s);
    if (hit !== undefined) return hit;
    const comp = this.cost.computeMs(s, 1, 1);
    const v = this.minSpeed;
    let best = Infinity;
    for (const d of this.degrees) {
      if (s > d * this.blockCapacity(d)) continue;
      best = Math.min(best, comp + v * d * this.cost.commMs(s, d, this.degreeSpans(d)));
    }
    this.speedWorkCache.set(s, best);
    return best;
  }
}
