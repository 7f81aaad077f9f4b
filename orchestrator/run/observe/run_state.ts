// What is known about a run while it trains (or from its files afterwards): its identity, every step's scalars,
// the latest steps' plans, the nodes and ranks with their last heartbeat, straggler and hang reports, the last
// checkpoint. The live observer and `deno task dashboard` both fill one of these; the page, /metrics and
// `deno task status` read its snapshot.

import type { LedgerGroup, LedgerRecord } from "../../ledger/ledger.ts";

/** Where a rank runs, as the dashboard shows it. */
export interface RankView {
  rank: number;
  host: string;
  node: string;
  device: number;
  /** As the executor named it (`cpu:2 cpu`, `cuda:0 NVIDIA H100 80GB HBM3`). */
  deviceName: string;
  /** Peak TFLOP/s used for MFU (null: unknown, MFU n/a). */
  peakTflops: number | null;
}

/** A node and its heartbeat. */
export interface NodeView {
  host: string;
  name: string;
  /** Null when unknown (a run read from its files). */
  up: boolean | null;
  /** Epoch ms of the last heartbeat (or message) from its agent. */
  lastHeartbeat?: number;
  lostReason?: string;
}

/** The scalars of one step (the ledger's fields the charts use). */
export interface StepPoint {
  step: number;
  time: string;
  loss: number;
  lr: number;
  gradNorm: number | null;
  tokens: number;
  consumedTokens: number;
  tokensPerS: number;
  wallMs: number;
  measuredMs: number;
  predictedMs: number;
  tflopsPerDevice: number | null;
  mfu: number | null;
  solveMs: number;
  microBatches: number;
  /** Sum of the measured group times per SP degree (ms). */
  busyMsByDegree: Record<string, number>;
}

/** The plan of a step as the timeline draws it. */
export interface PlanView {
  step: number;
  predictedMs: number;
  measuredMs: number;
  microBatches: {
    predictedMs: number;
    measuredMs: number;
    groups: Pick<LedgerGroup, "degree" | "ranks" | "predictedMs" | "measuredMs" | "lengths">[];
  }[];
}

/** A rank that stayed slower than predicted for several steps. */
export interface StragglerReport {
  time: string;
  step: number;
  rank: number;
  host: string;
  device: number;
  deviceName: string;
  /** Consecutive steps over the factor. */
  steps: number;
  /** Measured over predicted group time (latest step). */
  ratio: number;
  measuredMs: number;
  predictedMs: number;
  /** Ranks with the same device type, for comparison (other hosts first). */
  peers: { rank: number; host: string; ratio: number | null }[];
  text: string;
}

/** A step that ran far past its prediction, with the ranks it waited for. */
export interface HangReport {
  time: string;
  step: number;
  runningMs: number;
  predictedMs: number;
  unfinished: { rank: number; host: string; device: number; doneMicroBatches: number; busyMicroBatches: number }[];
  text: string;
}

/** Identity of the run (page header, status). */
export interface RunInfoView {
  runId: string;
  name: string;
  runDir: string;
  totalSteps: number;
  model: string;
  configText: string;
  fingerprintHash: string;
  datasetHash: string;
  profileHash: string;
  profileSource: string;
  resumeCommand: string;
}

/** Everything the page shows, as JSON. */
export interface RunSnapshot {
  now: number;
  live: boolean;
  info: RunInfoView;
  steps: StepPoint[];
  plans: PlanView[];
  nodes: NodeView[];
  ranks: (RankView & { lastSeenAgeS: number | null; ratio: number | null; straggler: boolean })[];
  stragglers: StragglerReport[];
  hang: HangReport | null;
  hangs: HangReport[];
  lastCheckpoint: { step: number; name: string } | null;
}

/** The scalars of a ledger record (consumed tokens: as recorded, else `consumedBefore` + its tokens). */
export function stepPoint(r: LedgerRecord, consumedBefore: number): StepPoint {
  const busy: Record<string, number> = {};
  for (const mb of r.plan.microBatches) {
    for (const g of mb.groups) {
      if (g.sequences.length) busy[g.degree] = (busy[g.degree] ?? 0) + g.measuredMs;
    }
  }
  return {
    step: r.step,
    time: r.time,
    loss: r.loss,
    lr: r.lr,
    gradNorm: r.gradNorm ?? null,
    tokens: r.tokens,
    consumedTokens: r.consumedTokens ?? consumedBefore + r.tokens,
    tokensPerS: r.tokensPerS,
    wallMs: r.wallMs,
    measuredMs: r.measuredMs,
    predictedMs: r.predictedMs,
    tflopsPerDevice: r.tflopsPerDevice ?? null,
    mfu: r.mfu ?? null,
    solveMs: r.solveMs,
    microBatches: r.plan.microBatches.length,
    busyMsByDegree: busy,
  };
}

