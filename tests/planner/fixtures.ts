// Small clusters and cost models for planner tests, plus an exhaustive optimum to compare against.

import { CostModel } from "../../orchestrator/planner/cost_model.ts";
import { DEFAULT_PLANNER_OPTIONS, PlanContext, type PlannerOptions } from "../../orchestrator/planner/context.ts";
import { type Topology, uniformTopology } from "../../orchestrator/planner/topology.ts";
import type { CostConstants, ModelConfig } from "../../orchestrator/config/types.ts";
import { Rng } from "../../orchestrator/data/rng.ts";

/** A toy model with 8 heads (so degrees up to 8 are allowed). */
export const TOY_MODEL: ModelConfig = {
  layers: 2,
  hidden: 64,
  heads: 8,
  vocab: 256,
  maxSeq: 4096,
  checkpointing: "none",
};

/** Constants that make communication matter: fast inside a node, slow across. */
export const TOY_CONSTANTS: CostConstants = {
  alpha1: 2e-4,
  alpha2: 0.05,
  beta1: 3,
  actMbPerToken: 0.5,
  bandwidth: { intra: { 2: 0.02, 4: 0.016, 8: 0.014 }, inter: { 2: 0.004, 4: 0.003, 8: 0.002 } },
};

/** Memory budget so each device holds 1000 tokens of activations on top of model states. */
export function toyCost(devices: number, tokensPerDevice = 1000): CostModel {
  const probe = new CostModel(TOY_CONSTANTS, TOY_MODEL, { memoryBudgetGb: 1, zeroStage: 3, devices });
  const budgetMb = probe.modelStateMb + tokensPerDevice * TOY_CONSTANTS.actMbPerToken + 1e-6;
  return new CostModel(TOY_CONSTANTS, TOY_MODEL, { memoryBudgetGb: budgetMb / 1024, zeroStage: 3, devices });
}

/** A context on `nodes` (device counts per node). */
export function toyContext(
  nodes: number[],
  options: Partial<PlannerOptions> = {},
  tokensPerDevice = 1000,
): { ctx: PlanContext; topo: Topology; cost: CostModel } {
  const topo = uniformTopology(nodes);
  const cost = toyCost(topo.devices, tokensPerDevice);
  const ctx = new PlanContext(cost, topo, TOY_MODEL.heads, { ...DEFAULT_PLANNER_OPTIONS, ...options });
  return { ctx, topo, cost };
}

/** Random lengths with a long tail, deterministic per seed. */
export function randomLengths(seed: number, count: number, max: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Math.max(1, Math.floor(Math.exp(rng.next() * Math.log(max)))));
}

/** All partitions of [0, n) into aligned power-of-two blocks, as lists of [start, degree]. */
export function blockPartitions(ctx: PlanContext): [number, number][][] {
  const n = ctx.topo.devices;
  const out: [number, number][][] = [];
  const rec = (r: number, acc: [number, number][]) => {
    if (r === n) {
      out.push([...acc]);
      return;
    }
    for (let d = 1; r % d === 0 && r + d <= n; d *= 2) {
      if (!ctx.degrees.includes(d)) continue;
      acc.push([r, d]);
      rec(r + d, acc);
      acc.pop();
    }
  };
  rec(0, []);
  return out;
}

/** Exact optimum of one micro-batch by enumeration (groups x assignments); Infinity if infeasible. */
export function exhaustiveMicroBatch(ctx: PlanContext, lengths: readonly number[], seqs: readonly number[]): number {
  if (seqs.length === 0) return 0;
  let best = Infinity;
  for (const part of blockPartitions(ctx)) {
    const blocks = part.map(([s, d]) => ctx.blocks.get(s, d));
    const loads = blocks.map(() => 0);
    const tokens = blocks.map(() => 0);
    const used = blocks.map(() => false);
    const rec = (i: number) => {
      if (i === seqs.length) {
        let t = 0;
        blocks.forEach((b, g) => {
          if (used[g]) t = Math.max(t, loads[g] + ctx.cost.beta1 / b.speed);
        });
        best = Math.min(best, t);
        return;
      }
      const s = lengths[seqs[i]];
      for (let g = 0; g < blocks.length; g++) {
        const b = blocks[g];
        if (tokens[g] + s > b.degree * b.capacity) continue;
        const add = ctx.cost.seqMs(s, b.degree, b.spans, b.speed);
        const wasUsed = used[g];
        if (loads[g] + add + ctx.cost.beta1 / b.speed >= best) continue;
        loads[g] += add;
        tokens[g] += s;
        used[g] = true;
        rec(i + 1);
        loads[g] -= add;
        tokens[g] -= s;
        used[g] = wasUsed;
      }
    };
    rec(0);
  }
  return best;
}

/** Exact optimum of a whole step: best split into micro-batches (set partitions) of exact micro-batches. */
export function exhaustiveStep(ctx: PlanContext, lengths: readonly number[]): number {
  const k = lengths.length;
  const memo = new Map<number, number>();
  const mbCost = (mask: number) => {
    let v = memo.get(mask);
    if (v === undefined) {
      const seqs = [...Array(k).keys()].filter((i) => mask & (1 << i));
      v = exhaustiveMicroBatch(ctx, lengths, seqs);
      memo.set(mask, v);
    }
    return v;
  };
  const full = (1 << k) - 1;
  const best = new Map<number, number>([[0, 0]]);
  const solve = (mask: number): number => {
    const hit = best.get(mask);
    if (hit !== undefined) return hit;
    // The micro-batch holding the lowest remaining sequence: any subset of the rest joins it.
    const low = mask & -mask;
    const rest = mask ^ low;
    let v = Infinity;
    for (let sub = rest;; sub = (sub - 1) & rest) {
      const mb = sub | low;
      v = Math.min(v, mbCost(mb) + solve(mask ^ mb));
      if (sub === 0) break;
    }
    best.set(mask, v);
    return v;
  };
  return solve(full);
}
