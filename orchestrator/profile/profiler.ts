// `runProfile`: measures a cluster through its agents and executors and fits the cost model. Phases: start the
// agents and one executor per device; compute grid (every device at once, lockstep) with memory accounting;
// all-to-all per degree (all aligned groups at once) and the node-pair matrix; fit; per-degree validation with real
// step plans; optionally replay planned training steps to prove the fit. Any node or device failure ends the run
// with one message naming it; nothing is written then.

import { coreSharingWarnings } from "./core_sharing.ts";
import type { LedgerRecord } from "../ledger/ledger.ts";
import { isTorchKind, type ProfileAllToAllResult } from "../../core/protocol.ts";
import type { Config } from "../config/types.ts";
import { UserError } from "../errors.ts";
import { degreeProblem } from "../../core/model_shape.ts";
import { plannerSetup } from "../planner/from_config.ts";
import { planStep } from "../planner/plan_step.ts";
import { sampleLengths } from "../data/length_distributions.ts";
import { Rng } from "../data/rng.ts";
import { datasetExists } from "../data/dataset_format.ts";
import { openTrainingData } from "../data/training_data.ts";
import { sourceHash } from "../cluster/bootstrap.ts";
import { ClusterSession, EXECUTOR_SOURCE, type ProgressEvent } from "../cluster/cluster_session.ts";
import { computeGrid, type GridOptions, shuffled } from "./compute_grid.ts";
import { type ComputeSample, fitCompute, type RankInfo, roundFactors } from "./compute_fit.ts";
import { ADAMW_DEFAULTS, describeRank, ExecutorPool } from "../cluster/executor_pool.ts";
import { onAll, profileError } from "./pool_calls.ts";
import { fingerprintOf, hashOf, nodeFingerprintOf } from "../config/profile_fingerprint.ts";
import { median } from "./fit.ts";
import { fitMemory } from "./memory_fit.ts";
import { aggregateAllToAll, bandwidthTables, p2pMatrix, type PairSample } from "./network_fit.ts";
import {
  type AllToAllResult,
  type P2PSection,
  PROFILE_SCHEMA_VERSION,
  type ProfileDoc,
  type StoredConstants,
  type ValidationSection,
} from "../config/profile_doc.ts";
import { storedToConstants } from "../config/profile_file.ts";
import type { PlannerSetup } from "../planner/from_config.ts";
import { alignedGroups, type MeasuredPoint, predictValidation, runPlannedStep, validateDegrees } from "./step_runs.ts";
import type { Calibration } from "./calibrate.ts";
import { fitStepTerms } from "./fixed_costs.ts";
import { checkLedger, type ErrorStats } from "./ledger_check.ts";

/** Options of {@link runProfile}. */
export interface ProfileRunOptions {
  grid: GridOptions;
  /** Longest wait for one benchmark command (ms). */
  timeoutMs: number;
  /** Progress lines (stderr in the CLI). */
  say: (line: string) => void;
  runId?: string;
  /** Local run directory (agents' logs; local executors' working directory). */
  runDir?: string;
  /** After fitting, plan and run this many training steps and record predicted vs measured (0: skip). */
  fidelitySteps?: number;
  /** Extra environment for every executor. */
  env?: Record<string, string>;
  /** Install Ctrl-C handlers that stop the cluster (the CLI does). */
  signals?: boolean;
  /** Refit v[d] against the validation's real group runs (default true; see calibrate.ts). */
  calibrate?: boolean;
  /** Called when a phase starts (tests use it to break things mid-run). */
  onPhase?: (phase: string, cluster: ClusterSession) => void | Promise<void>;
}

/** What a profile run produced. */
export interface ProfileRunResult {
  doc: ProfileDoc;
  /** Ledger entries of the replayed steps (launch's format), if any. */
  ledger: LedgerRecord[];
  /** Device speed after the replay relative to the validation (1: the machine's load did not change). */
  speedAfterReplay?: number;
}

const sig = (x: number) => Number(x.toPrecision(5));