function planView(r: LedgerRecord): PlanView {
  return {
    step: r.step,
    predictedMs: r.predictedMs,
    measuredMs: r.microBatchMs,
    microBatches: r.plan.microBatches.map((mb) => ({
      predictedMs: mb.predictedMs,
      measuredMs: mb.measuredMs,
      groups: mb.groups.filter((g) => g.sequences.length).map((g) => ({
        degree: g.degree,
        ranks: g.ranks,
        predictedMs: g.predictedMs,
        measuredMs: g.measuredMs,
        lengths: g.lengths,
      })),
    })),
  };
}

/** Plans kept for the timeline. */
const PLANS_KEPT = 4;
/** Most step points sent in a snapshot (older ones are thinned out). */
const MAX_POINTS = 2000;

/** The state of a run (see the file header). */
export class RunState {
  info: RunInfoView;
  live = false;
  readonly steps: StepPoint[] = [];
  readonly plans: PlanView[] = [];
  nodes: NodeView[] = [];
  ranks: RankView[] = [];
  readonly lastSeen = new Map<number, number>();
  readonly ratios = new Map<number, number>();
  stragglers: StragglerReport[] = [];
  readonly activeStragglers = new Set<number>();
  hang: HangReport | null = null;
  hangs: HangReport[] = [];
  lastCheckpoint: { step: number; name: string } | null = null;
  readonly #listeners = new Set<(kind: string) => void>();

  constructor(info: RunInfoView) {
    this.info = info;
  }

  /** Calls `fn` after every change (`step`, `hang`, `straggler`, `nodes`, ...); returns the unsubscribe function. */
  onChange(fn: (kind: string) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  changed(kind: string): void {
    for (const l of this.#listeners) l(kind);
  }

  /** Consumed tokens before step `step` (the steps kept before it). */
  consumedBefore(step: number): number {
    let last: StepPoint | undefined;
    for (const p of this.steps) if (p.step < step) last = p;
    return last?.consumedTokens ?? 0;
  }

  /** Adds a step; a step at or before the last one (a resumed run) replaces it and drops the later ones. */
  addRecord(r: LedgerRecord, notify = true): StepPoint {
    const point = stepPoint(r, this.consumedBefore(r.step));
    while (this.steps.length && this.steps[this.steps.length - 1].step >= r.step) this.steps.pop();
    this.steps.push(point);
    while (this.plans.length && this.plans[this.plans.length - 1].step >= r.step) this.plans.pop();
    this.plans.push(planView(r));
    if (this.plans.length > PLANS_KEPT) this.plans.splice(0, this.plans.length - PLANS_KEPT);
    if (notify) this.changed("step");
    return point;
  }

  /** Takes over everything another state knows (a run's files read again), then notifies. */
  replaceWith(o: RunState): void {
    this.info = o.info;
    this.steps.splice(0, this.steps.length, ...o.steps);
    this.plans.splice(0, this.plans.length, ...o.plans);
    this.nodes = o.nodes;
    this.ranks = o.ranks;
    this.ratios.clear();
    for (const [k, v] of o.ratios) this.ratios.set(k, v);
    this.stragglers = o.stragglers;
    this.hangs = o.hangs;
    this.lastCheckpoint = o.lastCheckpoint;
    this.changed("files");
  }

  /** The snapshot the page and /api/state serve. */
  snapshot(now = Date.now()): RunSnapshot {
    let steps = this.steps;
    if (steps.length > MAX_POINTS) {
      const older = steps.slice(0, steps.length - MAX_POINTS / 2);
      const every = Math.ceil(older.length / (MAX_POINTS / 2));
      steps = [...older.filter((_, i) => i % every === 0), ...steps.slice(steps.length - MAX_POINTS / 2)];
    }
    return {
      now,
      live: this.live,
      info: this.info,
      steps,
      plans: this.plans,
      nodes: this.nodes,
      ranks: this.ranks.map((r) => ({
        ...r,
        lastSeenAgeS: this.lastSeen.has(r.rank) ? (now - this.lastSeen.get(r.rank)!) / 1000 : null,
        ratio: this.ratios.get(r.rank) ?? null,
        straggler: this.activeStragglers.has(r.rank),
      })),
      stragglers: this.stragglers.slice(-20),
      hang: this.hang,
      hangs: this.hangs.slice(-10),
      lastCheckpoint: this.lastCheckpoint,
    };
  }
}
