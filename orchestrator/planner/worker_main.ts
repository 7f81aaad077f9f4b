// Entry point of the planner worker: builds the cost model once, then answers plan requests.

import { CostModel } from "./cost_model.ts";
import { planStep } from "./plan_step.ts";
import type { PlannerWorkerInit, PlannerWorkerReady, PlannerWorkerRequest, PlannerWorkerResponse } from "./worker.ts";
import { loadMilpBackend } from "./milp_backends.ts";
import { UserError } from "../errors.ts";

let cost: CostModel | undefined;

/**
 * Plans a small synthetic batch once (no MILP, no time limit), so the first real request does not run on
 * cold, unoptimised code. Errors are ignored: a real request reports them.
 */
async function warmUp(msg: PlannerWorkerInit, cm: CostModel): Promise<void> {
  try {
    const cap = cm.tokenCapacity();
    const n = msg.topology.devices;
    const lengths = Array.from({ length: Math.min(256, 2 * n) }, (_, i) => 1 + ((i * 7919) % Math.max(1, 4 * cap)));
    await planStep(lengths, msg.topology, cm, { ...msg.options, milp: "none", deterministic: true, overflow: "drop" });
  } catch {
    // ignored
  }
}
let init: PlannerWorkerInit | undefined;

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async (e: MessageEvent<PlannerWorkerInit | PlannerWorkerRequest>) => {
  const msg = e.data;
  if (msg.type === "init") {
    init = msg;
    cost = new CostModel(msg.constants, msg.model, msg.costOptions);
    // Load the MILP backend now, so the first step's budget is not spent compiling it (a failure is
    // reported by that step's solve).
    if (msg.options.milp !== "none") await loadMilpBackend(msg.options.milp).catch(() => {});
    await warmUp(msg, cost);
    scope.postMessage({ ready: true } satisfies PlannerWorkerReady);
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
