// flexsp against what users run today, on the same data, devices and seeds, in one run (issue 20, workload a: every
// sequence fits on one device). The embedded corpus (configs/local.yaml's dataset) at max_seq 1024, a 4-layer GQA
// llama (hidden 256, 8 query heads, 2 K/V heads, vocab 256) that every row starts from (one Hugging Face directory,
// made once), 2 ranks on this machine, each pinned to its own cores where there are enough:
// - flexsp on `executor: torch-cpu` (`model.from` that directory), profiled first (`deno task profile --quick`), with
//   `planner.strategy` flexsp, static and batchada;
// - plain PyTorch data parallelism (bench/peers_ddp.py under torchrun: gloo DDP over transformers' LlamaForCausalLM,
//   SDPA, one sequence at a time, LPT-balanced);
// - fixed-degree Ulysses SP at degree 2 (bench/peers_ulysses.py: DeepSpeed's DistributedAttention when `import
//   deepspeed` works in that Python, else a plain-PyTorch Ulysses written for this comparison).
// The peers train the very sequences flexsp trained at each step (read back from its ledger) at the learning rates
// it used, so their losses follow flexsp's (the table shows the largest difference from DDP's). Tokens/s counts the
// steps after the first two. The machine is shared and its 2 cores busy: the ratios come from back-to-back runs.
// `--rounds N` repeats every system N times, interleaved, and reports medians (the ratios are per round).
// Runnable alone: `deno run -A bench/peers.ts [--quick] [--no-profile] [--rounds N] [--workload a|b|both]`;
// FLEXSP_PEERS_PYTHON picks the Python (DeepSpeed must import in it for the DeepSpeed row; else the plain-PyTorch
// Ulysses runs). `--workload b` (bench/peers_long.ts): a long-tailed corpus on 2 shaped test hosts; default both.

import { launchRun } from "../orchestrator/run/launch_run.ts";
import type { LedgerRecord } from "../orchestrator/ledger/ledger.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { openTrainingData } from "../orchestrator/data/training_data.ts";
import { readDocumentRange } from "../orchestrator/data/data_ledger.ts";
import { autoCpuSets, ownCpus } from "../core/cpu_list.ts";
import type { BenchSection } from "./report.ts";

const QUICK = Deno.args.includes("--quick");
const PROFILE = !Deno.args.includes("--no-profile");
const ROUNDS = Deno.args.includes("--rounds") ? Number(Deno.args[Deno.args.indexOf("--rounds") + 1]) : 1;
const STEPS = QUICK ? 6 : 20;
const WARMUP = 2;
const RANKS = 2;
const SEED = 1;
const SHAPE = {
  layers: 4,
  hidden: 256,
  heads: 8,
  kvHeads: 2,
  intermediate: 688,
  vocab: 256,
  maxSeq: 1024,
  ropeTheta: 10000,
  normEps: 1e-5,
};
const ROOT = new URL("..", import.meta.url).pathname;
const CONFIG = `${ROOT}configs/local.yaml`;
const PYTHON = Deno.env.get("FLEXSP_PEERS_PYTHON") ?? "python3";
const STRATEGIES = ["flexsp", "static", "batchada"] as const;

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

/** One training run's per-step timings and losses. */
export interface Steps {
  ms: number[];
  tokens: number[];
  losses: number[];
}

/** Tokens/s over the steps after warm-up. */
function tokensPerS(s: Steps): number {
  const ms = s.ms.slice(WARMUP).reduce((a, b) => a + b, 0);
  return s.tokens.slice(WARMUP).reduce((a, b) => a + b, 0) / (ms / 1000);
}

