// The simulated executor (`executor: sim`): a TEST AND BENCHMARK TOOL for measuring the control plane (dispatch,
// collection, heartbeats, failure reports) at a thousand ranks without models. It speaks the whole executor
// protocol but trains nothing: a step sleeps, per micro-batch, for the planner's predicted time of the rank's group
// (`predictedMs` in the plan, times FLEXSP_SIM_SCALE, with FLEXSP_SIM_JITTER relative jitter shared by the group's
// members), then reports a made-up but plausible loss (ln(vocab), decaying with the step) and gradient norm. Saves
// write a small state file (so checkpoints and resume work), profiling requests get synthetic timings, and
// FLEXSP_STEP_FAULT="RANK:exit|error" injects a fault in a step as for the real executors. The agent runs it inside
// its own process (agents/executor_supervisor.ts), so one 2-core machine holds 1,024 of them. A config must say
// `training.simulate: true` to use it (orchestrator/config/load.ts): it never stands in for training by mistake.

import type { Endpoint, ExecutorCommand, ExecutorEvent, ExecutorInit, ExecutorStepPlan } from "../core/protocol.ts";
import { readStateFile, writeStateFile } from "./checkpoint.ts";
import { injectedFault } from "./fault_injection.ts";
import { isPeerEcho } from "./dataplane/mesh.ts";
import { checkAllToAllRequest, checkComputeRequest } from "./profiling.ts";
import { checkPlan } from "./step_plan.ts";
import type { HandleResult } from "./executor.ts";

/** How a simulated executor behaves (from the spawn environment). */
export interface SimOptions {
  device: number;
  /** Multiplies every predicted time (default 1). */
  scale?: number;
  /** Relative jitter of a group's time, e.g. 0.1 for ±10 % (default 0). */
  jitter?: number;
  /** Its environment (FLEXSP_STEP_FAULT is read here; default: the process environment). */
  env?: Record<string, string | undefined>;
  /** Called when an injected fault makes the executor "exit" (code 3). */
  onExit?: (code: number) => void;
}

/** The options of a simulated executor from its environment (FLEXSP_SIM_SCALE, FLEXSP_SIM_JITTER). */
export function simOptionsFromEnv(env: Record<string, string | undefined>, device: number): SimOptions {
  const num = (name: string, fallback: number) => {
    const v = env[name];
    const n = v === undefined ? fallback : Number(v);
    if (!(n >= 0) || !Number.isFinite(n)) throw new Error(`${name} must be a non-negative number, got "${v}"`);
    return n;
  };
  return { device, env, scale: num("FLEXSP_SIM_SCALE", 1), jitter: num("FLEXSP_SIM_JITTER", 0) };
}

