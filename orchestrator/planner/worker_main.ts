// Entry point of the planner worker: builds the cost model once, then answers plan requests.

import { CostModel } from "./cost_model.ts";
import { planStep } from "./plan_step.ts";
import type { PlannerWorkerInit, PlannerWorkerRequest, PlannerWorkerResponse } from "./worker.ts";
import { UserError } from "../errors.ts";

let cost: CostModel | undefined;
let init: PlannerWorkerInit | undefined;

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async (e: MessageEvent<PlannerWorkerInit | PlannerWorkerRequest>) => {
  const msg = e.data;
  if (msg.type === "init") {
    init = msg;
    cost = new CostModel(msg.constants, msg.model, msg.costOptions);
    return;
  }
  let reply: PlannerWorkerResponse;
  try {
    const id = msg.id;
    const plan = await planStep(msg.lengths, init!.topology, cost!, {
      ...init!.options,
      ...msg.options,
      startedAt: msg.sentAt,
      onIncumbent: (p) => scope.postMessage({ id, ok: true, plan: p, incumbent: true } satisfies PlannerWorkerResponse),
    });
    reply = { id: msg.id, ok: true, plan };
  } catch (err) {
    reply = { id: msg.id, ok: false, message: (err as Error).message, user: err instanceof UserError };
  }
  scope.postMessage(reply);
};
