// A training run from start (or `--resume`) to end: the run directory and its identity checks, the data, and the
// attempts. A failed attempt is handled per `training.on_failure`: `stop` exits with the resume command; `restart`
// relaunches the same cluster and resumes from the last checkpoint; `elastic` relaunches without the lost node (or
// the crashed device) and re-plans every step for the devices left. Ctrl-C finishes the step, checkpoints and stops.

import { loadClusterConfig } from "../cluster/slurm_allocation.ts";
import type { Config, NodeConfig } from "../config/types.ts";
import { UserError, WriteFailure, writing } from "../errors.ts";
import { openTrainingData } from "../data/training_data.ts";
import { checkProfileHardware, resolveProfile } from "../config/profile_file.ts";
import { CheckpointStore } from "./checkpoint_store.ts";
import type { Fault } from "../cluster/executor_pool.ts";
import { configFingerprint, diffFingerprints, profileHash } from "./fingerprint.ts";
import { canonicalJson } from "../../core/canonical_json.ts";
import { sha256Hex } from "../../core/hash.ts";
import type { LedgerRecord } from "../ledger/ledger.ts";
import { Progress } from "./progress.ts";
import { findLatestRun, newRunDirName, readRunInfo, type RunInfo, RUNS_DIR, writeRunInfo } from "./run_dir.ts";
import { type InterruptFlag, runAttempt, usableCheckpoints } from "./train_attempt.ts";
import { RunObserver } from "./observe/observer.ts";
import { autoResume } from "./slurm_resume.ts";
import { verifyModelWeights } from "../cluster/model_weights.ts";
import { acquireRunLock } from "./run_lock.ts";
import { interruptListeners } from "./interrupts.ts";

/** Options of `launchRun` (the flags of `deno task launch`). */
export interface LaunchOptions {
  configPath: string;
  /** `--set PATH=VALUE` overrides. */
  sets?: string[];
  /** Run directory (default `runs/<name>-<timestamp>`, or with `resume: true` the newest run of the config). */
  runDir?: string;
  resume?: boolean;
  /** Resume even if the config, dataset or profile changed; use a profile measured on other hardware. */
  force?: boolean;
  /** Environment of every executor (tests: data-plane timeouts). */
  executorEnv?: Record<string, string>;
  /** Handle SIGINT/SIGTERM (default true). */
  signals?: boolean;
  /** Log lines (default stderr). */
  log?: (line: string) => void;
  /** Per-step progress lines (default stdout). */
  print?: (line: string) => void;
  /** Port of the dashboard (`--dashboard-port`; default observe.port, 0: a free one). */
  dashboardPort?: number;
}

/** How a run ended. */
export interface LaunchResult {
  /** 0 done, 2 failed (policy stop or restarts used up), 130 interrupted. */
  code: number;
  runDir: string;
  lastStep: number;
  records: LedgerRecord[];
  /** The command that continues the run (when it did not finish). */
  resumeCommand?: string;
  restarts: number;
}