/**
 * Sequence lengths of the replayed steps: global batches of the config's dataset when it is already built (the
 * tokens themselves are synthetic: only lengths matter for timing), else of its length distribution (Wikipedia's by
 * default).
 */
async function fidelityBatches(config: Config, steps: number): Promise<{ source: string; lengths: number[][] }> {
  const t = config.training;
  if (t.dataset && await datasetExists(t.dataset)) {
    const data = await openTrainingData(config);
    const sampler = data.sampler();
    return {
      source: data.description,
      lengths: Array.from({ length: steps }, () => sampler.next(t.globalBatch).lengths),
    };
  }
  const rng = new Rng(t.seed + 7);
  const dist = t.lengths ?? "wikipedia";
  return {
    source: `the ${dist} length distribution`,
    lengths: Array.from({ length: steps }, () => sampleLengths(dist, t.globalBatch, config.model.maxSeq, rng)),
  };
}

/** What the phases of one run share. */
interface RunContext {
  config: Config;
  opts: ProfileRunOptions;
  cluster: ClusterSession;
  pool: ExecutorPool;
  devices: number;
  say: (line: string) => void;
  phase: (name: string, text: string) => Promise<void>;
  warnings: string[];
}

/** Compute grid on every device at once (with memory accounting), its fit, and device/node speed warnings. */
async function measureCompute(ctx: RunContext) {
  const { config, pool, opts, say, warnings } = ctx;
  const grid = opts.grid;
  const points = computeGrid(grid);
  const indices = points.map((_, i) => i);
  const samples: ComputeSample[] = [];
  const memSamples: { rank: number; tokens: number; peakBytes: number }[] = [];
  const modelStates = new Map<number, number>();
  let memorySource = "buffers";
  await ctx.phase(
    "compute",
    `compute: ${points.length} packed batches (${points.filter((p) => p.heldOut).length} held out) x ` +
      `${grid.repeats} repeats on every device at once`,
  );
  // Extra rounds (at most 2) while the rounds disagree by more than 15%: the machine's load is changing.
  let rounds = grid.repeats;
  for (let r = 0; r < rounds; r++) {
    const request = {
      id: `pc${r}`,
      points,
      order: shuffled(indices, 17 + r),
      warmup: r ? 0 : grid.warmup,
      barrier: true,
    };
    const res = await onAll(pool, {
      cmd: { type: "profile_compute", request },
      type: "profile_compute_done",
      timeoutMs: opts.timeoutMs,
      what: `compute benchmark (round ${r + 1} of ${rounds})`,
    });
    for (const [rank, ev] of res) {
      for (const s of ev.result.samples) {
        samples.push({ rank, point: s.point, ms: s.ms, round: r });
        memSamples.push({ rank, tokens: s.tokens, peakBytes: s.peakBytes });
      }
      modelStates.set(rank, ev.result.modelStateBytes);
      memorySource = ev.result.memorySource;
    }
    say(`compute: round ${r + 1}/${rounds} done`);
    if (r === rounds - 1 && rounds >= 2 && rounds < grid.repeats + 2) {
      const f = roundFactors(points.length, samples);
      const spread = Math.max(...f) / Math.min(...f) - 1;
      if (spread > 0.15) {
        rounds++;
        say(`compute: rounds differ by ${(spread * 100).toFixed(0)}% (machine load changing): one more round`);
      }
    }
  }
  const rankInfo: RankInfo[] = pool.places.map((r) => {
    const dev = (r.deviceName ?? "").replace(/^\S+:\d+ /, "");
    const cpu = r.node.inventory?.cpuModel;
    return {
      rank: r.rank,
      node: r.node.config.index,
      kind: r.kind,
      type: r.kind === "cpu" && cpu ? `${dev} on ${cpu}` : dev,
    };
  });
  const compute = fitCompute(points, samples, rankInfo, { repeats: rounds, warmup: grid.warmup });
  warnings.push(...compute.warnings);
  for (const d of compute.section.perDevice) {
    const peers = compute.section.perDevice.filter((p) => p.type === d.type).map((p) => p.speed);
    const typical = median(peers);
    if (peers.length > 1 && d.speed < 0.7 * typical) {
      warnings.push(
        `${describeRank(pool.places[d.rank], d.rank)} runs at ${(d.speed / typical).toFixed(2)}x the speed of the ` +
          `other devices of its type: it is throttled, shared or faulty`,
      );
    }
  }
  for (const node of config.cluster.nodes) {
    const mine = compute.section.perDevice.filter((d) => d.node === node.index);
    const kind = pool.places.find((r) => r.node.config.index === node.index)!.kind;
    const measured = median(mine.map((d) => d.speed)) / (compute.deviceSpeed[kind] ?? 1);
    if (Math.abs(measured / node.speed - 1) > 0.15 && config.cluster.nodes.length > 1) {
      warnings.push(
        `node ${node.index} (${node.host}): devices measured ${measured.toFixed(2)}x the speed of others of their ` +
          `kind, but cluster.nodes[${node.index}].speed is ${node.speed}; set it to ${measured.toFixed(2)}`,
      );
    }
  }
  const memory = fitMemory(config, {
    samples: memSamples,
    modelStateBytes: modelStates,
    rankNode: pool.places.map((r) => r.node.config.index),
    nodeMemoryGb: (i) => ctx.cluster.nodes[i].inventory?.memoryGb,
    source: memorySource,
  });
  warnings.push(...memory.warnings);
  return { compute, memory: memory.section };
}

