// One attempt of a run: launch the agents and executors, load the newest usable checkpoint, then the step loop
// until the last step, a Ctrl-C or a failure; always ends with every process of the attempt stopped.
//
// The step loop: the batch of step t+1 is drawn and its plan requested from the planner worker as soon as step t is
// dispatched, so the solve runs while step t executes (the first plan is solved while the cluster launches). Each
// step: wait for its plan (the wait is recorded; zero means the solve was hidden), send it to every executor,
// collect every rank's results, write the ledger record, print the progress line, and checkpoint every
// `training.checkpoint_interval` steps, at the last step and after a Ctrl-C.

import type { ExecutorStepPlan } from "../../core/protocol.ts";
import type { Config, CostConstants } from "../config/types.ts";
import { UserError, WriteFailure } from "../errors.ts";
import type { Batch, SamplerState } from "../data/sampler.ts";
import type { TrainingData } from "../data/training_data.ts";
import { plannerSetup } from "../planner/from_config.ts";
import type { Plan } from "../planner/plan_types.ts";
import { PlannerWorker } from "../planner/worker.ts";
import { nodeFingerprintOf } from "../config/profile_fingerprint.ts";
import type { NodeFingerprint } from "../config/profile_doc.ts";
import {
  type CheckpointFormat,
  checkpointName,
  type CheckpointStore,
  DCP_DIR,
  formatOf,
  type ManifestPart,
  type VerifiedCheckpoint,
} from "./checkpoint_store.ts";
import { ClusterSession, type ProgressEvent } from "../cluster/cluster_session.ts";
import { stageDataset } from "../cluster/dataset_staging.ts";
import {
  attentionLines,
  ExecutorPool,
  type Fault,
  FaultError,
  type RankPlace,
  RefusedError,
} from "../cluster/executor_pool.ts";
import { failureReport } from "./failure_report.ts";
import { waveReport } from "../cluster/failure_wave.ts";
import { Ledger, type LedgerRecord, truncateLedger } from "../ledger/ledger.ts";
import { learningRate } from "./lr_schedule.ts";
import type { Progress } from "./progress.ts";
import { replayPlan, stepRecord, toExecutorPlan } from "../ledger/step_record.ts";
import type { RunObserver } from "./observe/observer.ts";

/** Shared between the signal handler and the loop. */
export interface InterruptFlag {
  /** Set by the first Ctrl-C: finish the step, checkpoint, stop. */
  requested: boolean;
}

/** Everything one attempt needs. */
export interface AttemptContext {
  /** The cluster of this attempt (elastic recovery removes devices from the configured one). */
  config: Config;
  constants: CostConstants;
  data: TrainingData;
  runDir: string;
  runId: string;
  store: CheckpointStore;
  hashes: { fingerprintHash: string; datasetHash: string; profileHash: string };
  progress: Progress;
  log: (line: string) => void;
  interrupt: InterruptFlag;
  /** Environment of every executor. */
  executorEnv?: Record<string, string>;
  /** Verified checkpoints, best first (from `usableCheckpoints`). */
  checkpoints: VerifiedCheckpoint[];
  /** Checks the profile against the nodes' hardware (throws UserError on a mismatch); returns warnings. */
  checkHardware?: (nodes: NodeFingerprint[]) => string[];
  /** Watches the run (dashboard, metrics, TensorBoard, stragglers): told when executors are up and about each step. */
  observer?: RunObserver;
}

/** How an attempt ended. */
export type AttemptResult =
  | { kind: "done"; lastStep: number; records: LedgerRecord[]; launchMs: number }
  | { kind: "interrupted"; lastStep: number; records: LedgerRecord[] }
  | {
    kind: "failed";
    report: string;
    /** The first fault (absent for failures before any executor ran). */
    fault?: Fault;
    places?: RankPlace[];
    /** False for failures a relaunch would repeat (a plan every executor refused). */
    retryable: boolean;
    lastStep: number;
    records: LedgerRecord[];
  };

