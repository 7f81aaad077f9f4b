// The one object a run calls to be watched: created at launch, told when a cluster attempt is up, when a step is
// dispatched and when it is done, and closed at the end. It adds the observed fields to each ledger record (consumed
// tokens, grad norm, TFLOP/s per device, MFU), writes TensorBoard scalars, keeps the state the dashboard and
// /metrics serve, follows heartbeats, reports stragglers and overdue steps in the log, and appends those reports to
// RUN_DIR/observe.jsonl (with each attempt's rank placement) so the run's files tell them afterwards.

import type { Config } from "../../config/types.ts";
import type { Plan } from "../../planner/plan_types.ts";
import type { ExecutorStepPlan } from "../../../core/protocol.ts";
import { writeAtomic } from "../../../core/atomic_write.ts";
import type { ClusterSession } from "../../cluster/cluster_session.ts";
import type { RankPlace } from "../../cluster/executor_pool.ts";
import { type LedgerRecord, readLedger } from "../../ledger/ledger.ts";
import type { StepDone } from "../../ledger/step_record.ts";
import { type Dashboard, serveDashboard } from "./dashboard_server.ts";
import { devicePeakTflops } from "./device_peaks.ts";
import { stepFlops, stepThroughput } from "./flops.ts";
import { HangWatch } from "./hang_watch.ts";
import { RunMetrics } from "./metrics.ts";
import { type ObserveConfig, observeConfig } from "./observe_config.ts";
import { readLatestCheckpoint } from "./run_files.ts";
import { type HangReport, type RankView, type RunInfoView, RunState, type StragglerReport } from "./run_state.ts";
import { StragglerDetector } from "./stragglers.ts";
import { TensorBoardWriter } from "./tensorboard_writer.ts";
import { writing } from "../../errors.ts";

/** What the observer of a run needs. */
/** The devices without a known peak, counted per model (`4x cpu (TypeScript reference, f32)`): every device counts. */
export function unknownPeaks(ranks: { peakTflops: number | null; deviceName: string }[]): string {
  const n = new Map<string, number>();
  for (const r of ranks) {
    if (r.peakTflops !== null) continue;
    const model = r.deviceName.replace(/^\S+:\d+\s+/, "");
    n.set(model, (n.get(model) ?? 0) + 1);
  }
  return [...n].map(([m, k]) => `${k}x ${m}`).join(", ");
}

export interface ObserverOptions {
  config: Config;
  runDir: string;
  runId: string;
  hashes: { fingerprintHash: string; datasetHash: string; profileHash: string };
  /** Where the cost constants came from (shown on the page). */
  profileSource: string;
  /** The checkpoint store's root (its `latest` names the last checkpoint). */
  checkpointRoot: string;
  resumeCommand: string;
  /** `--dashboard-port` (overrides observe.port). */
  dashboardPort?: number;
  log: (line: string) => void;
}

/** One line of RUN_DIR/observe.jsonl. */
export type ObserveEvent =
  | { type: "attach"; time: string; ranks: RankView[]; nodes: { host: string; name: string }[] }
  | ({ type: "straggler" } & StragglerReport)
  | ({ type: "hang" } & HangReport);

/** The TensorBoard scalars of a ledger record (tags as in the README). */
export function tensorboardScalars(r: LedgerRecord): [string, number][] {
  const out: [string, number][] = [
    ["train/loss", r.loss],
    ["train/lr", r.lr],
    ["train/tokens_per_s", r.tokensPerS],
    ["train/step_ms", r.wallMs],
    ["train/predicted_ms", r.predictedMs],
    ["plan/solve_ms", r.solveMs],
    ["plan/micro_batches", r.plan.microBatches.length],
  ];
  if (typeof r.gradNorm === "number") out.push(["train/grad_norm", r.gradNorm]);
  if (typeof r.mfu === "number") out.push(["train/mfu", r.mfu]);
  if (typeof r.tflopsPerDevice === "number") out.push(["train/tflops_per_device", r.tflopsPerDevice]);
  const busy = new Map<number, number>();
  for (const mb of r.plan.microBatches) {
    for (const g of mb.groups) if (g.sequences.length) busy.set(g.degree, (busy.get(g.degree) ?? 0) + g.measuredMs);
  }
  for (const [d, ms] of [...busy].sort((a, b) => a[0] - b[0])) out.push([`plan/busy_ms/sp${d}`, ms]);
  return out;
}