/** All-to-all at every degree, all aligned groups at once, split by placement. */
async function measureAllToAll(ctx: RunContext, degrees: number[]): Promise<AllToAllResult[]> {
  const { config, pool, opts, say } = ctx;
  const nodeOf = pool.places.map((r) => r.node.config.index);
  const spans = (g: number[]) => nodeOf[g[0]] !== nodeOf[g[g.length - 1]];
  const out: AllToAllResult[] = [];
  if (degrees.length) {
    await ctx.phase("network", `network: all-to-all at degree ${degrees.join(", ")} (all aligned groups at once)`);
  }
  for (const d of degrees) {
    const groups = alignedGroups(ctx.devices, d);
    const request = { id: `pa${d}`, groups, sizes: opts.grid.alltoallSizes, warmup: 2, iters: opts.grid.alltoallIters };
    const res = await onAll(pool, {
      cmd: { type: "profile_alltoall", request },
      type: "profile_alltoall_done",
      timeoutMs: opts.timeoutMs,
      what: `all-to-all benchmark at degree ${d}`,
    });
    const results = new Map<number, ProfileAllToAllResult>([...res].map(([r, ev]) => [r, ev.result]));
    const agg = aggregateAllToAll({
      degree: d,
      groups,
      spans,
      results,
      shape: config.model,
      tokens: config.model.maxSeq,
    });
    out.push(...agg);
    say(
      `network: degree ${d}: ` +
        agg.map((a) =>
          `${a.spans ? "across nodes" : "inside a node"} ${a.gbps.toFixed(3)} GB/s, ${
            a.latencyMs.toFixed(2)
          } ms per call`
        ).join("; "),
    );
  }
  return out;
}