function shellArg(s: string): string {
  return /^[A-Za-z0-9_./=:,@+-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The config without the failed node (or, for a crashed executor, with one device fewer there). */
export function shrinkCluster(config: Config, fault: Fault): Config | undefined {
  const idx = fault.node.config.index;
  const nodes: NodeConfig[] = [];
  for (const n of config.cluster.nodes) {
    if (n.index !== idx) nodes.push({ ...n });
    else if (fault.rank !== undefined && fault.kind !== "node_lost" && n.devices > 1) {
      nodes.push({ ...n, devices: n.devices - 1 });
    }
  }
  if (nodes.length === 0) return undefined;
  nodes.forEach((n, i) => n.index = i);
  return { ...config, cluster: { ...config.cluster, nodes } };
}

/** Runs training (see the file header). User mistakes throw UserError; failures return a non-zero code. */
export async function launchRun(opts: LaunchOptions): Promise<LaunchResult> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const config = await loadClusterConfig(opts.configPath, opts.sets ?? []);
  // A truncated or corrupt model.from is refused here, before the run directory exists or anything starts.
  if (config.model.from !== undefined) await verifyModelWeights(config.model.from, config.model);
  const resolved = await resolveProfile(config, { force: opts.force, warn: (l) => log(`warning: ${l}`) });
  const data = await openTrainingData(config, log);
  const fingerprint = configFingerprint(config);
  const hashes = {
    fingerprintHash: sha256Hex(canonicalJson(fingerprint)),
    datasetHash: data.hash,
    profileHash: profileHash(resolved.constants),
  };

  // Under Slurm the run directory defaults to one per job id (a requeued job keeps its id); `training.resume: auto`
  // resumes a run directory that already holds this run without --resume (see orchestrator/run/slurm_resume.ts).
  opts = { ...opts, ...await autoResume(config, opts, log) };

  let runDir = await locateRunDir(config.name, opts);
  // One orchestrator per run directory: a second launch or resume is refused while this one runs.
  using lock = acquireRunLock(runDir, log);
  if (opts.resume) await checkResumeMatches(runDir, fingerprint, hashes, opts, log);
  else await writeNewRun(runDir, config.name, fingerprint, hashes, opts);
  runDir = await Deno.realPath(runDir);
  const runId = runDir.split("/").pop()!;
  const store = new CheckpointStore(
    config.training.checkpointDir ? `${config.training.checkpointDir}/${runId}` : `${runDir}/checkpoints`,
    runDir,
  );
  const resumeCommand = "deno task launch " + [
    opts.configPath,
    ...(opts.sets ?? []).flatMap((s) => ["--set", s]),
    "--resume",
    runDir,
  ].map(shellArg).join(" ");
  if (opts.resume) {
    // A finished run: nothing to start (no cluster, no dashboard).
    const done = (await usableCheckpoints(store)).usable[0]?.state.step;
    if (done !== undefined && done >= config.training.steps) {
      summary(log, [], 0, runDir, done);
      return { code: 0, runDir, lastStep: done, records: [], restarts: 0 };
    }
  }

  log(
    `run ${runId}: ${config.cluster.nodes.length} node(s), model ${config.model.preset ?? "custom"}, ` +
      `${config.training.steps} steps of ${config.training.globalBatch} sequences, planner ${config.planner.strategy}`,
  );
  log(`data: ${data.description}`);
  for (const n of data.notes) log(`data: ${n}`);
  const profileSource = resolved.source === "profile" ? `profile ${resolved.path}` : "profile.constants of the config";
  log(`cost model: ${profileSource}`);
  log(`run directory ${runDir} (ledger.jsonl, checkpoints/, logs/, tensorboard/)`);
  const run: OpenRun = { config, opts, log, resolved, data, runDir, runId, store, hashes, resumeCommand };
  let observer: RunObserver;
  try {
    observer = await RunObserver.start({
      config,
      runDir,
      runId,
      hashes,
      profileSource,
      checkpointRoot: store.root,
      resumeCommand,
      dashboardPort: opts.dashboardPort,
      log,
    });
  } catch (e) {
    if (e instanceof WriteFailure) return await writeStopped(run, e, [], 0);
    throw e;
  }

  const interrupt: InterruptFlag = { requested: false };
  const removeSignals = opts.signals !== false ? installInterrupts(interrupt, log, resumeCommand, lock) : () => {};
  try {
    return await attemptLoop(run, observer, interrupt);
  } finally {
    removeSignals();
    await observer.close();
  }
}

/** The run directory: with --resume the given or newest run of the config (it must hold one), else a new one. */
async function locateRunDir(name: string, opts: LaunchOptions): Promise<string> {
  if (opts.resume) {
    const found = opts.runDir ?? await findLatestRun(name);
    if (!found) {
      throw new UserError(
        `no run of config "${name}" under ${RUNS_DIR}/ to resume; start one without --resume, or pass the ` +
          `run directory: --resume RUN_DIR`,
      );
    }
    if (!(await readRunInfo(found))) {
      throw new UserError(`${found}: not a run directory (no run.json); pass the directory of a run`);
    }
    return found;
  }
  const dir = opts.runDir ?? `${RUNS_DIR}/${newRunDirName(name)}`;
  await writing(dir, () => Deno.mkdir(dir, { recursive: true }));
  return dir;
}

/** The identity hashes of a run: its config fingerprint, dataset content and cost constants. */
type RunHashes = Pick<RunInfo, "fingerprintHash" | "datasetHash" | "profileHash">;

/**
 * Refuses to resume a run started with another config or dataset (or, with unchanged config and data, other cost
 * constants only warn); --force turns the refusal into a warning.
 */
async function checkResumeMatches(
  runDir: string,
  fingerprint: RunInfo["fingerprint"],
  hashes: RunHashes,
  opts: LaunchOptions,
  log: (line: string) => void,
): Promise<void> {
  const info = (await readRunInfo(runDir))!;
  const problems: string[] = [];
  if (info.fingerprintHash !== hashes.fingerprintHash) {
    problems.push(...diffFingerprints(info.fingerprint, fingerprint).map((d) => `config ${d}`));
    if (problems.length === 0) problems.push("config changed");
  }
  if (info.datasetHash !== hashes.datasetHash) {
    problems.push(`dataset: content hash ${info.datasetHash.slice(0, 16)} -> ${hashes.datasetHash.slice(0, 16)}`);
  }
  // New cost constants (a re-profile) change the plans from here on, not the model or the data: a warning.
  if (info.profileHash !== hashes.profileHash && problems.length === 0) {
    log(
      "warning: the cost constants changed since this run started (a new profile); the steps re-executed " +
        "replay their logged plans, later steps are planned with the new constants",
    );
  } else if (info.profileHash !== hashes.profileHash) problems.push("profile: the cost constants changed");
  if (problems.length === 0) return;
  const list = problems.slice(0, 12).map((p) => `  ${p}`).join("\n");
  if (!opts.force) {
    throw new UserError(
      `cannot resume ${runDir}: it was started with another config, dataset or profile:\n${list}\n` +
        `Resume with the same settings, or pass --force to continue anyway (the run will no longer match an ` +
        `uninterrupted one), or start a new run without --resume.`,
    );
  }
  log(`warning: resuming with changes (--force):\n${list}`);
}

/** Writes run.json and a copy of the config into a new run directory (refused if it already holds a run). */
async function writeNewRun(
  runDir: string,
  name: string,
  fingerprint: RunInfo["fingerprint"],
  hashes: RunHashes,
  opts: LaunchOptions,
): Promise<void> {
  if (await readRunInfo(runDir)) {
    throw new UserError(
      `${runDir} already holds a run; continue it with --resume ${runDir}, or pick another --run-dir`,
    );
  }
  const info: RunInfo = {
    version: 1,
    runId: "",
    name,
    config: await Deno.realPath(opts.configPath),
    createdAt: new Date().toISOString(),
    fingerprint,
    ...hashes,
    argv: [opts.configPath, ...(opts.sets ?? []).flatMap((s) => ["--set", s])],
  };
  info.runId = runDir.replace(/\/+$/, "").split("/").pop()!;
  await writing(`${runDir}/run.json`, () => writeRunInfo(runDir, info));
  await writing(`${runDir}/config.yaml`, () => Deno.copyFile(opts.configPath, `${runDir}/config.yaml`));
}

/**
 * Installs the SIGINT/SIGTERM handling: the first signal finishes the step and checkpoints, a second one exits at
 * once (releasing the run lock). Returns the function that removes it.
 */
function installInterrupts(
  interrupt: InterruptFlag,
  log: (line: string) => void,
  resumeCommand: string,
  lock: { release(): void },
): () => void {
  const listeners = interruptListeners(interrupt, log, () => {
    log(`stopping at once; resume from the last checkpoint with:\n  ${resumeCommand}`);
    lock.release();
    Deno.exit(130);
  });
  for (const [s, l] of listeners) Deno.addSignalListener(s, l);
  return () => listeners.forEach(([s, l]) => Deno.removeSignalListener(s, l));
}

/** An opened run directory and what every attempt in it shares. */
interface OpenRun {
  config: Config;
  opts: LaunchOptions;
  log: (line: string) => void;
  resolved: Awaited<ReturnType<typeof resolveProfile>>;
  data: Awaited<ReturnType<typeof openTrainingData>>;
  runDir: string;
  runId: string;
  store: CheckpointStore;
  hashes: RunHashes;
  resumeCommand: string;
}

/** "the last checkpoint is step N" or "there is no checkpoint yet", and that step. */
async function lastCheckpoint(store: CheckpointStore): Promise<{ last: number | undefined; kept: string }> {
  const last = (await usableCheckpoints(store)).usable[0]?.state.step;
  return { last, kept: last !== undefined ? `the last checkpoint is step ${last}` : "there is no checkpoint yet" };
}

/** A full disk or a vanished directory: one message naming the path and the OS error, and how to go on. */
async function writeStopped(
  run: OpenRun,
  e: WriteFailure,
  records: LedgerRecord[],
  restarts: number,
): Promise<LaunchResult> {
  const { last, kept } = await lastCheckpoint(run.store);
  run.log(`error: ${e.message}`);
  run.log(`run stopped (make room or fix that path, then resume); ${kept}. Resume with:\n  ${run.resumeCommand}`);
  return { code: 2, runDir: run.runDir, lastStep: last ?? 0, records, resumeCommand: run.resumeCommand, restarts };
}

/** Runs attempts until the run is done, interrupted or stopped by `training.on_failure` (see the file header). */
async function attemptLoop(run: OpenRun, observer: RunObserver, interrupt: InterruptFlag): Promise<LaunchResult> {
  const { config, opts, log, store, runDir, resumeCommand } = run;
  let active = config;
  let restarts = 0;
  const records: LedgerRecord[] = [];
  const tRun = performance.now();
  for (;;) {
    const { usable, skipped } = await usableCheckpoints(store);
    for (const s of skipped) log(`checkpoint ${s.name}: ${s.reason}; not used`);
    if (usable.length === 0 && skipped.some((s) => s.complete)) {
      // Starting over would silently discard the run: refuse.
      throw new UserError(
        `no usable checkpoint in ${store.root} (every complete one is damaged, see above); start a new run ` +
          `without --resume, or restore a checkpoint`,
      );
    }
    const progress = new Progress(
      (usable[0]?.state.step ?? 0) + 1,
      config.training.steps,
      opts.print,
      opts.print || opts.log ? false : undefined,
    );
    let r;
    try {
      r = await runAttempt({
        config: active,
        constants: run.resolved.constants,
        data: run.data,
        runDir,
        runId: run.runId,
        store,
        hashes: run.hashes,
        progress,
        log: (l) => progress.log(l, log),
        interrupt,
        executorEnv: opts.executorEnv,
        checkpoints: usable,
        checkHardware: (nodes) => checkProfileHardware(run.resolved, nodes, { force: opts.force }),
        observer,
      });
    } catch (e) {
      if (!(e instanceof WriteFailure)) throw e;
      progress.finish();
      return await writeStopped(run, e, records, restarts);
    }
    progress.finish();
    records.push(...r.records);
    if (r.kind === "done") {
      summary(log, records, performance.now() - tRun, runDir, r.lastStep);
      return { code: 0, runDir, lastStep: r.lastStep, records, restarts };
    }
    const { kept } = await lastCheckpoint(store);
    const stopped = { runDir, lastStep: r.lastStep, records, resumeCommand, restarts };
    if (r.kind === "interrupted") {
      log(`stopped after step ${r.lastStep}; ${kept}. Resume with:\n  ${resumeCommand}`);
      return { code: 130, ...stopped };
    }
    log(`error: ${r.report}`);
    const why = whyNoRestart(config, r.retryable, restarts, interrupt);
    if (why) {
      log(`run stopped (${why}); ${kept}. Resume with:\n  ${resumeCommand}`);
      return { code: 2, ...stopped };
    }
    restarts++;
    if (config.training.onFailure === "elastic" && r.fault) {
      const shrunk = shrinkCluster(active, r.fault);
      if (!shrunk) {
        log(
          `run stopped: no device left after removing ${r.fault.node.name}; ${kept}. Resume with:\n  ${resumeCommand}`,
        );
        return { code: 2, ...stopped, restarts };
      }
      active = shrunk;
      const devices = active.cluster.nodes.reduce((s, n) => s + n.devices, 0);
      log(
        `elastic restart ${restarts}/${config.training.maxRestarts}: without ${describeLoss(r.fault)}, on ` +
          `${devices} device(s) of ${active.cluster.nodes.length} node(s); ${kept}`,
      );
    } else {
      log(`restart ${restarts}/${config.training.maxRestarts}: relaunching, ${kept}`);
    }
  }
}

/** Why a failed attempt is not relaunched, or undefined when `training.on_failure` relaunches it. */
function whyNoRestart(
  config: Config,
  retryable: boolean,
  restarts: number,
  interrupt: InterruptFlag,
): string | undefined {
  const policy = config.training.onFailure;
  if (!retryable) return "this failure would repeat on a relaunch";
  if (policy === "stop") return "training.on_failure: stop";
  if (interrupt.requested) return "interrupted";
  if (restarts >= config.training.maxRestarts) {
    return `${restarts} restart(s) used (training.max_restarts: ${config.training.maxRestarts})`;
  }
  return undefined;
}

function describeLoss(f: Fault): string {
  return f.kind === "node_lost" || f.rank === undefined
    ? f.node.name
    : `the device of rank ${f.rank} on ${f.node.name}`;
}

function summary(log: (l: string) => void, records: LedgerRecord[], ms: number, runDir: string, last: number): void {
  if (!records.length) {
    log(`nothing to do: the run already finished at step ${last} (${runDir})`);
    return;
  }
  const mean = (f: (r: LedgerRecord) => number) => records.reduce((s, r) => s + f(r), 0) / records.length;
  const tokens = records.reduce((s, r) => s + r.tokens, 0);
  const wall = records.reduce((s, r) => s + r.wallMs, 0);
  const hidden = records.filter((r) => r.solveHidden).length;
  log(
    `done: steps ${records[0].step}-${last} in ${(ms / 1000).toFixed(1)} s; loss ${records[0].loss.toFixed(4)} -> ` +
      `${records[records.length - 1].loss.toFixed(4)}; ${Math.round(tokens / (wall / 1000)).toLocaleString("en-US")} ` +
      `tok/s while stepping; orchestration overhead ${mean((r) => r.overheadMs).toFixed(2)} ms/step (dispatch ` +
      `${mean((r) => r.dispatchMs).toFixed(2)} ms); plan solve hidden in ${hidden} of ${records.length} steps`,
  );
  log(`ledger ${runDir}/ledger.jsonl`);
}
