// Workload (b) of the peers bench (issue 20): a long-tailed corpus in which some sequences exceed one device's token
// capacity, on the emulated two-tier network (tests/hosts/two_tier.ts): 2 test hosts (network namespaces with sshd,
// links between them shaped by tc, each host's loopback 10x faster) of 2 torch-cpu devices each. The corpus is
// generated, deterministic: its documents are slices of the embedded corpus's text (`deno types`, non-ASCII bytes
// replaced so that one byte is one token) at lengths drawn from a seeded Rng, in the proportions of the paper's
// Wikipedia set (see `longTailLengths`): per 32 documents 29 short (64-1,200 tokens, log-uniform: fit one device),
// 2 medium (1,201-2,400: need 2) and one long (2,600-4,096: need 4). The memory budget is set from the profile so that
// one device holds `CAPACITY` tokens: the long sequences need a group of 4 devices (both nodes).
// On the same data, devices and seeds, in one run:
// - fixed-degree Ulysses SP at the smallest degree that holds every sequence (bench/peers_ulysses.py, plain PyTorch
//   or DeepSpeed, under torchrun with one agent per host: `ip netns exec` into each host's namespace, so its gloo
//   traffic crosses the same shaped links as flexsp's);
// - flexsp on the hosts over SSH (`executor: torch-cpu`, profiled first) with `planner.strategy` flexsp, static (the
//   same fixed degree, flexsp's executor) and batchada (the best homogeneous degree chosen per batch: the planner's
//   own baseline, which picks per step the degree whose plan it predicts fastest).
// Ratios against the targets (flexsp >= 1.3x fixed-degree Ulysses, >= 1.1x the best homogeneous degree per batch)
// and the cost model's predicted against measured step time (median |error|) per strategy.
// Runnable alone: `deno run -A bench/peers.ts --workload b [--quick] [--no-profile]`.

import { launchRun } from "../orchestrator/run/launch_run.ts";
import type { LedgerRecord } from "../orchestrator/ledger/ledger.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { denoTypesText } from "../orchestrator/data/builtin_corpus.ts";
import { prepareDataset } from "../orchestrator/data/prepare.ts";
import { Rng } from "../orchestrator/data/rng.ts";
import { readProfile, storedToConstants } from "../orchestrator/config/profile_file.ts";
import { buildCostModel } from "../orchestrator/planner/cost_model.ts";
import { errorStats } from "../orchestrator/profile/ledger_check.ts";
import { canCreateTestHosts, startTestHosts } from "../tests/hosts/test_hosts.ts";
import { twoTierNetwork } from "../tests/hosts/two_tier.ts";
import { makeModel, peer, type PeerJob, profileQuick, run, type Steps, trainedTokens } from "./peers.ts";
import type { BenchSection } from "./report.ts";

const QUICK = Deno.args.includes("--quick");
const PROFILE = !Deno.args.includes("--no-profile");
const NODES = 2;
const PER_NODE = 2;
const RANKS = NODES * PER_NODE;
/**
 * Sequences per step. The paper trains batches of 512 sequences, so its per-step fixed costs (the gradient
 * all-reduce, the optimizer) are small against the step; with 8 sequences here the DDP all-reduce of the fp32
 * gradients over the 200 Mbit/s link (about 0.8 s) was a third of a step whatever the plan. 32 keeps the whole run
 * within minutes on a 2-core machine while the per-step costs weigh about as little as in training.
 */
export const GLOBAL_BATCH = 32;
/** Steps: the corpus is one epoch of them. */
export const LONG_STEPS = QUICK ? 2 : 4;
const WARMUP = 1;
const SEED = 1;
/** Tokens one device holds (the memory budget is set so). */
export const CAPACITY = 1200;
/** The longest document (and model.max_seq). */
export const LONGEST = 4096;
const SHAPE = {
  layers: 4,
  hidden: 256,
  heads: 8,
  // 4 K/V heads: Ulysses at degree 4 splits K and V by heads too.
  kvHeads: 4,
  intermediate: 688,
  vocab: 256,
  maxSeq: LONGEST,
  ropeTheta: 10000,
  normEps: 1e-5,
};
const PYTHON = Deno.env.get("FLEXSP_PEERS_PYTHON") ?? "python3";
const STRATEGIES = ["flexsp", "static", "batchada"] as const;

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

/**
 * The document lengths of the long-tailed corpus (`count` documents, seeded), in the paper's Wikipedia proportions
 * scaled by the device's capacity. The paper's 7B model at 384K context on 64 GPUs holds about 6K tokens per GPU; in
 * its Wikipedia length table (shared/reference/flexsp-paper-notes.md) about 65% of the tokens are in sequences that
 * fit one GPU (<= 6K), about 15% need 2 (6-12K) and about 20% need 4 or more; 79% of the sequences are <= 1K, i.e.
 * under a sixth of a GPU. Here, per 32 documents: 29 short, log-uniform in 64-`CAPACITY` (fit one device; about 60%
 * of the tokens), 2 medium in `CAPACITY`+1 to 2·`CAPACITY` (need 2; about 20%) and one long of 2,600-`LONGEST` (need
 * 4, both nodes; about 18%).
 */