/** Point-to-point latency and bandwidth between every pair of nodes (and two devices of one node), one at a time. */
async function measurePairs(ctx: RunContext): Promise<P2PSection | undefined> {
  const { config, pool, opts, warnings } = ctx;
  const nodes = config.cluster.nodes;
  if (nodes.length < 2) return undefined;
  const firstRank = nodes.map((n) => pool.places.find((r) => r.node.config.index === n.index)!.rank);
  const pairs: [number, number][] = [];
  for (let i = 0; i < nodes.length; i++) {
    if (nodes[i].devices > 1) pairs.push([i, i]);
    for (let j = i + 1; j < nodes.length; j++) pairs.push([i, j]);
  }
  await ctx.phase("p2p", `network: point-to-point between ${pairs.length} node pair(s)`);
  const samples: PairSample[] = [];
  const sizes = opts.grid.p2pSizes;
  for (const [i, j] of pairs) {
    const a = firstRank[i], b = i === j ? firstRank[i] + 1 : firstRank[j];
    // The PyTorch executors (torch-cpu, cuda) run collectives only on their SP-group pool's aligned power-of-two
    // blocks, and refuse any other pair: between nodes of several devices each, no aligned pair exists.
    const torch = [a, b].some((r) => isTorchKind(pool.places[r].kind));
    if (torch && !(a % 2 === 0 && b === a + 1)) {
      warnings.push(
        `point-to-point between ${ctx.cluster.nodes[i].name} and ${ctx.cluster.nodes[j].name} not measured: ` +
          `ranks ${a} and ${b} are no SP group of the PyTorch executors (the all-to-all rows above cover the link)`,
      );
      continue;
    }
    const request = { id: `pp${i}-${j}`, groups: [[a, b]], sizes, warmup: 2, iters: opts.grid.p2pIters };
    const res = await onAll(pool, {
      cmd: { type: "profile_alltoall", request },
      type: "profile_alltoall_done",
      timeoutMs: opts.timeoutMs,
      what: `point-to-point benchmark between ${ctx.cluster.nodes[i].name} and ${ctx.cluster.nodes[j].name}`,
    });
    // Each iteration takes as long as its slower side. Latency is the fastest small exchange (noise from a busy host
    // only adds, so the minimum is its best estimate); bandwidth uses the median large exchange.
    const perIter = (si: number) => {
      const x = res.get(a)!.result.samples[si].ms, y = res.get(b)!.result.samples[si].ms;
      return x.map((v, k) => Math.max(v, y[k]));
    };
    samples.push({
      a: i,
      b: j,
      smallMs: Math.min(...perIter(0)),
      largeMs: median(perIter(1)),
      largeBytes: Math.floor(sizes[1] / 8) * 4,
    });
  }
  const p2p = p2pMatrix(firstRank, nodes.map((n) => n.host), samples);
  for (const s of p2p.slow) {
    warnings.push(
      s.a === s.b
        ? s.why
        : `slow link between node ${s.a} (${p2p.hosts[s.a]}) and node ${s.b} (${p2p.hosts[s.b]}): ${s.why}`,
    );
  }
  return p2p;
}

/**
 * Per-degree validation with real steps, and the fixed costs and all-to-all terms fitted to it: the step's fixed
 * cost (outside the micro-batches), the degree-1 runs' compute scale and per-micro-batch cost (fixed_costs.ts), and
 * per degree v[d] and the per-group fixed cost (calibrate.ts). The fitted terms are kept only when they predict the
 * real group runs better than the microbenchmarks' constants. Updates `constants` in place.
 */
async function validateAndCalibrate(
  ctx: RunContext,
  constants: StoredConstants,
  degrees: number[],
  pconfig: Config,
): Promise<
  { setup: PlannerSetup; validation?: ValidationSection; calibration?: Calibration[]; measured?: MeasuredPoint[] }
