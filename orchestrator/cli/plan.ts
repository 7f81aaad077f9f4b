// `deno task plan <config.yaml>`: dry run. Plans the next steps with FlexSP and the static-SP and BatchAda
// baselines and prints groups and predicted times, without touching a device.

import { loadClusterConfig } from "../cluster/slurm_allocation.ts";
import { runCli, UserError } from "../errors.ts";
import { resolveCostConstants } from "../config/profile_file.ts";
import { withProfileOffer } from "./profile_offer.ts";
import { type PlannerSetup, plannerSetup } from "../planner/from_config.ts";
import { PlannerWorker } from "../planner/worker.ts";
import type { Plan, Strategy } from "../planner/plan_types.ts";
import { sampleLengths } from "../data/length_distributions.ts";
import { Rng } from "../data/rng.ts";
import { parseCommand, positiveInt } from "./args.ts";
import { fitToContext, readLengthsFile } from "../data/lengths_file.ts";
import { formatPlanText, groupDeviceType } from "../planner/format_plan.ts";
import { openTrainingData } from "../data/training_data.ts";

const USAGE =
  `usage: deno task plan <config.yaml> [--lengths FILE] [--steps N] [--json] [--verbose] [--set PATH=VALUE]...

Plans the next steps of a run and compares FlexSP with static SP and BatchAda under the cost model.
  --lengths FILE   sequence lengths, one integer per line, taken in file order (global batch from the config)
  --steps N        steps to plan (default 3, or every full batch of --lengths)
  --json           print one JSON object instead of tables
  --verbose        list every group (ranks, hosts, device type), not a per-degree summary
  --force          use the profile even if it was measured on another cluster or model
  --set P=V        override a config field, e.g. --set model.preset=gpt-13b`;

const STRATEGIES: Strategy[] = ["flexsp", "static", "batchada"];

async function main(): Promise<void> {
  const { values, positionals, sets } = parseCommand(Deno.args, USAGE, {
    lengths: { type: "string" },
    steps: { type: "string" },
    json: { type: "boolean" },
    verbose: { type: "boolean" },
    force: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one config file\n\n${USAGE}`);
  const config = await loadClusterConfig(positionals[0], sets);
  const constants = await withProfileOffer(() => resolveCostConstants(config, { force: Boolean(values.force) }));
  const setup = plannerSetup(config, constants);
  const batch = config.training.globalBatch;

  // The batches to plan.
  let batches: number[][];
  if (values.lengths) {
    const all = fitToContext(await readLengthsFile(values.lengths as string), config);
    const full = Math.max(1, Math.floor(all.lengths.length / batch));
    const steps = positiveInt("steps", values.steps as string | undefined, full);
    batches = Array.from({ length: steps }, (_, i) => all.lengths.slice(i * batch, (i + 1) * batch))
      .filter((b) => b.length > 0);
    if (all.note && !values.json) console.error(all.note);
  } else if (config.training.dataset) {
    // The first batches the run would train on (the launch sampler, same seed).
    const steps = positiveInt("steps", values.steps as string | undefined, 3);
    const data = await openTrainingData(config, (l) => console.error(l));
    const sampler = data.sampler();
    batches = Array.from({ length: steps }, () => sampler.next(batch).lengths);
    if (!values.json) { for (const n of data.notes) console.error(n); }
  } else if (config.training.lengths) {
    const steps = positiveInt("steps", values.steps as string | undefined, 3);
    const rng = new Rng(config.training.seed);
    batches = Array.from(
      { length: steps },
      () => sampleLengths(config.training.lengths!, batch, config.model.maxSeq, rng),
    );
  } else {
    throw new UserError(
      `${config.source}: nothing to plan: pass --lengths FILE, or set training.dataset or training.lengths ` +
        `(wikipedia, github, commoncrawl) in the config`,
    );
  }

  const worker = new PlannerWorker(setup);
  const out: { step: number; strategies: Record<string, Plan> }[] = [];
  try {
    for (const [step, lengths] of batches.entries()) {
      const strategies: Record<string, Plan> = {};
      for (const strategy of STRATEGIES) strategies[strategy] = await worker.plan(lengths, { strategy });
      out.push({ step, strategies });
      if (!values.json) {
        console.log(formatPlanText(step, lengths, strategies, setup, { verbose: Boolean(values.verbose) }));
      }
    }
  } finally {
    worker.close();
  }
  if (values.json) {
    console.log(JSON.stringify({
      config: config.source,
      devices: setup.topology.devices,
      steps: out.map(({ step, strategies }) => ({
        step,
        strategies: Object.fromEntries(Object.entries(strategies).map(([k, p]) => [k, jsonPlan(p, setup)])),
      })),
    }));
  } else if (out.length > 1) {
    const sum = (s: string) => out.reduce((t, o) => t + o.strategies[s].predictedMs, 0);
    console.log(
      `total over ${out.length} steps: flexsp ${(sum("flexsp") / 1000).toFixed(2)} s, static ` +
        `${(sum("static") / 1000).toFixed(2)} s (${(sum("static") / sum("flexsp")).toFixed(2)}x), batchada ` +
        `${(sum("batchada") / 1000).toFixed(2)} s (${(sum("batchada") / sum("flexsp")).toFixed(2)}x)`,
    );
  }
}

function jsonPlan(p: Plan, setup: PlannerSetup) {
  return {
    predictedMs: p.predictedMs,
    solveMs: p.solveMs,
    lowerBoundMs: p.lowerBoundMs,
    ...(p.degree ? { degree: p.degree } : {}),
    dropped: p.dropped,
    details: p.details,
    microBatches: p.microBatches.map((mb) => ({
      predictedMs: mb.predictedMs,
      groups: mb.groups.map((g) => ({
        degree: g.degree,
        ranks: g.ranks,
        sequences: g.sequences,
        lengths: g.lengths,
        predictedMs: g.predictedMs,
        spansNodes: g.spansNodes,
        deviceType: groupDeviceType(g, setup.topology),
      })),
    })),
  };
}

if (import.meta.main) runCli(main);
