// Planner benchmark: the paper's grid (GPT-7B/13B/30B x 192K/384K x Wikipedia/CommonCrawl/GitHub lengths on
// 8x8 A100s) plus a 1024-GPU scale row. Per row: predicted step time of FlexSP, static SP and BatchAda,
// speedups, gap to the lower bound, solve time p50/p95, for each MILP backend.
//
// Static SP is what a DeepSpeed-Ulysses user must run: the smallest degree that holds the model's whole
// context (SP=64 at 192K and 384K under the 28 GB budget), best-fit-decreasing packing. BatchAda is the best
// homogeneous degree per batch. Length distributions: orchestrator/data/length_distributions.ts.

import { loadConfig } from "../orchestrator/config/load.ts";
import { plannerSetup } from "../orchestrator/planner/from_config.ts";
import { resolveCostConstants } from "../orchestrator/config/profile_file.ts";
import { planStep } from "../orchestrator/planner/plan_step.ts";
import { uniformTopology } from "../orchestrator/planner/topology.ts";
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
  batch: number;
  steps: number;
  timeLimitMs: number;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function runRow(spec: RowSpec, backend: "highs" | "glpk" | "none") {
  const config = await loadConfig(new URL("../configs/paper-a100-64.yaml", import.meta.url).pathname, [
    `model.preset=${spec.model}`,
    `model.max_seq=${spec.maxSeq}`,
    `planner.milp=${backend}`,
    `planner.time_limit_ms=${spec.timeLimitMs}`,
  ]);
  const setup = plannerSetup(config, await resolveCostConstants(config));
  if (spec.nodes !== 8) {
    setup.topology = uniformTopology(spec.nodes, 8);
    setup.cost.options.devices = setup.topology.devices;
  }
  const ctx = new PlanContext(setup.cost, setup.topology, setup.cost.model.heads, setup.options);
  const rng = new Rng(20250301);
  const sums = { flexsp: 0, static: 0, batchada: 0, bound: 0 };
  const solve: number[] = [];
  let invalid = 0;
  let dropped = 0;
  for (let step = 0; step < spec.steps; step++) {
    const lengths = sampleLengths(spec.dist, spec.batch, spec.maxSeq, rng);
    const f = await planStep(lengths, setup.topology, setup.cost, setup.options);
    const st = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, strategy: "static" });
    const ba = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, strategy: "batchada" });
    invalid += planViolations(f, ctx, lengths).length;
    dropped += f.dropped.length;
    sums.flexsp += f.predictedMs;
    sums.static += st.predictedMs;
    sums.batchada += ba.predictedMs;
    sums.bound += f.lowerBoundMs;
    solve.push(f.solveMs);
  }
  const n = spec.steps;
  return {
    row: `${spec.model} ${spec.maxSeq / 1024}K ${spec.dist}${spec.nodes !== 8 ? ` ${spec.nodes * 8} GPUs` : ""}`,
    backend,
    gpus: spec.nodes * 8,
    batch: spec.batch,
    steps: n,
    flexspS: sums.flexsp / n / 1000,
    staticS: sums.static / n / 1000,
    batchadaS: sums.batchada / n / 1000,
    speedupVsStatic: sums.static / sums.flexsp,
    speedupVsBatchAda: sums.batchada / sums.flexsp,
    gapToBoundPct: (sums.flexsp / sums.bound - 1) * 100,
    solveP50Ms: quantile(solve, 0.5),
    solveP95Ms: quantile(solve, 0.95),
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
  const specs: RowSpec[] = [];
  for (const model of ["gpt-7b", "gpt-13b", "gpt-30b"]) {
    for (const maxSeq of [196608, 393216]) {
      for (const dist of ["wikipedia", "commoncrawl", "github"]) {
        specs.push({ model, maxSeq, dist, nodes: 8, batch: 512, steps, timeLimitMs: 1000 });
      }
    }
  }
  specs.push({
    model: "gpt-7b",
    maxSeq: 196608,
    dist: "commoncrawl",
    nodes: 128,
    batch: 4096,
    steps: quick ? 1 : 3,
    timeLimitMs: 8000,
  });
  const results = [];
  for (const spec of specs) {
    for (const backend of ["highs", "glpk"] as const) {
      const r = await runRow(spec, backend);
      results.push(r);
      console.error(
        `  ${r.row.padEnd(30)} ${backend.padEnd(5)} flexsp ${r.flexspS.toFixed(2)} s  x${
          r.speedupVsStatic.toFixed(2)
        } ` +
          `static  x${r.speedupVsBatchAda.toFixed(2)} batchada  gap ${r.gapToBoundPct.toFixed(1)}%  ` +
          `p95 ${r.solveP95Ms.toFixed(0)} ms`,
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
  }));
  const grid = results.filter((r) => r.gpus === 64);
  const summary = {
    averageGapPct: grid.reduce((s, r) => s + r.gapToBoundPct, 0) / grid.length,
    worstSpeedupVsBest: Math.min(...results.map((r) => Math.min(r.speedupVsStatic, r.speedupVsBatchAda))),
    solveP95Ms64: Math.max(...grid.map((r) => r.solveP95Ms)),
    solveP95Ms1024: Math.max(...results.filter((r) => r.gpus === 1024).map((r) => r.solveP95Ms)),
    invalidPlans: results.reduce((s, r) => s + r.invalidPlans, 0),
  };
  return { title: "Planner (predicted step time under the paper's cost model)", rows, json: { results, summary } };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  printSection(await bench());
}