> {
  const { config, opts, say, warnings } = ctx;
  const setup = plannerSetup(pconfig, storedToConstants(constants));
  const lengths = opts.grid.validateLengths.filter((l) => l <= config.model.maxSeq);
  if (lengths.length === 0) return { setup };
  await ctx.phase("validate", `validation: real steps, one sequence per group, at degree 1, ${degrees.join(", ")}`);
  const { points: measured, stepOverheadMs } = await validateDegrees(ctx.pool, setup.topology, {
    degrees: [1, ...degrees],
    lengths,
    repeats: opts.grid.validateRepeats,
    timeoutMs: opts.timeoutMs,
    onDegree: (d) => say(`validation: degree ${d}`),
  });
  const overhead = Math.max(0, median(stepOverheadMs));
  say(`validation: ${overhead.toFixed(1)} ms per step outside the micro-batches (gradient all-reduce, optimizer)`);
  // The step's fixed cost is a measurement of its own: plans predict whole steps with it.
  if (overhead > 0) constants.step_ms = sig(overhead);
  const setupOf = (c: StoredConstants) => plannerSetup(pconfig, storedToConstants(c));
  const withStep = setupOf(constants);
  if (opts.calibrate === false) {
    return {
      setup: withStep,
      validation: { ...predictValidation(measured, setup.topology, setup.cost), stepOverheadMs: overhead },
      measured,
    };
  }
  const fit = fitStepTerms(constants, measured, setupOf, config.model);
  const { degreeOne, calibration, before, after } = fit;
  say(
    `validation: degree-1 steps ran at ${degreeOne.computeScale}x the compute fit plus ` +
      `${degreeOne.microBatchMs} ms per micro-batch`,
  );
  if (Math.abs(degreeOne.computeScale - 1) > 0.2 && !fit.skipped) {
    warnings.push(
      `the validation's degree-1 steps ran at ${degreeOne.computeScale}x the compute grid's fit (the machine's ` +
        `load changed between the phases, or real steps run another path): compute constants scaled to the steps`,
    );
  }
  if (fit.skipped) {
    warnings.push(fit.skipped);
    say(`calibration skipped: ${fit.skipped}`);
  }
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  if (!fit.better) {
    say(
      `calibration: not applied (validation median error ${pct(before.medianRelErr)} with the microbenchmarks' ` +
        `constants, ${pct(after.medianRelErr)} fitted)`,
    );
    return { setup: withStep, validation: { ...before, stepOverheadMs: overhead, degreeOne }, calibration, measured };
  }
  for (const c of calibration) c.applied = true;
  Object.assign(constants, fit.fitted);
  if (!fit.fitted.micro_batch_ms) delete constants.micro_batch_ms;
  if (!fit.fitted.group_ms) delete constants.group_ms;
  say(
    `calibration: ${
      calibration.map((c) =>
        `degree ${c.degree}${c.spans ? " across" : ""}: v ${c.microbenchGbps.toPrecision(3)} -> ${c.calibratedGbps} ` +
        `GB/s, ${(c.groupMs ?? 0).toFixed(2)} ms per group`
      ).join("; ") || "no all-to-all degree"
    }; validation median error ${pct(before.medianRelErr)} -> ${pct(after.medianRelErr)}`,
  );
  return {
    setup: setupOf(constants),
    validation: {
      ...after,
      stepOverheadMs: overhead,
      degreeOne,
      uncalibrated: { medianRelErr: before.medianRelErr, maxRelErr: before.maxRelErr },
    },
    calibration,
    measured,
  };
}

/**
 * Plans and runs training steps with the fitted constants; their ledger entries, and how fast the devices ran
 * afterwards relative to the validation (one degree-1 validation step repeated: other work on a shared machine
 * shows up here, not as a model error).
 */
async function replaySteps(
  ctx: RunContext,
  setup: PlannerSetup,
  steps: number,
  reference?: MeasuredPoint,
): Promise<{ ledger: LedgerRecord[]; speedAfter?: number }> {
  const { config, say } = ctx;
  await ctx.phase("fidelity", `fidelity: planning and running ${steps} training step(s)`);
  const batches = await fidelityBatches(config, steps + 1);
  say(`fidelity: lengths from ${batches.source}; one warm-up step first (not recorded)`);
  const ledger: LedgerRecord[] = [];
  for (let s = -1; s < steps; s++) {
    const lengths = batches.lengths[s + 1];
    const plan = await planStep(lengths, setup.topology, setup.cost, { ...setup.options, strategy: "flexsp" });
    // The first step after the validation runs new shapes (several sequences per group) and is slower: warm up.
    const entry = await runPlannedStep(ctx.pool, s < 0 ? 3_000_000 : s, plan, lengths, ctx.opts.timeoutMs);
    if (s < 0) continue;
    ledger.push(entry);
    say(
      `fidelity: step ${s}: predicted ${entry.predictedMs.toFixed(0)} ms, measured ${entry.measuredMs.toFixed(0)} ms ` +
        `(${((entry.predictedMs / entry.measuredMs - 1) * 100).toFixed(1)}%)`,
    );
  }
  if (!reference) return { ledger };
  const { points: [again] } = await validateDegrees(ctx.pool, setup.topology, {
    degrees: [1],
    lengths: [reference.length],
    repeats: 1,
    timeoutMs: ctx.opts.timeoutMs,
    firstStep: 2_000_000,
  });
  const speedAfter = reference.measuredMs / again.measuredMs;
  say(
    `fidelity: the devices ran at ${speedAfter.toFixed(2)}x their validation speed after the replay` +
      (Math.abs(speedAfter - 1) > 0.15 ? " (the machine's load changed: errors above include that)" : ""),
  );
  if (Math.abs(speedAfter - 1) > 0.15) {
    ctx.warnings.push(
      `the devices ran at ${speedAfter.toFixed(2)}x their profiled speed after the replayed steps: the machine's ` +
        `load changed while profiling, and prediction errors of the replay include that`,
    );
  }
  return { ledger, speedAfter };
}