export function longTailLengths(count: number, seed = SEED): number[] {
  const rng = new Rng(seed);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const k = i % GLOBAL_BATCH;
    if (k === GLOBAL_BATCH - 1) out.push(2600 + rng.int(LONGEST - 2600 + 1));
    else if (k >= GLOBAL_BATCH - 3) out.push(CAPACITY + 1 + rng.int(CAPACITY));
    else out.push(Math.round(64 * Math.pow(CAPACITY / 64, rng.next())));
  }
  return out;
}

/** Writes the long-tailed corpus as a dataset in `dir` (documents: slices of the embedded corpus's text). */
export async function writeLongTailCorpus(dir: string, lengths: number[]): Promise<void> {
  const text = (await denoTypesText()).replace(/[^\x20-\x7e\n]/g, "?");
  const need = lengths.reduce((a, b) => a + b, 0);
  const source = text.repeat(Math.ceil(need / text.length));
  let at = 0;
  const lines = lengths.map((n) => {
    const doc = source.slice(at, at + n);
    at += n;
    return JSON.stringify({ text: doc });
  });
  const jsonl = `${dir}-input.jsonl`;
  await Deno.writeTextFile(jsonl, lines.join("\n") + "\n");
  await prepareDataset({ input: jsonl, out: dir, format: "jsonl", overwrite: true });
  await Deno.remove(jsonl);
}

/** The Python's executable and the prefixes the test hosts must see (their /root is their own). */
async function pythonOnHosts(): Promise<{ python: string; share: string[] }> {
  const [python, prefix, base] = (await run(PYTHON, [
    "-c",
    "import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)",
  ])).trim().split("\n");
  return { python, share: [...new Set([prefix, base].filter((d) => d.startsWith("/root/")))] };
}