/** Watches a run (see the file header). */
export class RunObserver {
  readonly state: RunState;
  readonly metrics: RunMetrics;
  readonly settings: ObserveConfig;
  dashboard?: Dashboard;
  readonly #tb: TensorBoardWriter;
  #stragglers: StragglerDetector;
  readonly #hang: HangWatch;
  #offs: (() => void)[] = [];
  #log: (line: string) => void;
  #tick: ReturnType<typeof setInterval> | undefined;

  private constructor(readonly opts: ObserverOptions, state: RunState) {
    this.settings = observeConfig(opts.config);
    this.state = state;
    this.metrics = new RunMetrics(state);
    this.#log = opts.log;
    this.#tb = new TensorBoardWriter(`${opts.runDir}/tensorboard`);
    this.#stragglers = this.#newDetector();
    this.#hang = new HangWatch(
      { factor: this.settings.hangFactor, minMs: this.settings.hangMinMs },
      (r) => this.#onHang(r),
    );
  }

  #newDetector(): StragglerDetector {
    const s = this.settings;
    return new StragglerDetector({ factor: s.stragglerFactor, steps: s.stragglerSteps, minMs: s.stragglerMinMs });
  }

  /** Creates the observer: loads the run's earlier steps, starts the dashboard and prints its URL. */
  static async start(opts: ObserverOptions): Promise<RunObserver> {
    const c = opts.config;
    const info: RunInfoView = {
      runId: opts.runId,
      name: c.name,
      runDir: opts.runDir,
      totalSteps: c.training.steps,
      model: `${c.model.preset ?? "custom"} (${c.model.layers} layers, hidden ${c.model.hidden}, ${c.model.heads} ` +
        `heads, vocab ${c.model.vocab}, max_seq ${c.model.maxSeq})`,
      configText: await Deno.readTextFile(`${opts.runDir}/config.yaml`).catch(() => ""),
      ...opts.hashes,
      profileSource: opts.profileSource,
      resumeCommand: opts.resumeCommand,
    };
    const state = new RunState(info);
    const o = new RunObserver(opts, state);
    for (const r of await readLedger(`${opts.runDir}/ledger.jsonl`)) {
      state.addRecord(r, false);
      o.metrics.step(r);
    }
    const existing = await writing(o.#tb.dir, () => o.#tb.existingSteps());
    if (existing.length) o.#tb.lastStep = existing[existing.length - 1];
    state.lastCheckpoint = await readLatestCheckpoint(opts.checkpointRoot);
    state.live = true;
    const s = o.settings;
    if (s.dashboard) {
      o.dashboard = serveDashboard(state, o.metrics, { listen: s.listen, port: opts.dashboardPort ?? s.port });
      await writeAtomic(`${opts.runDir}/dashboard.url`, o.dashboard.url + "\n");
      opts.log(`dashboard ${o.dashboard.url} (metrics at /metrics; also in ${opts.runDir}/dashboard.url)`);
      if (!/^(127\.|::1$|localhost$)/.test(s.listen)) {
        opts.log(
          `warning: the dashboard listens on ${s.listen} (observe.listen): reachable from the network, token only`,
        );
      }
    }
    o.#tick = setInterval(async () => {
      const ck = await readLatestCheckpoint(opts.checkpointRoot).catch(() => null);
      if (ck && ck.step !== state.lastCheckpoint?.step) {
        state.lastCheckpoint = ck;
        state.changed("checkpoint");
      }
    }, 2000);
    Deno.unrefTimer(o.#tick);
    return o;
  }

  /** An attempt's executors are up: follow its nodes' heartbeats and its ranks' messages. */
  async attach(cluster: ClusterSession, places: RankPlace[], log?: (line: string) => void): Promise<void> {
    this.detach();
    if (log) this.#log = log;
    const st = this.state;
    st.ranks = places.map((p) => {
      const deviceName = p.deviceName ?? `${p.kind}:${p.device} ${p.kind}`;
      return {
        rank: p.rank,
        host: p.node.config.host,
        node: p.node.name,
        device: p.device,
        deviceName,
        peakTflops: devicePeakTflops(deviceName, this.settings.peakTflops),
      };
    });
    st.nodes = cluster.ready.map((n) => ({ host: n.config.host, name: n.name, up: true, lastHeartbeat: Date.now() }));
    this.#stragglers = this.#newDetector();
    st.activeStragglers.clear();
    for (const n of cluster.ready) {
      const view = st.nodes.find((v) => v.name === n.name)!;
      const s = n.session!;
      this.#offs.push(s.on((ev) => {
        const now = Date.now();
        view.lastHeartbeat = now;
        if (ev.type === "heartbeat") {
          for (const e of ev.executors) {
            if (e.alive) st.lastSeen.set(e.rank, now);
            this.#hang.stopped(e.rank, e.stopped === true);
          }
        } else if (ev.type === "from_executor") {
          st.lastSeen.set(ev.rank, now);
          const m = ev.msg;
          if (m.type === "step_progress") this.#hang.progress(m.rank, m.step, m.microBatch);
          else if (m.type === "step_done") this.#hang.done(m.rank, m.step);
        }
      }));
      s.lost.then((info) => {
        view.up = false;
        view.lostReason = info.reason;
        st.changed("nodes");
      });
    }
    const mfuKnown = st.ranks.every((r) => r.peakTflops !== null);
    if (!mfuKnown) {
      this.#log(`MFU: n/a (no peak known for ${unknownPeaks(st.ranks)}; set observe.peak_tflops to give one)`);
    }
    await this.#event({
      type: "attach",
      time: new Date().toISOString(),
      ranks: st.ranks,
      nodes: st.nodes.map((n) => ({ host: n.host, name: n.name })),
    });
    st.changed("nodes");
  }

  /** A step was dispatched to the executors. */
  stepStarted(xplan: ExecutorStepPlan, plan: Plan): void {
    this.#hang.start(xplan, plan.predictedMs, this.state.ranks);
  }

  /** A step finished: fills in the record's observed fields (before it goes to the ledger), then reports it. */
  async stepDone(rec: LedgerRecord, done: StepDone[]): Promise<void> {
    this.#hang.stop();
    const st = this.state;
    if (st.hang) {
      st.hang = null;
      st.changed("hang");
    }
    rec.consumedTokens = st.consumedBefore(rec.step) + rec.tokens;
    const norms = done.map((d) => d?.gradNorm).filter((g): g is number => typeof g === "number");
    rec.gradNorm = norms.length ? norms[0] : null;
    const lengths = rec.plan.microBatches.flatMap((mb) => mb.groups.flatMap((g) => g.lengths));
    const peaks = done.map((_, r) => st.ranks.find((x) => x.rank === r)?.peakTflops ?? null);
    const tp = stepThroughput(stepFlops(this.opts.config.model, lengths), rec.wallMs, peaks);
    rec.tflopsPerDevice = tp.tflopsPerDevice;
    rec.mfu = tp.mfu;
    const reports = this.#stragglers.observe(rec, st.ranks, done);
    for (const [r, v] of this.#stragglers.ratios) st.ratios.set(r, v);
    st.activeStragglers.clear();
    for (const r of this.#stragglers.active) st.activeStragglers.add(r);
    this.metrics.step(rec, done);
    await this.#tb.scalars(rec.step, tensorboardScalars(rec));
    for (const r of reports) {
      this.#log(r.text);
      st.stragglers.push(r);
      await this.#event({ type: "straggler", ...r });
    }
    st.addRecord(rec);
  }

  #onHang(r: HangReport): void {
    this.#log(`warning: ${r.text}`);
    this.state.hang = r;
    this.state.hangs.push(r);
    this.state.changed("hang");
    this.#event({ type: "hang", ...r }).catch(() => {});
  }

  async #event(e: ObserveEvent): Promise<void> {
    const path = `${this.opts.runDir}/observe.jsonl`;
    await writing(path, async () => {
      const f = await Deno.open(path, { append: true, create: true });
      try {
        const b = new TextEncoder().encode(JSON.stringify(e) + "\n");
        let o = 0;
        while (o < b.length) o += await f.write(b.subarray(o));
      } finally {
        f.close();
      }
    });
  }

  /** The attempt ended: stop following its cluster. */
  detach(): void {
    this.#hang.stop();
    for (const off of this.#offs) off();
    this.#offs = [];
  }

  /** The run ended: closes the dashboard and the event file. */
  async close(): Promise<void> {
    this.detach();
    clearInterval(this.#tick);
    this.#tb.close();
    this.state.live = false;
    this.state.lastCheckpoint = await readLatestCheckpoint(this.opts.checkpointRoot).catch(() => null);
    this.state.changed("end");
    await this.dashboard?.close();
  }
}
