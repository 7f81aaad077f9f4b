// Planner benchmark: the paper's grid (GPT-7B/13B/30B x 192K/384K x Wikipedia/CommonCrawl/GitHub lengths on
// 8x8 A100s), a 1024-GPU scale row, and mixed-generation clusters (A100-40GB nodes plus H100-80GB nodes at
// twice the speed). Per row: predicted step time of FlexSP, static SP and BatchAda, speedups, gap to the lower
// bound, solve time p50/p95 (through the planner worker, as `plan` and `launch` run it: round trip included,
// bounded by planner.time_limit_ms), for each MILP backend. `--rows grid,scale,mixed` picks row sets.
//
// Mixed rows: H100 nodes get memory_budget_gb 68 (the paper's 12 GB of headroom under 80 GB, as 28 under 40)
// and speed 2; the bandwidth table is the A100 cluster's. Baselines there: static SP (the degree whose every
// group holds the whole context: SP=64, spanning both types, so at the A100 speed), BatchAda, FlexSP on the
// fast nodes alone, and FlexSP with every device held to the A100 budget (what one global budget gives).
//
// Static SP is what a DeepSpeed-Ulysses or Megatron CP user must run: the smallest degree that holds the model's
// whole context (SP=64 at 192K and 384K under the 28 GB budget), every data-parallel group of it given its share of
// every micro-batch (orchestrator/planner/baselines.ts). BatchAda is the best homogeneous degree per batch, planned
// the same way. Length distributions: orchestrator/data/length_distributions.ts.

import { loadConfig } from "../orchestrator/config/load.ts";
import { plannerSetup } from "../orchestrator/planner/from_config.ts";
import { resolveCostConstants } from "../orchestrator/config/profile_file.ts";
import { planStep } from "../orchestrator/planner/plan_step.ts";
import { PlannerWorker } from "../orchestrator/planner/worker.ts";
import type { Config, NodeConfig } from "../orchestrator/config/types.ts";
import type { Plan } from "../orchestrator/planner/plan_types.ts";
import { sampleLengths } from "../orchestrator/data/length_distributions.ts";
import { Rng } from "../orchestrator/data/rng.ts";
import { PlanContext } from "../orchestrator/planner/context.ts";
import { planViolations } from "../orchestrator/planner/validate_plan.ts";