/** A deterministic number in [0, 1) from integers (the same on every member of a group). */
function unit(...xs: number[]): number {
  let h = 2166136261;
  for (const x of xs) h = Math.imul(h ^ (x | 0), 16777619) ^ (h >>> 13);
  return ((h >>> 0) % 1_000_003) / 1_000_003;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One simulated executor: feed it commands, it emits events. */
export class SimExecutor {
  #init?: ExecutorInit;
  #step = 0;
  #connected = false;
  readonly #env = (name: string) => this.options.env ? this.options.env[name] : Deno.env.get(name);
  constructor(readonly options: SimOptions, readonly emit: (ev: ExecutorEvent) => void) {}

  /** Runs one command; errors become `error` events (fatal ones after init or a step's start). */
  async handle(cmd: ExecutorCommand): Promise<HandleResult> {
    const rank = this.#init?.rank ?? -1;
    try {
      switch (cmd.type) {
        case "init":
          this.#init = cmd.init;
          this.emit({
            type: "ready",
            rank: cmd.init.rank,
            kind: "sim",
            device: `sim:${this.options.device}`,
            endpoint: { rank: cmd.init.rank, host: cmd.init.bindHost, port: 0 } satisfies Endpoint,
          });
          return "continue";
        case "peers":
          this.#ready("peers");
          this.#connected = true;
          this.emit({ type: "connected", rank });
          return "continue";
        case "step":
          return await this.#runStep(cmd.plan);
        case "save":
          await this.#save(cmd.path);
          return "continue";
        case "load":
          await this.#load(cmd.path, cmd.sha256);
          return "continue";
        case "profile_compute": {
          const init = this.#ready(cmd.type);
          checkComputeRequest(cmd.request, init.model);
          const samples = cmd.request.order.map((point) => {
            const { count, length } = cmd.request.points[point];
            const tokens = count * length;
            return { point, ms: 0.001 * tokens + 1e-7 * count * length * length, tokens, peakBytes: tokens * 4096 };
          });
          const result = {
            id: cmd.request.id,
            samples,
            modelStateBytes: 16 * 1024 * 1024,
            memorySource: "buffers" as const,
            device: `sim:${this.options.device}`,
          };
          this.emit({ type: "profile_compute_done", rank, result });
          return "continue";
        }
        case "profile_alltoall": {
          const init = this.#ready(cmd.type);
          checkAllToAllRequest(cmd.request, init.worldSize);
          const mine = cmd.request.groups.find((g) => g.includes(rank));
          const samples = mine
            ? cmd.request.sizes.map((bytes) => ({
              bytes,
              ms: Array.from({ length: cmd.request.iters }, () => 0.05 + bytes / 1e7),
            }))
            : [];
          this.emit({ type: "profile_alltoall_done", rank, result: { id: cmd.request.id, samples } });
          return "continue";
        }
        case "shutdown":
          return "exit";
      }
    } catch (e) {
      // Decided by class (the simulated executor has no data plane: in practice its errors are its own).
      this.emit({ type: "error", rank, message: (e as Error).message, fatal: false, echo: isPeerEcho(e) });
    }
    return "continue";
  }

  #ready(what: string): ExecutorInit {
    if (!this.#init) throw new Error(`${what}: executor not initialised (send init first)`);
    return this.#init;
  }

  async #runStep(plan: ExecutorStepPlan): Promise<HandleResult> {
    const init = this.#ready("step");
    const { rank, worldSize, model } = init;
    if (worldSize > 1 && !this.#connected) throw new Error("step: data plane not connected (send peers first)");
    const mine = checkPlan(plan, rank, worldSize, model);
    const t0 = performance.now();
    const { scale = 1, jitter = 0 } = this.options;
    const loss = Math.log(model.vocab) * (0.55 + 0.45 * Math.exp(-plan.step / 100));
    const reports: { ms: number; lossSum: number; tokens: number }[] = [];
    for (let i = 0; i < mine.length; i++) {
      const tm = performance.now();
      const { group, spRank } = mine[i];
      const fault = i === 0 ? injectedFault("FLEXSP_STEP_FAULT", rank, this.#env) : undefined;
      if (fault === "exit") {
        this.options.onExit?.(3);
        return "exit";
      }
      if (fault === "error") {
        this.emit({
          type: "error",
          rank,
          message: `injected fault (FLEXSP_STEP_FAULT) in step ${plan.step}`,
          fatal: true,
          echo: false,
        });
        return "exit";
      }
      const wobble = 1 + jitter * (2 * unit(plan.step, i, group.ranks[0]) - 1);
      const ms = (group.predictedMs ?? 0) * scale * wobble;
      if (ms > 0) await sleep(ms);
      const tokens = group.sequences.reduce((a, s) => a + s.length - 1, 0);
      const lossSum = tokens * loss * (1 + 0.02 * (unit(plan.step, group.ranks[0], 7) - 0.5));
      reports.push({
        ms: performance.now() - tm,
        lossSum: spRank === 0 ? lossSum : 0,
        tokens: spRank === 0 ? tokens : 0,
      });
      this.emit({ type: "step_progress", rank, step: plan.step, microBatch: i, ms: performance.now() - tm });
    }
    this.#step++;
    const gradNorm = 0.5 + 2 / Math.sqrt(plan.step + 1);
    this.emit({
      type: "step_done",
      rank,
      step: plan.step,
      microBatches: reports,
      ms: performance.now() - t0,
      gradNorm,
    });
    return "continue";
  }

  async #save(path: string): Promise<void> {
    const init = this.#ready("save");
    const bytes = new TextEncoder().encode(JSON.stringify({ sim: true, step: this.#step }) + "\n");
    const written = await writeStateFile(path, bytes);
    this.emit({ type: "saved", rank: init.rank, path, ...written });
  }

  async #load(path: string, sha256?: string): Promise<void> {
    const init = this.#ready("load");
    const bytes = await readStateFile(path, sha256);
    let st: { sim?: boolean; step?: number } | undefined;
    try {
      st = JSON.parse(new TextDecoder().decode(bytes));
    } catch { /* not JSON: refused below */ }
    if (st?.sim !== true || typeof st.step !== "number") {
      throw new Error(`load: ${path} is not a simulated executor's state (a real checkpoint?)`);
    }
    this.#step = st.step;
    this.emit({ type: "loaded", rank: init.rank, path });
  }
}