/** Predicted against measured for the replayed plans, as the profile stores it. */
function plannedSummary(ledger: LedgerRecord[], speedAfter?: number): NonNullable<ValidationSection["planned"]> {
  const c = checkLedger(ledger);
  const pick = (s: ErrorStats) => ({ medianAbs: sig(s.medianAbs), median: sig(s.median), maxAbs: sig(s.maxAbs) });
  return {
    steps: c.steps,
    step: pick(c.step),
    group: pick(c.group),
    ...(speedAfter === undefined ? {} : { speedAfter: sig(speedAfter) }),
  };
}

/** Measures the cluster of `config` and returns the profile document (not yet written). */
export async function runProfile(config: Config, opts: ProfileRunOptions): Promise<ProfileRunResult> {
  const t0 = performance.now();
  const clock = () => `[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;
  const say = (line: string) => opts.say(`${clock()} ${line}`);
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const runId = opts.runId ?? `profile-${stamp}-${crypto.randomUUID().slice(0, 4)}`;
  const runDir = opts.runDir ?? `${Deno.cwd()}/runs/${runId}`;
  const devices = config.cluster.nodes.reduce((s, n) => s + n.devices, 0);
  say(`profiling ${config.source}: ${config.cluster.nodes.length} node(s), ${devices} device(s)`);

  const cluster = ClusterSession.create(config);
  const removeHandlers = opts.signals ? cluster.installSignalHandlers((t) => opts.say(t)) : () => {};
  let pool: ExecutorPool | undefined;
  try {
    await cluster.start({
      runId,
      runDir,
      probeWebgpu: "as-needed",
      onProgress: (e: ProgressEvent) => {
        if (e.phase === "ready" || e.phase === "failed" || e.phase === "lost") {
          say(`${e.node.name}: ${e.phase}${e.detail ? ` (${e.detail.split("\n")[0]})` : ""}`);
        }
      },
    });
    if (cluster.failures.length) {
      throw new UserError(
        `cannot profile: ${cluster.failures.length} of ${cluster.nodes.length} node(s) did not start:\n` +
          cluster.failures.map((n) => `  ${n.error!.startsWith(n.name) ? n.error : `${n.name}: ${n.error}`}`)
            .join("\n") +
          `\nevery node of ${config.source} must be up to profile it: fix the node or remove it from the config`,
      );
    }
    say(`starting ${devices} executor(s)`);
    await opts.onPhase?.("executors", cluster);
    // Profiling only times steps: a zero learning rate keeps the parameters as initialised. The executors run under
    // the run's planner.zero_stage (every rank runs the same compute grid in lockstep, so FSDP's collectives match),
    // so a model that fits only under ZeRO-3 can be profiled, and its times include ZeRO's gathers.
    pool = ExecutorPool.create(cluster, {
      config,
      env: opts.env,
      startTimeoutMs: opts.timeoutMs,
      init: { optimizer: { lr: 0, weightDecay: 0, gradClip: 0, ...ADAMW_DEFAULTS } },
    });
    await pool.start().catch(async (e) => {
      throw await profileError(pool!, "executor start", e);
    });
    say(
      `executors ready: ${
        [...new Set(pool.places.map((r) => (r.deviceName ?? "").replace(/^\S+:\d+ /, "")))].join("; ")
      }`,
    );
    const ctx: RunContext = {
      config,
      opts,
      cluster,
      pool,
      devices,
      say,
      phase: async (name, text) => {
        say(text);
        await opts.onPhase?.(name, cluster);
      },
      warnings: [],
    };
    const sharing = coreSharingWarnings(pool.places.map((p) => ({
      rank: p.rank,
      node: p.node.name,
      nodeIndex: p.node.config.index,
      nodeCpus: p.node.inventory?.cpus ?? 1,
      cpus: p.cpus,
      pinned: p.pinned,
    })));
    for (const w of sharing) say(`warning: ${w}`);
    ctx.warnings.push(...sharing);

    const { compute, memory } = await measureCompute(ctx);
    const degrees: number[] = [];
    for (let d = 2; d <= devices; d *= 2) if (degreeProblem(config.model, d) === undefined) degrees.push(d);
    const alltoall = await measureAllToAll(ctx, degrees);
    const p2p = await measurePairs(ctx);

    const bandwidth = bandwidthTables(alltoall);
    if (Object.keys(bandwidth.intra).length + Object.keys(bandwidth.inter).length === 0) {
      bandwidth.intra["2"] = 1e6;
      ctx.warnings.push("no SP group of degree >= 2 fits this cluster: bandwidth_gbps holds a placeholder");
    }
    const ref = compute.reference;
    const constants: StoredConstants = {
      alpha1: sig(ref.alpha1),
      alpha2: sig(ref.alpha2),
      beta1: sig(ref.beta1),
      act_mb_per_token: sig(memory.actMbPerToken),
      bandwidth_gbps: bandwidth,
      device_speed: Object.fromEntries(Object.entries(compute.deviceSpeed).map(([k, v]) => [k, sig(v)])),
    };

    // Without a configured budget the planner cannot size groups; the profile's own plans use the measured one.
    const budgetGb = memory.budgetMb / 1024;
    const noBudget = config.planner.memoryBudgetGb === undefined &&
      config.cluster.nodes.every((n) => n.deviceMemoryGb === undefined);
    const pconfig: Config = noBudget && Number.isFinite(budgetGb)
      ? { ...config, planner: { ...config.planner, memoryBudgetGb: budgetGb } }
      : config;
    const { setup, validation, calibration, measured } = await validateAndCalibrate(ctx, constants, degrees, pconfig);
    const solo = measured?.filter((p) => p.degree === 1).sort((a, b) => b.length - a.length)[0];
    const replay = opts.fidelitySteps ? await replaySteps(ctx, setup, opts.fidelitySteps, solo) : { ledger: [] };

    const nodes = cluster.nodes.map((n) =>
      nodeFingerprintOf({
        index: n.config.index,
        host: n.config.host,
        inventory: n.inventory!,
        executorKind: n.executorKind!,
        devices: pool!.places.filter((r) => r.node === n).map((r) => r.deviceName ?? ""),
      })
    );
    const doc: ProfileDoc = {
      schema: PROFILE_SCHEMA_VERSION,
      tool: "flexsp profile",
      createdAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - t0),
      config: config.source,
      fingerprint: fingerprintOf(config, nodes, await sourceHash(EXECUTOR_SOURCE).catch(() => "unknown")),
      constants,
      constantsSha256: hashOf(constants),
      compute: compute.section,
      memory,
      network: {
        alltoall,
        p2p,
        units: "bandwidth_gbps: the cost model's v[d] (MB of its bf16 all-to-all volume per ms), derived from the " +
          "fitted per-call latency and bandwidth of the float32 executors at representativeTokens per group " +
          "(calibration: refitted to real group runs where that predicts them better); alltoall[].gbps: measured " +
          "per-device bandwidth of the executors' own data (2^20 bytes per ms)",
        representativeTokens: config.model.maxSeq,
        calibration,
      },
      validation: validation && replay.ledger.length
        ? { ...validation, planned: plannedSummary(replay.ledger, replay.speedAfter) }
        : validation,
      warnings: ctx.warnings,
    };
    return { doc, ledger: replay.ledger, speedAfterReplay: replay.speedAfter };
  } finally {
    pool?.stop();
    await cluster.shutdown("profile done");
    removeHandlers();
  }
}