/** One benchmark row's inputs. */
interface RowSpec {
  model: string;
  maxSeq: number;
  dist: string;
  nodes: number;
  /** Of the nodes, how many are H100-80GB (the last ones); 0 = a homogeneous A100 cluster. */
  fast?: number;
  batch: number;
  steps: number;
  timeLimitMs: number;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** The paper config with other nodes: `slow` A100-40GB nodes then `fast` H100-80GB ones (8 devices each). */
function withNodes(config: Config, slow: number, fast: number, oneBudget = false): Config {
  const a100 = config.cluster.nodes[0];
  const nodes: NodeConfig[] = [];
  for (let i = 0; i < slow + fast; i++) {
    const h100 = i >= slow;
    nodes.push({
      ...a100,
      index: i,
      host: `${h100 ? "h100" : "a100"}-node${i}`,
      deviceMemoryGb: h100 ? 80 : 40,
      memoryBudgetGb: h100 && !oneBudget ? 68 : undefined,
      speed: h100 ? 2 : 1,
    });
  }
  return { ...config, cluster: { ...config.cluster, nodes } };
}

async function runRow(spec: RowSpec, backend: "highs" | "glpk" | "none") {
  const base = await loadConfig(new URL("../configs/paper-a100-64.yaml", import.meta.url).pathname, [
    `model.preset=${spec.model}`,
    `model.max_seq=${spec.maxSeq}`,
    `planner.milp=${backend}`,
    `planner.time_limit_ms=${spec.timeLimitMs}`,
  ]);
  const constants = await resolveCostConstants(base);
  const fast = spec.fast ?? 0;
  const config = spec.nodes === 8 && fast === 0 ? base : withNodes(base, spec.nodes - fast, fast);
  const setup = plannerSetup(config, constants);
  const ctx = new PlanContext(setup.cost, setup.topology, setup.cost.model.heads, setup.options);
  const worker = new PlannerWorker(setup);
  // Mixed rows: the fast nodes alone, and every device under the A100 budget.
  const extra = fast > 0
    ? [
      ["fastOnly", plannerSetup(withNodes(base, 0, fast), constants)],
      ["oneBudget", plannerSetup(withNodes(base, spec.nodes - fast, fast, true), constants)],
    ] as const
    : [];
  const extraWorkers = extra.map(([name, s]) => [name, new PlannerWorker(s)] as const);
  const rng = new Rng(20250301);
  const sums: Record<string, number> = { flexsp: 0, static: 0, batchada: 0, bound: 0, fastOnly: 0, oneBudget: 0 };
  const solve: number[] = [];
  let invalid = 0;
  let dropped = 0;
  let pastLimit = 0;
  let incumbents = 0;
  let fallbacks = 0;
  try {
    for (let step = 0; step < spec.steps; step++) {
      const lengths = sampleLengths(spec.dist, spec.batch, spec.maxSeq, rng);
      const f: Plan = await worker.plan(lengths);
      const st = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, strategy: "static" });
      const ba = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, strategy: "batchada" });
      for (const [name, w] of extraWorkers) sums[name] += (await w.plan(lengths)).predictedMs;
      invalid += planViolations(f, ctx, lengths).length + planViolations(st, ctx, lengths).length +
        planViolations(ba, ctx, lengths).length;
      dropped += f.dropped.length;
      sums.flexsp += f.predictedMs;
      sums.static += st.predictedMs;
      sums.batchada += ba.predictedMs;
      sums.bound += f.lowerBoundMs;
      solve.push(f.solveMs);
      if (f.solveMs > spec.timeLimitMs) pastLimit++;
      if (f.details.deadline === "incumbent") incumbents++;
      if (f.details.deadline === "static fallback") fallbacks++;
    }
  } finally {
    worker.close();
    for (const [, w] of extraWorkers) w.close();
  }
  const n = spec.steps;
  const cluster = fast > 0
    ? ` ${spec.nodes - fast}x8 A100 + ${fast}x8 H100`
    : spec.nodes !== 8
    ? ` ${spec.nodes * 8} GPUs`
    : "";
  return {
    row: `${spec.model} ${spec.maxSeq / 1024}K ${spec.dist}${cluster}`,
    backend,
    gpus: spec.nodes * 8,
    fastNodes: fast,
    batch: spec.batch,
    steps: n,
    timeLimitMs: spec.timeLimitMs,
    flexspS: sums.flexsp / n / 1000,
    staticS: sums.static / n / 1000,
    batchadaS: sums.batchada / n / 1000,
    fastOnlyS: fast > 0 ? sums.fastOnly / n / 1000 : undefined,
    oneBudgetS: fast > 0 ? sums.oneBudget / n / 1000 : undefined,
    speedupVsStatic: sums.static / sums.flexsp,
    speedupVsBatchAda: sums.batchada / sums.flexsp,
    speedupVsFastOnly: fast > 0 ? sums.fastOnly / sums.flexsp : undefined,
    speedupVsOneBudget: fast > 0 ? sums.oneBudget / sums.flexsp : undefined,
    gapToBoundPct: (sums.flexsp / sums.bound - 1) * 100,
    solveP50Ms: quantile(solve, 0.5),
    solveP95Ms: quantile(solve, 0.95),
    solveMaxMs: Math.max(...solve),
    solvesPastLimit: pastLimit,
    incumbentPlans: incumbents,
    staticFallbackPlans: fallbacks,
    droppedSequences: dropped,
    invalidPlans: invalid,
  };
}