export async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<string> {
  const out = await new Deno.Command(cmd, { args, env, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd} ${args.slice(0, 3).join(" ")} ... failed:\n${text.slice(-3000)}`);
  return text;
}

/** `deno task profile --quick` of a config (with `--set`s) into `dir`/profile.json. */
export async function profileQuick(config: string, sets: string[], dir: string): Promise<void> {
  await run(Deno.execPath(), [
    "run",
    "-A",
    `${ROOT}orchestrator/cli/profile.ts`,
    config,
    "--quick",
    "--out",
    `${dir}/profile.json`,
    "--run-dir",
    `${dir}/profile-run`,
    ...sets.flatMap((s) => ["--set", s]),
  ]);
}

/** The flexsp run of one strategy: its ledger records. */
async function flexsp(sets: string[], strategy: string, runDir: string): Promise<LedgerRecord[]> {
  const r = await launchRun({
    configPath: CONFIG,
    sets: [...sets, `planner.strategy=${strategy}`],
    runDir,
    force: true,
    signals: false,
    log: () => {},
    print: () => {},
  });
  if (r.code !== 0) throw new Error(`flexsp ${strategy} ended with code ${r.code}`);
  return r.records;
}

/** Saves the llama every row starts from (transformers' own init, seeded) as a Hugging Face directory. */
export async function makeModel(dir: string, shape: Record<string, number> = SHAPE): Promise<void> {
  await run(PYTHON, [`${ROOT}bench/peers_common.py`, "make-model", dir, JSON.stringify(shape), String(SEED)]);
}

/** What the torchrun peers read (see bench/peers_common.py). */
export interface PeerJob {
  model: string;
  steps: number[][][];
  lrs: number[];
  weight_decay: number;
  grad_clip: number;
  seed: number;
  threads: number;
  cpus: number[][] | null;
}

/** Where a multi-host peer runs: one torchrun agent per host, in the host's network namespace. */
export interface PeerHosts {
  hosts: { netns: string; ip: string }[];
  perNode: number;
}

/**
 * A torchrun peer (`peers_ddp.py`, `peers_ulysses.py`) on a job; its steps as rank 0 wrote them. Without `on`: `RANKS`
 * ranks on this machine. With `on`: `perNode` ranks on each test host, one torchrun agent per host started with `ip
 * netns exec` into its namespace (rendezvous on the first host's address, gloo over its eth0), so that the peer's
 * traffic crosses the same shaped links as flexsp's.
 */
export async function peer(
  script: string,
  job: PeerJob,
  dir: string,
  extra: string[] = [],
  on?: PeerHosts,
): Promise<Steps & { peer: string }> {
  const jobPath = `${dir}/${script.replace(/\.py$/, "")}-job.json`;
  await Deno.writeTextFile(jobPath, JSON.stringify(job));
  const out = `${dir}/${script.replace(/\.py$/, "")}.json`;
  const port = 29500 + (Deno.pid % 4000) + Math.floor(Math.random() * 1000);
  const env = { HF_HUB_OFFLINE: "1", OMP_NUM_THREADS: "1", PYTHONDONTWRITEBYTECODE: "1" };
  const torchrun = (nodes: number, rank: number, perNode: number, addr: string) => [
    "-m",
    "torch.distributed.run",
    "--nnodes",
    String(nodes),
    "--node-rank",
    String(rank),
    "--nproc-per-node",
    String(perNode),
    "--master-addr",
    addr,
    "--master-port",
    String(port),
    `${ROOT}bench/${script}`,
    jobPath,
    out,
    ...extra,
  ];
  if (!on) await run(PYTHON, torchrun(1, 0, RANKS, "127.0.0.1"), env, `${ROOT}bench`);
  else {
    const addr = on.hosts[0].ip;
    const envArgs = Object.entries({ ...env, GLOO_SOCKET_IFNAME: "eth0" }).map(([k, v]) => `${k}=${v}`);
    await Promise.all(on.hosts.map((h, i) =>
      run(
        "ip",
        ["netns", "exec", h.netns, "env", ...envArgs, PYTHON, ...torchrun(on.hosts.length, i, on.perNode, addr)],
        {},
        `${ROOT}bench`,
      )
    ));
  }
  const r = JSON.parse(await Deno.readTextFile(out)) as {
    peer: string;
    steps: { ms: number; tokens: number; loss: number }[];
  };
  return {
    peer: r.peer,
    ms: r.steps.map((s) => s.ms),
    tokens: r.steps.map((s) => s.tokens),
    losses: r.steps.map((s) => s.loss),
  };
}

/** The token sequences flexsp trained per step, read back from the dataset by its ledger. */
export async function trainedTokens(
  configPath: string,
  sets: string[],
  records: LedgerRecord[],
): Promise<number[][][]> {
  const config = await loadConfig(configPath, sets);
  const data = await openTrainingData(config);
  if (!data.dataset) throw new Error(`${configPath} has no dataset`);
  const steps: number[][][] = [];
  for (const r of records) {
    const seqs: number[][] = [];
    for (const q of r.sequences) seqs.push([...await readDocumentRange(data.dataset, q.doc!, q.offset, q.length)]);
    steps.push(seqs);
  }
  return steps;
}

/** The peers' job: the sequences flexsp trained as tokens, its learning rates and optimizer settings, the cores. */
async function peerJob(
  records: LedgerRecord[],
  model: string,
  sets: string[],
  cpus: number[],
  pinned: boolean,
): Promise<PeerJob> {
  const t = (await loadConfig(CONFIG, sets)).training;
  return {
    model,
    steps: await trainedTokens(CONFIG, sets, records),
    lrs: records.map((r) => r.lr),
    weight_decay: t.weightDecay,
    grad_clip: t.gradClip,
    seed: SEED,
    threads: pinned ? Math.floor(cpus.length / RANKS) : 1,
    cpus: pinned ? autoCpuSets(cpus, RANKS) : null,
  };
}

/** Which workloads run: `--workload a|b|both` (default both). */
const WORKLOAD = Deno.args.includes("--workload") ? Deno.args[Deno.args.indexOf("--workload") + 1] : "both";

/** The benchmark section: workload (a), (b) or both (b's table after a's, each's JSON under its letter). */
export async function bench(): Promise<BenchSection> {
  if (!["a", "b", "both"].includes(WORKLOAD)) throw new Error(`--workload ${WORKLOAD}: expected a, b or both`);
  const a = WORKLOAD === "b" ? undefined : await benchEmbedded();
  if (WORKLOAD === "a") return a!;
  const { benchLong } = await import("./peers_long.ts");
  const b = await benchLong();
  if (!a) return b;
  return { ...a, extra: [{ title: b.title, rows: b.rows }], json: { a: a.json, b: b.json } };
}

/** Workload (a): the embedded corpus, every sequence fits on one device. */
async function benchEmbedded(): Promise<BenchSection> {
  const dir = await Deno.makeTempDir({ prefix: "fxbench-peers-" });
  try {
    const model = `${dir}/model`;
    await makeModel(model);
    const cpus = ownCpus();
    const pinned = cpus.length >= RANKS;
    const sets = [
      "cluster.nodes[0].executor=torch-cpu",
      `cluster.nodes[0].devices=${RANKS}`,
      `cluster.nodes[0].cpu_pinning=${pinned ? "auto" : "off"}`,
      `model.from=${model}`,
      `model.max_seq=${SHAPE.maxSeq}`,
      `training.steps=${STEPS}`,
      `training.seed=${SEED}`,
      "training.checkpoint_interval=0",
      // What the peers have: each device is a CPU process with gigabytes of host memory, and no activation
      // checkpointing (plain DDP keeps every activation). configs/local.yaml's 0.25 GB budget is sized for gpt-tiny;
      // left as is, it would force this llama into several micro-batches and SP groups DDP never pays for.
      "planner.memory_budget_gb=4",
      "model.checkpointing=none",
      // The agent shares the two busy cores with the executors: heartbeats may come late on this shared machine.
      "cluster.heartbeat_timeout_s=120",
      `profile.path=${dir}/profile.json`,
    ];
    if (PROFILE) {
      console.error("peers: profiling the 2 torch-cpu devices (deno task profile --quick) ...");
      await profileQuick(CONFIG, sets, dir);
    }
    // Each round runs every system once, back to back (in reverse order every other round, so that a trend in the
    // machine's load does not favour one side); ratios are taken inside a round, then the median over rounds.
    const fromLedger = (rs: LedgerRecord[]): Steps => ({
      ms: rs.map((r) => r.wallMs),
      tokens: rs.map((r) => r.tokens),
      losses: rs.map((r) => r.loss),
    });
    const ids = (rs: LedgerRecord[]) => JSON.stringify(rs.map((r) => r.sequences.map((q) => q.id)));
    const results: Record<string, Steps[]> = {};
    let first: LedgerRecord[] | undefined;
    let job: PeerJob | undefined;
    let ulyssesImpl = "";
    const systems = [...STRATEGIES, "ddp", "ulysses"] as const;
    for (let round = 0; round < ROUNDS; round++) {
      for (const sys of round % 2 ? [...systems].reverse() : systems) {
        console.error(`peers: round ${round + 1}/${ROUNDS}: ${sys} ...`);
        let st: Steps;
        if (sys === "ddp" || sys === "ulysses") {
          job ??= await peerJob(first ?? await flexsp(sets, "flexsp", `${dir}/run-first`), model, sets, cpus, pinned);
          const p = await peer(sys === "ddp" ? "peers_ddp.py" : "peers_ulysses.py", job, dir);
          if (sys === "ulysses") ulyssesImpl = p.peer;
          st = p;
        } else {
          const rs = await flexsp(sets, sys, `${dir}/run-${round + 1}-${sys}`);
          // Every strategy trains the same sequences per step (the sampler does not depend on the plan).
          first ??= rs;
          if (ids(rs) !== ids(first)) throw new Error(`flexsp ${sys} trained other sequences than the first run`);
          st = fromLedger(rs);
        }
        (results[sys] ??= []).push(st);
      }
    }
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b), m = s.length / 2;
      return s.length % 2 ? s[Math.floor(m)] : (s[m - 1] + s[m]) / 2;
    };
    const ddp0 = results.ddp[0];
    const label: Record<(typeof systems)[number], [string, string]> = {
      ddp: ["plain PyTorch DDP", "torchrun, 2 gloo DDP ranks, LlamaForCausalLM (SDPA), LPT-balanced"],
      ulysses: [
        `Ulysses SP=2 (${ulyssesImpl === "ulysses-deepspeed" ? "DeepSpeed DistributedAttention" : "plain PyTorch"})`,
        "torchrun, every sequence over both ranks, all-to-all around SDPA",
      ],
      flexsp: ["flexsp, strategy flexsp", `torch-cpu executors, ${PROFILE ? "profiled" : "config constants"}`],
      static: ["flexsp, strategy static", "torch-cpu executors, one fixed SP degree"],
      batchada: ["flexsp, strategy batchada", "torch-cpu executors, best homogeneous degree per batch"],
    };
    const rows = (["ddp", "ulysses", ...STRATEGIES] as const).map((sys) => {
      const tps = results[sys].map(tokensPerS);
      const ratios = tps.map((x, i) => x / tokensPerS(results.ddp[i]));
      const st = results[sys][0];
      return {
        system: label[sys][0],
        what: label[sys][1],
        "tokens/s": r1(median(tps)),
        "vs DDP": r2(median(ratios)),
        ...(ROUNDS > 1 ? { "vs DDP range": `${r2(Math.min(...ratios))}-${r2(Math.max(...ratios))}` } : {}),
        "max |loss - DDP|": Math.max(...st.losses.map((l, i) => Math.abs(l - ddp0.losses[i]))).toExponential(1),
      };
    });
    const plans = first!.map((r) =>
      r.plan.microBatches.map((m) => m.groups.map((g) => `d${g.degree}x${g.sequences.length}`).join("+")).join(" | ")
    );
    return {
      title:
        `peers: flexsp vs plain DDP and Ulysses SP, ${RANKS} ranks${
          pinned ? " pinned to their own cores" : ""
        }, embedded corpus, max_seq ${SHAPE.maxSeq}, steps ${WARMUP + 1}-${STEPS}, ${ROUNDS} round(s), median ` +
        "(target: flexsp >= 1.0x DDP)",
      rows,
      json: {
        shape: SHAPE,
        steps: STEPS,
        warmup: WARMUP,
        ranks: RANKS,
        rounds: ROUNDS,
        cpus: pinned ? autoCpuSets(cpus, RANKS) : null,
        profiled: PROFILE,
        ulysses: ulyssesImpl,
        rows,
        flexspPlans: plans,
        perRound: results,
      },
    };
  } finally {
    if (Deno.env.get("FLEXSP_PEERS_KEEP")) console.error(`peers: kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  // No top-level await: workload (b) imports this module back (bench/peers_long.ts), which must finish evaluating.
  const { printSection } = await import("./report.ts");
  bench().then(printSection);
}