/** Checks every checkpoint of the store (newest first); returns the usable ones and why others were skipped. */
export async function usableCheckpoints(
  store: CheckpointStore,
): Promise<{ usable: VerifiedCheckpoint[]; skipped: { name: string; reason: string; complete: boolean }[] }> {
  const usable: VerifiedCheckpoint[] = [];
  const skipped: { name: string; reason: string; complete: boolean }[] = [];
  for (const name of await store.candidates()) {
    const v = await store.verify(name, (p) => p.transport === "local");
    if (v.ok) usable.push(v.checkpoint);
    else skipped.push({ name, reason: v.reason, complete: !v.reason.startsWith("no manifest") });
  }
  return { usable, skipped };
}

/** Floor of `training.step_timeout: auto`. */
export const AUTO_STEP_TIMEOUT_MIN_MS = 120_000;

/**
 * How long a step may take: `training.step_timeout` seconds, or for `auto` 50 times the predicted step time, at least
 * two minutes (the cost model's prediction can be several times off on an unprofiled machine; a hung rank is named
 * by the hang watch long before).
 */
export function stepTimeoutMs(setting: number | "auto", predictedMs: number): number {
  return setting === "auto" ? Math.max(AUTO_STEP_TIMEOUT_MIN_MS, 50 * predictedMs) : setting * 1000;
}

/** The part each rank loads: its own, else any copy on its host (all ranks hold the same state), else none. */
function partsFor(places: RankPlace[], parts: ManifestPart[]): { path: string; sha256: string }[] | string {
  const out: { path: string; sha256: string }[] = [];
  for (const p of places) {
    const host = p.node.config.host;
    const local = p.node.config.transport === "local";
    const part = parts.find((x) => x.rank === p.rank && x.host === host && (x.transport === "local") === local) ??
      parts.find((x) => x.host === host && (x.transport === "local") === local) ??
      (local ? parts.find((x) => x.transport === "local") : undefined);
    if (!part) return `${p.node.name} holds no part of it (the node was not in the run when it was saved)`;
    out.push({ path: part.path, sha256: part.sha256 });
  }
  return out;
}

/**
 * Where rank `p` writes or reads a "dcp" checkpoint `name`: in its directory `dir` here, and on SSH nodes too when
 * `training.checkpoint_dir` is set (`shared`: a filesystem every node mounts at that path, which DCP needs to load
 * across nodes), else in the node's run directory.
 */
function dcpDir(p: RankPlace, dir: string, name: string, shared: boolean): string {
  return p.node.config.transport === "local" || shared
    ? `${dir}/${DCP_DIR}`
    : `${p.node.runDir}/checkpoints/${name}/${DCP_DIR}`;
}

const FORMAT_WORDS: Record<CheckpointFormat, string> = {
  flat: "the TypeScript executors' flat format (executor: cpu or webgpu)",
  dcp: "the torch executors' sharded format (executor: torch-cpu or cuda)",
};

/**
 * Loads checkpoint `ck` into every rank: the flat format's per-rank parts (`partsFor`), or the sharded directory
 * with its file list (each rank checks the files, DCP reshards to this run's ranks). A string says why it cannot be.
 */
async function loadInto(pool: ExecutorPool, ck: VerifiedCheckpoint, shared: boolean): Promise<string | undefined> {
  const format = ck.manifest.format ?? "flat";
  const mine = formatOf(pool.places[0].kind);
  if (format !== mine) {
    return `it is in ${FORMAT_WORDS[format]} and this run's ${pool.places[0].kind} executors read ` +
      `${FORMAT_WORDS[mine]}; resume with the executor that wrote it, or start a new run`;
  }
  if (format === "flat") {
    const parts = partsFor(pool.places, ck.manifest.parts);
    if (typeof parts === "string") return parts;
    await pool.load(parts);
    return undefined;
  }
  const files = [...new Map(ck.manifest.parts.map((p) => [p.path.slice(p.path.lastIndexOf("/") + 1), p])).entries()]
    .map(([name, p]) => ({ name, bytes: p.bytes, sha256: p.sha256 }));
  await pool.request(
    (r) => ({ type: "load", path: dcpDir(pool.places[r], ck.dir, ck.name, shared), files }),
    "loaded",
    300_000,
    "load",
  );
  return undefined;
}

