// Prometheus metrics of a run (prom-client, own registry): the last step's scalars, the step-time histogram, every
// rank's step time and straggler flag, every node's liveness and heartbeat age, and whether a step is overdue.
// Gauges are read from the run's state when scraped; the histogram observes each step as it lands.

import { Gauge, Histogram, Registry } from "prom-client";
import type { RunState } from "./run_state.ts";
import { rankGroupTimes } from "./stragglers.ts";
import type { LedgerRecord } from "../../ledger/ledger.ts";
import type { StepDone } from "../../ledger/step_record.ts";

/** The registry of one run (see the file header). */
export class RunMetrics {
  readonly registry = new Registry();
  readonly #hist: Histogram;
  readonly #rankMs = new Map<number, number>();

  constructor(readonly state: RunState) {
    const reg = [this.registry];
    const last = () => state.steps[state.steps.length - 1];
    const gauge = (name: string, help: string, value: () => number | null | undefined) =>
      new Gauge({
        name,
        help,
        registers: reg,
        collect() {
          const v = value();
          if (v !== null && v !== undefined) this.set(v);
          else this.reset();
        },
      });
    gauge("flexsp_step", "Last completed training step", () => last()?.step ?? 0);
    gauge("flexsp_total_steps", "Steps the run trains for", () => state.info.totalSteps);
    gauge("flexsp_loss", "Mean next-token loss of the last step", () => last()?.loss);
    gauge("flexsp_tokens_per_second", "Tokens per second of the last step (wall time)", () => last()?.tokensPerS);
    gauge(
      "flexsp_mfu",
      "Model FLOPs utilisation of the last step (absent: a device peak is unknown)",
      () => last()?.mfu,
    );
    gauge("flexsp_tflops_per_device", "Model TFLOP/s per device of the last step", () => last()?.tflopsPerDevice);
    gauge("flexsp_grad_norm", "Gradient norm before clipping of the last step", () => last()?.gradNorm);
    gauge("flexsp_learning_rate", "Learning rate of the last step", () => last()?.lr);
    gauge("flexsp_consumed_tokens", "Tokens trained on so far", () => last()?.consumedTokens ?? 0);
    gauge("flexsp_predicted_step_seconds", "Predicted time of the last step's plan", () => {
      const p = last();
      return p ? p.predictedMs / 1000 : undefined;
    });
    gauge("flexsp_plan_solve_seconds", "Planner solve time of the last step", () => {
      const p = last();
      return p ? p.solveMs / 1000 : undefined;
    });
    gauge(
      "flexsp_step_overdue",
      "1 while a step runs past observe.hang_factor times its prediction",
      () => state.hang ? 1 : 0,
    );
    this.#hist = new Histogram({
      name: "flexsp_step_seconds",
      help: "Wall time of training steps",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300],
      registers: reg,
    });
    const rankMs = this.#rankMs;
    new Gauge({
      name: "flexsp_rank_step_seconds",
      help: "The rank's own time of the last step",
      labelNames: ["rank", "host"],
      registers: reg,
      collect() {
        this.reset();
        for (const r of state.ranks) {
          const ms = rankMs.get(r.rank);
          if (ms !== undefined) this.set({ rank: String(r.rank), host: r.host }, ms / 1000);
        }
      },
    });
    new Gauge({
      name: "flexsp_rank_straggler",
      help: "1 while the rank is reported as a straggler",
      labelNames: ["rank", "host", "device"],
      registers: reg,
      collect() {
        this.reset();
        for (const r of state.ranks) {
          this.set(
            { rank: String(r.rank), host: r.host, device: String(r.device) },
            state.activeStragglers.has(r.rank) ? 1 : 0,
          );
        }
      },
    });
    new Gauge({
      name: "flexsp_rank_unfinished",
      help: "1 for the ranks an overdue step waits for",
      labelNames: ["rank", "host"],
      registers: reg,
      collect() {
        this.reset();
        for (const u of state.hang?.unfinished ?? []) this.set({ rank: String(u.rank), host: u.host }, 1);
      },
    });
    new Gauge({
      name: "flexsp_node_up",
      help: "1 while the node's agent is connected",
      labelNames: ["host"],
      registers: reg,
      collect() {
        this.reset();
        for (const n of state.nodes) if (n.up !== null) this.set({ host: n.host }, n.up ? 1 : 0);
      },
    });
    new Gauge({
      name: "flexsp_node_heartbeat_age_seconds",
      help: "Seconds since the node's agent last sent a heartbeat",
      labelNames: ["host"],
      registers: reg,
      collect() {
        this.reset();
        const now = Date.now();
        for (const n of state.nodes) if (n.lastHeartbeat) this.set({ host: n.host }, (now - n.lastHeartbeat) / 1000);
      },
    });
  }

  /** Records a finished step (its wall time in the histogram, each rank's own time). */
  step(r: LedgerRecord, done?: StepDone[]): void {
    this.#hist.observe(r.wallMs / 1000);
    if (done) {
      for (const d of done) {
        if (d) this.#rankMs.set(d.rank, d.ms);
        else for (const [rank, t] of rankGroupTimes(r)) this.#rankMs.set(rank, t.measured);
      }
    }
  }

  /** Observes a step's wall time (ms) in the histogram alone (a run read from its files). */
  observeWall(ms: number): void {
    this.#hist.observe(ms / 1000);
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The exposition's content type. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
