// Per-node dispatch changes what travels, not what is computed: a run on 4 SSH test hosts (2 CPU devices each, so
// groups span nodes) logs exactly the losses that the same executors give when every rank is handed the WHOLE plan
// of each step, as the orchestrator did before per-node dispatch. The reference replays the run's ledger (its plans,
// sequences and learning rates) on 8 fresh executor processes driven directly with whole plans.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { TWO_NODES_OF_TWO, writeTrainingConfig } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { readDatasetIndex } from "../../orchestrator/data/dataset_format.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { ADAMW_DEFAULTS, modelShapeOf } from "../../orchestrator/cluster/executor_pool.ts";
import type { ExecutorStepPlan, GroupAssignment } from "../../core/protocol.ts";
import { assert, assertEquals } from "../assert.ts";
import { launchCli, ledger } from "./launch_harness.ts";
import { startRun, stepAll, stopAll } from "../kernels/executor_harness.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the 4-host loss test: ${can.reason}`);

Deno.test({
  name: "4 test hosts: the losses of a run equal those of its plans handed whole to every rank",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const data = await Deno.makeTempDir({ prefix: "fx4-data-" });
    const th = await startTestHosts({ count: 4 });
    try {
      await buildBuiltinDataset("deno-corpus", `${data}/corpus`);
      const base = await th.writeConfig({ devices: 2, executor: "cpu", heartbeatTimeoutS: 5 });
      const cfg = await writeTrainingConfig(base, `${th.dir}/four.yaml`, {
        maxSeq: 128,
        dataset: `${data}/corpus`,
        globalBatch: 16,
        steps: 4,
        training: { checkpoint_interval: 0 },
        planner: { zero_stage: 0, milp: "none", deterministic: true },
        constants: TWO_NODES_OF_TWO,
      });
      const r = await launchCli([cfg, "--run-dir", `${th.dir}/run`]);
      assertEquals(r.code, 0, r.out + r.err);
      const recs = await ledger(`${th.dir}/run`);
      assertEquals(recs.map((x) => x.step), [1, 2, 3, 4]);
      assert(
        recs.some((x) => x.plan.microBatches.some((mb) => mb.groups.some((g) => g.degree > 2))),
        "some group spans nodes",
      );

      const config = await loadConfig(cfg);
      const ds = await readDatasetIndex(`${data}/corpus`);
      const t = config.training;
      const procs = await startRun(8, modelShapeOf(config.model), {
        init: () => ({
          seed: t.seed,
          optimizer: { lr: t.lr, weightDecay: t.weightDecay, gradClip: t.gradClip, ...ADAMW_DEFAULTS },
          dataset: { tokensPath: ds.tokensPath, tokenBytes: ds.manifest.tokenBytes },
        }),
      });
      try {
        for (const rec of recs) {
          const byId = new Map(rec.sequences.map((q) => [q.id, q]));
          const microBatches = rec.plan.microBatches.map((mb) => {
            const groups: GroupAssignment[] = mb.groups.filter((g) => g.sequences.length).map((g) => ({
              degree: g.degree,
              ranks: g.ranks,
              sequences: g.sequences.map((id) => {
                const q = byId.get(id)!;
                return { id, offset: ds.offsets[q.doc!] + q.offset, length: q.length };
              }),
            }));
            const busy = new Set(groups.flatMap((g) => g.ranks));
            for (let k = 0; k < 8; k++) if (!busy.has(k)) groups.push({ degree: 1, ranks: [k], sequences: [] });
            return { groups };
          });
          const whole: ExecutorStepPlan = { step: rec.step, lr: rec.lr, globalTokens: rec.targetTokens, microBatches };
          const done = await stepAll(procs, whole);
          let lossSum = 0, tokens = 0;
          for (const d of done) {
            for (const mb of d.microBatches) {
              lossSum += mb.lossSum;
              tokens += mb.tokens;
            }
          }
          assertEquals(lossSum / tokens, rec.loss, `step ${rec.step}: the same loss, bit for bit`);
        }
      } finally {
        await stopAll(procs);
      }
    } finally {
      await th.close();
      await Deno.remove(data, { recursive: true }).catch(() => {});
    }
  },
});
