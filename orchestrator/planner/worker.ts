// Runs the planner in a worker thread so the plan of step t+1 is solved while step t executes.

import { UserError } from "../errors.ts";
import type { CostConstants, ModelConfig } from "../config/types.ts";
import type { CostModelOptions } from "./cost_model.ts";
import type { PlannerOptions } from "./context.ts";
import type { Plan } from "./plan_types.ts";
import { epochNow, planStep, type PlanStepOptions } from "./plan_step.ts";
import type { Topology } from "./topology.ts";
import type { PlannerSetup } from "./from_config.ts";

/** First message: everything needed to rebuild the cost model in the worker. */
export interface PlannerWorkerInit {
  type: "init";
  constants: CostConstants;
  model: ModelConfig;
  costOptions: CostModelOptions;
  topology: Topology;
  options: PlannerOptions;
}

/** A plan request; `sentAt` (epoch ms) starts the request's time budget. */
export interface PlannerWorkerRequest {
  type: "plan";
  id: number;
  lengths: number[];
  options: Omit<PlanStepOptions, "onIncumbent">;
  sentAt: number;
}

/** The worker's answer: a complete plan found so far (`incumbent`), then the final plan or the error. */
export type PlannerWorkerResponse =
  | { id: number; ok: true; plan: Plan; incumbent?: boolean }
  | { id: number; ok: false; message: string; user: boolean };

/** Sent once the worker has built its cost model and loaded its MILP backend (starting is not solving). */
export interface PlannerWorkerReady {
  ready: true;
}

/**
 * Time kept back before `time_limit_ms` (ms): when the final plan has not arrived by then, the latest incumbent
 * is taken, so the main thread's timer may fire this late (a busy event loop) and still meet the limit.
 */
export function deadlineReserveMs(limitMs: number): number {
  return Math.min(150, Math.max(2, 0.08 * limitMs));
}

/** A planner in its own thread; requests are answered in order. */
export class PlannerWorker {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly options: PlannerOptions;
  /** Settles when the previous request has. */
  private tail: Promise<void>;
  private closed = false;
  /** Why the worker thread died, if it did. */
  private failure?: string;

  constructor(private readonly setup: PlannerSetup) {
    this.options = setup.options;
    this.worker = new Worker(new URL("./worker_main.ts", import.meta.url).href, { type: "module" });
    let ready = () => {};
    this.tail = new Promise<void>((resolve) => ready = resolve);
    this.worker.onmessage = (e: MessageEvent<PlannerWorkerResponse | PlannerWorkerReady>) => {
      if ("ready" in e.data) return ready();
      const r = e.data;
      const p = this.pending.get(r.id);
      if (!p) return;
      if (r.ok && r.incumbent) {
        p.incumbent = r.plan;
        return;
      }
      this.settle(r.id, p, r.ok ? r.plan : undefined);
      if (!r.ok) p.reject(r.user ? new UserError(r.message) : new Error(r.message));
    };
    this.worker.onerror = (e) => {
      e.preventDefault();
      this.failure = `planner worker failed: ${e.message}`;
      for (const p of this.pending.values()) {
        if (p.timer !== undefined) clearTimeout(p.timer);
        if (p.fallbackTimer !== undefined) clearTimeout(p.fallbackTimer);
        p.reject(new Error(this.failure));
      }
      this.pending.clear();
      ready();
      this.pending.clear();
    };
    const init: PlannerWorkerInit = {
      type: "init",
      constants: setup.cost.constants,
      model: setup.cost.model,
      costOptions: setup.cost.options,
      topology: setup.topology,
      options: setup.options,
    };
    this.worker.postMessage(init);
  }

  /**
   * Plans one step in the worker (requests wait for the worker to start, then run one at a time). Outside deterministic mode `time_limit_ms` bounds the whole call: the
   * worker stops improving in time, and should its final plan be late, the best complete plan it sent before
   * is taken (`details.deadline: "incumbent"`), or with none yet the static-SP plan (`"static fallback"`). `solveMs` is this call's wall time, round trip included.
   */
  plan(lengths: readonly number[], options: Omit<PlanStepOptions, "onIncumbent"> = {}): Promise<Plan> {
    // One request in the worker at a time: a request's budget starts when it is sent, not behind another.
    const copy = [...lengths];
    const result = this.tail.then(() => this.send(copy, options));
    this.tail = result.then(() => {}, () => {});
    return result;
  }

  private send(lengths: number[], options: Omit<PlanStepOptions, "onIncumbent">): Promise<Plan> {
    const id = this.nextId++;
    const opts = { ...this.options, ...options };
    const sentAt = epochNow();
    return new Promise((resolve, reject) => {
      if (this.closed || this.failure) return reject(new Error(this.failure ?? "planner worker closed"));
      const p: Pending = { resolve, reject, sentAt };
      this.pending.set(id, p);
      if (!opts.deterministic && (options.strategy ?? "flexsp") === "flexsp") {
        const wait = opts.timeLimitMs - deadlineReserveMs(opts.timeLimitMs);
        // At 3/4 of the budget with no incumbent yet (a starved or cold worker), this thread packs the
        // static-SP plan as a fallback, so that settling at the deadline costs nothing.
        p.fallbackTimer = setTimeout(async () => {
          if (p.incumbent) return;
          try {
            const st = await planStep(lengths, this.setup.topology, this.setup.cost, { ...opts, strategy: "static" });
            p.fallback = { ...st, strategy: "flexsp", details: { ...st.details, deadline: "static fallback" } };
          } catch {
            // No static plan holds this batch: the worker's answer decides.
          }
        }, Math.max(0, 0.75 * wait));
        p.timer = setTimeout(() => {
          // The final plan is late: take the best one so far, else the fallback, else keep waiting.
          if (p.incumbent) {
            return this.settle(id, p, { ...p.incumbent, details: { ...p.incumbent.details, deadline: "incumbent" } });
          }
          if (p.fallback) this.settle(id, p, p.fallback);
        }, Math.max(0, wait));
      }
      const req: PlannerWorkerRequest = { type: "plan", id, lengths, options, sentAt };
      this.worker.postMessage(req);
    });
  }

  /** Resolves a request with a plan (solveMs: the call's wall time), or just forgets it (an error follows). */
  private settle(id: number, p: Pending, plan: Plan | undefined): void {
    this.pending.delete(id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    if (p.fallbackTimer !== undefined) clearTimeout(p.fallbackTimer);
    if (plan) p.resolve({ ...plan, solveMs: Math.round((epochNow() - p.sentAt) * 1000) / 1000 });
  }

  /** Stops the thread; pending requests are rejected. */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      if (p.fallbackTimer !== undefined) clearTimeout(p.fallbackTimer);
      p.reject(new Error("planner worker closed"));
    }
    this.pending.clear();
    this.worker.terminate();
  }
}

/** A request in flight. */
interface Pending {
  resolve: (p: Plan) => void;
  reject: (e: Error) => void;
  sentAt: number;
  timer?: ReturnType<typeof setTimeout>;
  fallbackTimer?: ReturnType<typeof setTimeout>;
  /** The latest complete plan the worker sent before its final one. */
  incumbent?: Plan;
  /** The static-SP plan packed here when no incumbent came by 3/4 of the budget. */
  fallback?: Plan;
}