/** The benchmark section of workload (b). */
export async function benchLong(): Promise<BenchSection> {
  const can = canCreateTestHosts();
  if (!can.ok) {
    return { title: `peers, workload b: skipped (${can.reason})`, rows: [], json: { skipped: can.reason } };
  }
  const dir = await Deno.makeTempDir({ prefix: "fxbench-peers-b-" });
  const { python, share } = await pythonOnHosts();
  const net = await twoTierNetwork();
  const th = await startTestHosts({ count: NODES, shaping: net.shaping, share });
  try {
    const model = `${dir}/model`;
    await makeModel(model, SHAPE);
    const lengths = longTailLengths(LONG_STEPS * GLOBAL_BATCH);
    await writeLongTailCorpus(`${dir}/corpus`, lengths);
    const base = await th.writeConfig({
      devices: PER_NODE,
      executor: "torch-cpu",
      nodeExtra: `python: ${python}`,
      connectTimeoutS: 30,
      heartbeatTimeoutS: 120,
      cpuPinning: "off",
    });
    const config = `${dir}/workload-b.yaml`;
    await Deno.writeTextFile(
      config,
      (await Deno.readTextFile(base)) + [
        `  max_seq: ${LONGEST}`,
        "  checkpointing: none",
        "training:",
        `  dataset: ${dir}/corpus`,
        `  global_batch: ${GLOBAL_BATCH}`,
        `  steps: ${LONG_STEPS}`,
        "  lr: 0.003",
        "  warmup_steps: 2",
        `  seed: ${SEED}`,
        "  checkpoint_interval: 0",
        "planner:",
        "  memory_budget_gb: 4",
        "  zero_stage: 0",
        "  milp: none",
        "  time_limit_ms: 500",
        "  deterministic: true",
        "profile:",
        `  path: ${dir}/profile.json`,
        "",
      ].join("\n"),
    );
    const sets = [`model.from=${model}`];
    if (PROFILE) {
      console.error(`peers b: profiling the ${RANKS} torch-cpu devices on ${NODES} shaped test hosts ...`);
      await profileQuick(config, sets, dir);
    }
    // The budget that holds CAPACITY tokens per device, by the profile's (or the config's) cost constants.
    const loaded = await loadConfig(config, sets);
    const constants = PROFILE
      ? storedToConstants((await readProfile(`${dir}/profile.json`)).constants)
      : loaded.profile.constants!;
    const cm = buildCostModel(constants, loaded.model, { memoryBudgetGb: 4, zeroStage: 0, devices: RANKS });
    const budgetGb = (cm.modelStateMb + CAPACITY * cm.actMbPerToken) / 1024;
    sets.push(`planner.memory_budget_gb=${budgetGb.toPrecision(6)}`);
    const longest = Math.max(...lengths);
    let degree = 1;
    while (degree * CAPACITY < longest) degree *= 2;

    const results: Record<string, Steps> = {};
    const records: Record<string, LedgerRecord[]> = {};
    const ids = (rs: LedgerRecord[]) => JSON.stringify(rs.map((r) => r.sequences.map((q) => q.id)));
    for (const s of STRATEGIES) {
      console.error(`peers b: flexsp ${s} ...`);
      const r = await launchRun({
        configPath: config,
        sets: [...sets, `planner.strategy=${s}`],
        runDir: `${dir}/run-${s}`,
        force: true,
        signals: false,
        log: () => {},
        print: () => {},
      });
      if (r.code !== 0) throw new Error(`flexsp ${s} ended with code ${r.code}`);
      if (records.flexsp && ids(r.records) !== ids(records.flexsp)) {
        throw new Error(`flexsp ${s} trained other sequences than flexsp`);
      }
      records[s] = r.records;
      results[s] = {
        ms: r.records.map((x) => x.wallMs),
        tokens: r.records.map((x) => x.tokens),
        losses: r.records.map((x) => x.loss),
      };
    }
    console.error(`peers b: Ulysses SP=${degree} over ${NODES} hosts ...`);
    const t = loaded.training;
    const job: PeerJob = {
      model,
      steps: await trainedTokens(config, sets, records.flexsp),
      lrs: records.flexsp.map((r) => r.lr),
      weight_decay: t.weightDecay,
      grad_clip: t.gradClip,
      seed: SEED,
      threads: 1,
      cpus: null,
    };
    const hosts = th.hosts.map((h) => ({ netns: h.netns, ip: h.ip }));
    const ulysses = await peer("peers_ulysses.py", job, dir, ["auto", String(degree)], { hosts, perNode: PER_NODE });
    results.ulysses = ulysses;

    const tps = (s: Steps) => {
      const ms = s.ms.slice(WARMUP).reduce((a, b) => a + b, 0);
      return s.tokens.slice(WARMUP).reduce((a, b) => a + b, 0) / (ms / 1000);
    };
    const impl = ulysses.peer === "ulysses-deepspeed" ? "DeepSpeed DistributedAttention" : "plain PyTorch";
    const label: Record<string, [string, string]> = {
      ulysses: [`Ulysses SP=${degree} (${impl})`, `torchrun on both hosts, every sequence over ${degree} ranks`],
      flexsp: ["flexsp, strategy flexsp", `torch-cpu over SSH, ${PROFILE ? "profiled" : "config constants"}`],
      static: [`flexsp, strategy static (SP=${degree})`, "one fixed degree, flexsp's executor"],
      batchada: ["flexsp, strategy batchada", "best homogeneous degree chosen per batch"],
    };
    const rows = (["ulysses", ...STRATEGIES] as const).map((sys) => {
      const err = records[sys]
        ? errorStats(records[sys].slice(WARMUP).map((r) => (r.predictedMs - r.measuredMs) / r.measuredMs))
        : undefined;
      return {
        system: label[sys][0],
        what: label[sys][1],
        "tokens/s": r1(tps(results[sys])),
        "vs Ulysses": r2(tps(results[sys]) / tps(ulysses)),
        "vs batchada": r2(tps(results[sys]) / tps(results.batchada)),
        "predicted vs measured": err ? `${(err.medianAbs * 100).toFixed(0)}% median |error|` : "",
        "max |loss - flexsp|": Math.max(...results[sys].losses.map((l, i) => Math.abs(l - results.flexsp.losses[i])))
          .toExponential(1),
      };
    });
    const plans = (rs: LedgerRecord[]) =>
      rs.map((r) =>
        r.plan.microBatches.map((m) => m.groups.map((g) => `d${g.degree}x${g.sequences.length}`).join("+")).join(
          " | ",
        )
      );
    const vsU = tps(results.flexsp) / tps(ulysses), vsB = tps(results.flexsp) / tps(results.batchada);
    const lens = records.flexsp.map((r) => r.plan.microBatches.length);
    return {
      title: `peers, workload b: long-tailed corpus (${lengths.filter((l) => l > CAPACITY).length} of ` +
        `${lengths.length} sequences over one device's ${CAPACITY} tokens, longest ${longest}), ${NODES} test hosts x ` +
        `${PER_NODE} torch-cpu devices on the two-tier network (${net.shaping.rateMbit} Mbit/s between hosts, ` +
        `${net.shaping.intraRateMbit} inside${net.note ? `; ${net.note}` : ""}), steps ${WARMUP + 1}-${LONG_STEPS}: ` +
        `flexsp ${r2(vsU)}x Ulysses SP=${degree} (target >= 1.3x), ${r2(vsB)}x batchada (target >= 1.1x)`,
      rows,
      json: {
        shape: SHAPE,
        capacity: CAPACITY,
        budgetGb,
        lengths,
        steps: LONG_STEPS,
        warmup: WARMUP,
        nodes: NODES,
        perNode: PER_NODE,
        network: net,
        ulyssesDegree: degree,
        ulysses: ulysses.peer,
        microBatches: lens,
        rows,
        plans: Object.fromEntries(STRATEGIES.map((s) => [s, plans(records[s])])),
        predictedMs: Object.fromEntries(STRATEGIES.map((s) => [s, records[s].map((r) => r.predictedMs)])),
        measuredMs: Object.fromEntries(STRATEGIES.map((s) => [s, records[s].map((r) => r.measuredMs)])),
        results,
      },
    };
  } finally {
    await th.close();
    if (Deno.env.get("FLEXSP_PEERS_KEEP")) console.error(`peers b: kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