function launchLine(e: ProgressEvent): string | undefined {
  const what: Partial<Record<ProgressEvent["phase"], string>> = {
    connecting: `connecting to ${e.detail}`,
    uploading: `uploading ${e.detail}`,
    ready: `agent ready (${e.detail})`,
    lost: `LOST: ${e.detail}`,
  };
  const text = what[e.phase];
  return text ? `${e.node.name}: ${text}` : undefined;
}

interface Pending {
  step: number;
  batch: Batch;
  samplerAfter: SamplerState;
  plan: Promise<Plan>;
  source: "solved" | "replayed";
  resolvedAt?: number;
}

/** An attempt's early end: thrown by a phase, turned into the attempt's result by `runAttempt`. */
class Stop {
  constructor(readonly result: AttemptResult) {}
}

/**
 * The state of one attempt, phase by phase: bring-up (agents, dataset, executors), choosing and loading a
 * checkpoint, the step loop, and writing checkpoints (`checkpoint`).
 */
class Attempt {
  readonly t: Config["training"];
  readonly records: LedgerRecord[] = [];
  lastStep = 0;
  readonly worker: PlannerWorker;
  readonly cluster: ClusterSession;
  pool: ExecutorPool | undefined;
  ledger: Ledger | undefined;
  currentPlan: ReturnType<typeof toExecutorPlan> | undefined;
  readonly tLaunch = performance.now();
  readonly worldGuess: number;
  sampler!: ReturnType<TrainingData["sampler"]>;
  replays = new Map<number, LedgerRecord>();
  startStep: number;
  pending: Pending | undefined;
  /** training.checkpoint_async: the checkpoint being written while steps go on (settled before the next one). */
  saving: Promise<true | { report: string; fault: Fault } | { thrown: unknown }> | undefined;

  constructor(readonly ctx: AttemptContext) {
    this.t = ctx.config.training;
    this.worker = new PlannerWorker(plannerSetup(ctx.config, ctx.constants));
    this.cluster = ClusterSession.create(ctx.config);
    this.worldGuess = ctx.config.cluster.nodes.reduce((s, n) => s + n.devices, 0);
    this.startStep = (ctx.checkpoints[0]?.state.step ?? 0) + 1;
  }

  samplerAt(state?: SamplerState): ReturnType<TrainingData["sampler"]> {
    try {
      return this.ctx.data.sampler(state);
    } catch (e) {
      throw new UserError(
        `the checkpoint's data position does not fit this dataset (${(e as Error).message}); start a new run`,
      );
    }
  }

  /** Draws the batch of `step` and starts solving (or replaying) its plan. */
  request(step: number, world: number): Pending {
    const batch = this.sampler.next(this.t.globalBatch);
    const samplerAfter = this.sampler.state();
    const replayed = this.replays.get(step);
    const plan = replayed ? replayPlan(replayed, batch, world) : undefined;
    const p: Pending = {
      step,
      batch,
      samplerAfter,
      plan: plan
        ? Promise.resolve(plan)
        : this.worker.plan(batch.lengths, { strategy: this.ctx.config.planner.strategy }),
      source: plan ? "replayed" : "solved",
    };
    p.plan.then(() => p.resolvedAt = performance.now(), () => {});
    return p;
  }

  fail(report: string, fault?: Fault, retryable = true): Stop {
    return new Stop({
      kind: "failed",
      report,
      fault,
      places: this.pool?.places,
      retryable,
      lastStep: this.lastStep,
      records: this.records,
    });
  }

  /** After a FaultError in `phase`: waits for the pool to settle and reports the root cause. */
  async faulted(phase: string, plan?: ExecutorStepPlan): Promise<Stop> {
    const pool = this.pool!;
    await pool.settled();
    return this.fail(failureReport(phase, pool.faults, pool.places, plan), pool.cause!);
  }