/** Runs the grid; `quick` plans fewer steps (for smoke runs). */
export async function bench(quick = Deno.args.includes("--quick")): Promise<{
  title: string;
  rows: Record<string, string | number>[];
  json: unknown;
}> {
  const steps = quick ? 2 : 5;
  const at = Deno.args.indexOf("--rows");
  const sets = new Set(at >= 0 ? (Deno.args[at + 1] ?? "").split(",") : ["grid", "scale", "mixed"]);
  const specs: RowSpec[] = [];
  for (const model of sets.has("grid") ? ["gpt-7b", "gpt-13b", "gpt-30b"] : []) {
    for (const maxSeq of [196608, 393216]) {
      for (const dist of ["wikipedia", "commoncrawl", "github"]) {
        specs.push({ model, maxSeq, dist, nodes: 8, batch: 512, steps, timeLimitMs: 1000 });
      }
    }
  }
  if (sets.has("scale")) {
    specs.push({
      model: "gpt-7b",
      maxSeq: 196608,
      dist: "commoncrawl",
      nodes: 128,
      batch: 4096,
      steps: quick ? 1 : 3,
      timeLimitMs: 8000,
    });
  }
  const mixed: RowSpec[] = [];
  for (const fast of sets.has("mixed") ? [4, 2] : []) {
    for (const model of ["gpt-7b", "gpt-13b"]) {
      for (const dist of ["wikipedia", "commoncrawl"]) {
        mixed.push({ model, maxSeq: 196608, dist, nodes: 8, fast, batch: 512, steps, timeLimitMs: 1000 });
      }
    }
  }
  const results = [];
  for (const spec of [...specs, ...mixed]) {
    // Mixed rows run with HiGHS only (glpk adds little there and doubles the time).
    for (const backend of spec.fast ? ["highs"] as const : ["highs", "glpk"] as const) {
      const r = await runRow(spec, backend);
      results.push(r);
      console.error(
        `  ${r.row.padEnd(30)} ${backend.padEnd(5)} flexsp ${r.flexspS.toFixed(2)} s  x${
          r.speedupVsStatic.toFixed(2)
        } ` +
          `static  x${r.speedupVsBatchAda.toFixed(2)} batchada${
            r.speedupVsFastOnly ? `  x${r.speedupVsFastOnly.toFixed(2)} fast-only` : ""
          }  gap ${r.gapToBoundPct.toFixed(1)}%  p95 ${r.solveP95Ms.toFixed(0)} ms`,
      );
    }
  }
  const rows = results.map((r) => ({
    row: r.row,
    milp: r.backend,
    "flexsp s": r.flexspS.toFixed(2),
    "static s": r.staticS.toFixed(2),
    "batchada s": r.batchadaS.toFixed(2),
    "vs static": `${r.speedupVsStatic.toFixed(2)}x`,
    "vs batchada": `${r.speedupVsBatchAda.toFixed(2)}x`,
    "gap to bound": `${r.gapToBoundPct.toFixed(1)}%`,
    "solve p50 ms": r.solveP50Ms.toFixed(0),
    "solve p95 ms": r.solveP95Ms.toFixed(0),
    "solve max ms": r.solveMaxMs.toFixed(0),
    ...(r.fastOnlyS !== undefined
      ? {
        "fast-only s": r.fastOnlyS.toFixed(2),
        "vs fast-only": `${r.speedupVsFastOnly!.toFixed(2)}x`,
        "one-budget s": r.oneBudgetS!.toFixed(2),
        "vs one budget": `${r.speedupVsOneBudget!.toFixed(2)}x`,
      }
      : {}),
  }));
  const grid = results.filter((r) => r.gpus === 64 && r.fastNodes === 0);
  const scale = results.filter((r) => r.gpus === 1024);
  const mix = results.filter((r) => r.fastNodes > 0);
  const mean = (xs: number[]) => xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
  const summary = {
    averageGapPct: mean(grid.map((r) => r.gapToBoundPct)),
    worstSpeedupVsBest: Math.min(...results.map((r) => Math.min(r.speedupVsStatic, r.speedupVsBatchAda))),
    solveP95Ms64: Math.max(...grid.map((r) => r.solveP95Ms)),
    solveP95Ms1024: Math.max(...scale.map((r) => r.solveP95Ms)),
    gapPct1024: mean(scale.map((r) => r.gapToBoundPct)),
    mixedGapPct: mean(mix.map((r) => r.gapToBoundPct)),
    mixedWorstSpeedupVsFastOnly: Math.min(...mix.map((r) => r.speedupVsFastOnly!)),
    mixedWorstSpeedupVsOneBudget: Math.min(...mix.map((r) => r.speedupVsOneBudget!)),
    solvesPastLimit: results.reduce((s, r) => s + r.solvesPastLimit, 0),
    invalidPlans: results.reduce((s, r) => s + r.invalidPlans, 0),
  };
  return { title: "Planner (predicted step time under the paper's cost model)", rows, json: { results, summary } };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
