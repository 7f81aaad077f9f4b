// Runs the planner in a worker thread so the plan of step t+1 is solved while step t executes.

import { UserError } from "../errors.ts";
import type { CostConstants, ModelConfig } from "../config/types.ts";
import type { CostModelOptions } from "./cost_model.ts";
import type { PlannerOptions } from "./context.ts";
import type { Plan } from "./plan_types.ts";
import type { PlanStepOptions } from "./plan_step.ts";
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

/** A plan request. */
export interface PlannerWorkerRequest {
  type: "plan";
  id: number;
  lengths: number[];
  options: PlanStepOptions;
}

/** The worker's answer. */
export type PlannerWorkerResponse =
  | { id: number; ok: true; plan: Plan }
  | { id: number; ok: false; message: string; user: boolean };

/** A planner in its own thread; requests are answered in order. */
export class PlannerWorker {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (p: Plan) => void; reject: (e: Error) => void }>();

  constructor(setup: PlannerSetup) {
    this.worker = new Worker(new URL("./worker_main.ts", import.meta.url).href, { type: "module" });
    this.worker.onmessage = (e: MessageEvent<PlannerWorkerResponse>) => {
      const r = e.data;
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.plan);
      else p.reject(r.user ? new UserError(r.message) : new Error(r.message));
    };
    this.worker.onerror = (e) => {
      e.preventDefault();
      for (const p of this.pending.values()) p.reject(new Error(`planner worker failed: ${e.message}`));
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

  /** Plans one step in the worker. */
  plan(lengths: readonly number[], options: PlanStepOptions = {}): Promise<Plan> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const req: PlannerWorkerRequest = { type: "plan", id, lengths: [...lengths], options };
      this.worker.postMessage(req);
    });
  }

  /** Stops the thread; pending requests are rejected. */
  close(): void {
    for (const p of this.pending.values()) p.reject(new Error("planner worker closed"));
    this.pending.clear();
    this.worker.terminate();
  }
}