  /** Agents, the dataset where nodes cannot see it, and one executor per device. */
  async bringUp(): Promise<ExecutorPool> {
    const { ctx, cluster } = this;
    const log = ctx.log;
    // The first plan is solved while the cluster launches (for the checkpoint most likely to load).
    this.sampler = this.samplerAt(ctx.checkpoints[0]?.state.sampler);
    this.pending = this.startStep <= this.t.steps ? this.request(this.startStep, this.worldGuess) : undefined;
    await cluster.start({
      runId: ctx.runId,
      runDir: ctx.runDir,
      onProgress: (e) => {
        const line = launchLine(e);
        if (line) ctx.log(line);
      },
      onProtocolError: (source, message) => log(`protocol error from ${source}: ${message}`),
    });
    if (cluster.failures.length) {
      const first = cluster.failures[0];
      throw this.fail(
        waveReport(
          "launch failed",
          cluster.failures.map((n) => ({ name: n.name, host: n.config.host, error: n.error! })),
          cluster.nodes.length,
        ),
        { kind: "node_lost", node: first, reason: first.error!, detail: first.error!, atMs: 0 },
      );
    }
    const paths = ctx.data.dataset ? await stageDataset(cluster, ctx.data.dataset, log) : undefined;
    const pool = this.pool = ExecutorPool.create(cluster, {
      config: ctx.config,
      datasetPath: paths ? (n) => paths.get(n) : undefined,
      datasetTokenBytes: ctx.data.dataset?.manifest.tokenBytes,
      env: ctx.executorEnv,
      log: (l) => ctx.log(l),
    });
    try {
      await pool.start();
    } catch (e) {
      if (e instanceof FaultError) throw await this.faulted("starting the executors");
      throw e;
    }
    if (ctx.checkHardware) {
      const fingerprints = cluster.ready.map((n) =>
        nodeFingerprintOf({
          index: n.config.index,
          host: n.config.host,
          inventory: n.inventory!,
          executorKind: n.executorKind!,
          devices: pool.places.filter((p) => p.node === n).map((p) => p.deviceName ?? p.kind),
        })
      );
      for (const w of ctx.checkHardware(fingerprints)) log(`warning: ${w}`);
    }
    const kinds = new Map<string, number>();
    for (const p of pool.places) {
      const k = (p.deviceName ?? p.kind).replace(/^\w+:\d+ /, "");
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    log(
      `${pool.worldSize} executors ready on ${cluster.ready.length} node(s) ` +
        `(${[...kinds].map(([k, n]) => `${n}x ${k}`).join(", ")}) in ` +
        `${((performance.now() - this.tLaunch) / 1000).toFixed(1)} s`,
    );
    for (const l of attentionLines(pool.places)) log(l);
    await ctx.observer?.attach(cluster, pool.places, ctx.log);
    return pool;
  }

  /** Loads the newest checkpoint the executors accept, cuts the ledger there and lines up the first step. */
  async loadCheckpoint(pool: ExecutorPool): Promise<void> {
    const { ctx } = this;
    const log = ctx.log;
    let loaded: VerifiedCheckpoint | undefined;
    for (const ck of ctx.checkpoints) {
      try {
        const why = await loadInto(pool, ck, ctx.config.training.checkpointDir !== undefined);
        if (why !== undefined) {
          log(`checkpoint ${ck.name} cannot be used: ${why}; trying the previous one`);
          continue;
        }
        loaded = ck;
        break;
      } catch (e) {
        if (e instanceof RefusedError) {
          log(`checkpoint ${ck.name} refused by rank ${e.rank}: ${e.detail}; trying the previous one`);
          continue;
        }
        if (e instanceof FaultError) throw await this.faulted(`loading checkpoint ${ck.name}`);
        throw e;
      }
    }
    if (ctx.checkpoints.length && !loaded) {
      throw new UserError(`no checkpoint of ${ctx.runDir} could be loaded (see above); nothing to resume from`);
    }
    if (loaded) {
      log(
        `resumed from checkpoint ${loaded.name} (step ${loaded.state.step}), continuing at step ${
          loaded.state.step + 1
        }`,
      );
    } else if (this.startStep > 1 || ctx.checkpoints.length) log("no checkpoint: starting at step 1");

    const actualStart = (loaded?.state.step ?? 0) + 1;
    const discarded = await truncateLedger(ctx.runDir, actualStart - 1);
    this.replays = new Map(discarded.map((r) => [r.step, r]));
    if (actualStart !== this.startStep || pool.worldSize !== this.worldGuess || discarded.length) {
      // The prefetched plan was for another start, another world size, or a step with a plan to replay.
      this.startStep = actualStart;
      this.sampler = this.samplerAt(loaded?.state.sampler);
      this.pending = this.startStep <= this.t.steps ? this.request(this.startStep, pool.worldSize) : undefined;
    }
    this.lastStep = this.startStep - 1;
  }

  /** Runs the steps (solving step t+1 while step t runs), writing the ledger and checkpoints. */
  async stepLoop(pool: ExecutorPool): Promise<AttemptResult> {
    const { ctx, t } = this;
    const ledger = this.ledger = await Ledger.open(ctx.runDir);
    const launchMs = performance.now() - this.tLaunch;
    let readyAt = performance.now();
    while (this.pending) {
      const cur: Pending = this.pending;
      const step = cur.step;
      const neededAt = performance.now();
      const plan = await cur.plan;
      const planWaitMs = performance.now() - neededAt;
      const solveHidden = cur.source === "replayed" || (cur.resolvedAt !== undefined && cur.resolvedAt <= readyAt);
      const lr = learningRate(t, step);
      const xplan = toExecutorPlan(step, plan, cur.batch, lr, pool.worldSize);
      this.currentPlan = xplan;
      const t0 = performance.now();
      // Solve the next plan while this step runs.
      this.pending = step < t.steps ? this.request(step + 1, pool.worldSize) : undefined;
      let result;
      ctx.observer?.stepStarted(xplan, plan);
      try {
        result = await pool.step(xplan, stepTimeoutMs(t.stepTimeoutS, plan.predictedMs));
      } catch (e) {
        // Let the other reports arrive (an agent reports an exit once the executor's pipes drain).
        if (e instanceof FaultError) throw await this.faulted(`step ${step}`, xplan);
        if (e instanceof RefusedError) {
          throw this.fail(`step ${step} was refused by rank ${e.rank}: ${e.detail}`, undefined, false);
        }
        throw e;
      }
      const wallMs = performance.now() - t0;
      readyAt = performance.now();
      const rec = stepRecord(step, plan, cur.batch, lr, result.done, {
        wallMs,
        dispatchMs: result.dispatchMs,
        solveMs: cur.source === "replayed" ? 0 : plan.solveMs,
        planWaitMs,
        solveHidden,
        planSource: cur.source,
      });
      await ctx.observer?.stepDone(rec, result.done);
      this.currentPlan = undefined;
      this.records.push(rec);
      this.lastStep = step;
      await ledger.append(rec);
      ctx.progress.step(rec);
      const interval = t.checkpointInterval;
      if ((interval > 0 && step % interval === 0) || step === t.steps || ctx.interrupt.requested) {
        await this.saved();
        let sent!: () => void;
        const isSent = new Promise<void>((resolve) => sent = resolve);
        // With checkpoint_async the next steps run while the executors write it; it counts once `saved` came. The
        // next step is sent after the save command, so the executors save this step's state.
        this.saving = checkpoint(ctx, pool, ledger, { step, sampler: cur.samplerAfter }, sent)
          .catch((thrown) => ({ thrown }));
        if (!t.checkpointAsync || step === t.steps || ctx.interrupt.requested) await this.saved();
        else await Promise.race([isSent, this.saving]);
      }
      if (ctx.interrupt.requested && step < t.steps) {
        return { kind: "interrupted", lastStep: this.lastStep, records: this.records };
      }
    }
    return { kind: "done", lastStep: this.lastStep, records: this.records, launchMs };
  }

  /** Waits for the checkpoint in flight, if any: its manifest is written, or the run fails as it would have. */
  async saved(): Promise<void> {
    const ok = await this.saving;
    this.saving = undefined;
    if (ok === undefined || ok === true) return;
    if ("thrown" in ok) throw ok.thrown;
    throw this.fail(ok.report, ok.fault);
  }

  /** Stops everything this attempt started. */
  async close(): Promise<void> {
    this.ctx.progress.clear();
    this.ctx.observer?.detach();
    this.pool?.stop();
    this.worker.close();
    this.ledger?.close();
    await this.cluster.shutdown(this.lastStep >= this.t.steps ? "training done" : "run stopped");
  }
}

/** Runs one attempt (see the file header). Never leaves a process running. */
export async function runAttempt(ctx: AttemptContext): Promise<AttemptResult> {
  const a = new Attempt(ctx);
  try {
    const pool = await a.bringUp();
    await a.loadCheckpoint(pool);
    return await a.stepLoop(pool);
  } catch (e) {
    if (e instanceof Stop) return e.result;
    if (e instanceof FaultError && a.pool) return (await a.faulted("the run", a.currentPlan)).result;
    throw e;
  } finally {
    await a.close();
  }
}

/** Saves a checkpoint of step `step`; true, or the failure. `sent`: called once every rank has the save command. */
async function checkpoint(
  ctx: AttemptContext,
  pool: ExecutorPool,
  ledger: Ledger,
  at: { step: number; sampler: SamplerState },
  sent?: () => void,
): Promise<true | { report: string; fault: Fault }> {
  const { step, sampler } = at;
  const t0 = performance.now();
  const name = checkpointName(step);
  const dir = await ctx.store.prepare(step);
  const format = formatOf(pool.places[0].kind);
  const pathOf = (p: RankPlace) =>
    format === "dcp"
      ? dcpDir(p, dir, name, ctx.config.training.checkpointDir !== undefined)
      : p.node.config.transport === "local"
      ? `${dir}/rank-${p.rank}.ckpt`
      : `${p.node.runDir}/checkpoints/${name}/rank-${p.rank}.ckpt`;
  let parts: { rank: number; path: string; sha256: string; bytes: number }[];
  try {
    if (format === "flat") {
      const saving = pool.save(pathOf);
      sent?.();
      parts = await saving;
    } else {
      // Every rank writes its files into the sharded checkpoint directory; each file is one part of the manifest.
      const saving = pool.request(
        (r) => ({ type: "save", path: pathOf(pool.places[r]) }),
        "saved",
        300_000,
        "save",
      );
      sent?.();
      const saved = await saving;
      parts = [...saved.values()].flatMap((x) =>
        (x.files ?? []).map((f) => ({ rank: x.rank, path: `${x.path}/${f.name}`, sha256: f.sha256, bytes: f.bytes }))
      );
    }
  } catch (e) {
    if (e instanceof FaultError) {
      await pool.settled();
      return { report: failureReport(`checkpoint ${name}`, pool.faults, pool.places), fault: pool.cause! };
    }
    // An executor that could not write its part (a full disk): the run ends naming the file and the OS error.
    if (e instanceof RefusedError) {
      throw new WriteFailure(pathOf(pool.places[e.rank]), e.detail.replace(/^.*failed: /, ""));
    }
    throw e;
  }
  await ledger.sync();
  const manifestParts: ManifestPart[] = parts.map((x) => {
    const p = pool.places[x.rank];
    return {
      rank: x.rank,
      node: p.node.config.index,
      host: p.node.config.host,
      transport: p.node.config.transport,
      path: x.path,
      sha256: x.sha256,
      bytes: x.bytes,
    };
  });
  // Ranks of one backend kind hold bit-identical state; a difference means a broken executor (flat format: each
  // rank's part is its whole state).
  const byKind = new Map<string, string>();
  for (const x of format === "flat" ? parts : []) {
    const kind = pool.places[x.rank].kind;
    const first = byKind.get(kind);
    if (first === undefined) byKind.set(kind, x.sha256);
    else if (first !== x.sha256) ctx.log(`warning: rank ${x.rank}'s state differs from rank 0's (${kind})`);
  }
  await ctx.store.commit(
    {
      version: 1,
      runId: ctx.runId,
      step,
      sampler,
      ...ctx.hashes,
      worldSize: pool.worldSize,
      ranks: pool.places.map((p) => ({
        rank: p.rank,
        node: p.node.config.index,
        host: p.node.config.host,
        device: p.device,
        kind: p.kind,
      })),
      savedAt: new Date().toISOString(),
    },
    manifestParts,
    format,
  );
  await ctx.store.prune(ctx.config.training.keepCheckpoints);
  const mb = parts.reduce((s, x) => s + x.bytes, 0) / 1024 ** 2;
  const what = format === "dcp" ? `${parts.length} files (sharded, ${pool.worldSize} ranks)` : `${parts.length} parts`;
  ctx.log(`checkpoint ${name}: ${what}, ${mb.toFixed(1)} MiB, ${(performance.now() - t0).toFixed(0)} ms`);
  return true;
}
