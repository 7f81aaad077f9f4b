// The executor's logic, independent of stdin/stdout: holds the backend, the flat parameter / gradient / AdamW
// buffers and the data-plane mesh, and turns each `ExecutorCommand` into `ExecutorEvent`s.
//
// A step: validate the whole plan (every rank refuses a bad plan identically), zero the gradients, run each
// micro-batch's group on this rank (Ulysses over the mesh; forward + backward, loss gradient scaled by
// 1/globalTokens), then sum the gradients over all ranks (fixed-order all-reduce, bit-identical everywhere),
// clip by the global norm, and apply AdamW (weight decay on matrices and embeddings only). Because every rank
// ends with the same reduced gradient bytes and the backend is deterministic, parameters stay bit-identical
// across ranks of the same backend kind. Summing gradients that are each scaled by 1/globalTokens equals
// averaging over ranks the per-rank gradients scaled by N/globalTokens: the gradient of the mean token loss.
//
// Reporting: per micro-batch, the group's summed token loss and its number of target tokens are reported by the
// group's SP rank 0 only (other members report 0 and 0), so summing over all ranks counts each group once.

import { injectedFault } from "./fault_injection.ts";
import type {
  Endpoint,
  ExecutorCommand,
  ExecutorEvent,
  ExecutorInit,
  ExecutorStepPlan,
  TsExecutorKind,
} from "../core/protocol.ts";
import type { Backend, Tensor } from "./backend.ts";
import { decodeState, encodeState, readStateFile, writeStateFile } from "./checkpoint.ts";
import { DataPlaneError, isPeerEcho, Mesh, waitedRank } from "./dataplane/mesh.ts";
import { SOLO_GROUP } from "./group_comm.ts";
import { initParams, type ParamLayout, paramLayout, validateShape } from "./model.ts";
import { packGroup, rankSlice } from "./packing.ts";
import {
  checkAllToAllRequest,
  checkComputeRequest,
  profileAllToAll,
  profileCompute,
  type ProfileContext,
} from "./profiling.ts";
import { checkPlan, type MyGroup } from "./step_plan.ts";
import { fileSource, syntheticSource, type TokenSource } from "./token_source.ts";
import { UlyssesGpt } from "./ulysses_model.ts";

/** How an executor is set up (from its command line and environment). */
export interface ExecutorOptions {
  kind: TsExecutorKind;
  /** Device index on the node. */
  device: number;
  /** Creates the compute backend (called at `init`). */
  createBackend: () => Promise<Backend>;
  /** Data-plane connect timeout (ms). */
  connectTimeoutMs?: number;
  /** Data-plane per-collective timeout (ms). */
  opTimeoutMs?: number;
  /** Diagnostics (stderr in the executor process). */
  log?: (line: string) => void;
  /** Test hook: sleep this long before each busy micro-batch of the given rank (in steps first..last). */
  testDelay?: StepDelay;
}

/** A deliberate slowdown of one rank (FLEXSP_TEST_STEP_DELAY, for straggler and hang tests). */
export interface StepDelay {
  rank: number;
  ms: number;
  firstStep: number;
  lastStep: number;
}

interface Ready {
  init: ExecutorInit;
  backend: Backend;
  layout: ParamLayout;
  params: Tensor;
  grads: Tensor;
  m: Tensor;
  v: Tensor;
  /** Per parameter slice: views of params, grads, m, v and whether weight decay applies. */
  slices: { p: Tensor; g: Tensor; m: Tensor; v: Tensor; decay: boolean }[];
  model: UlyssesGpt;
  mesh: Mesh;
  source: TokenSource;
  step: number;
  connected: boolean;
}

/** Whether a command's outcome ends the process. */
export type HandleResult = "continue" | "exit";

/** One executor: feed it commands, it emits events. */
export class Executor {
  readonly #o: ExecutorOptions;
  readonly #emit: (ev: ExecutorEvent) => void;
  readonly #log: (line: string) => void;
  #s: Ready | undefined;

  constructor(options: ExecutorOptions, emit: (ev: ExecutorEvent) => void) {
    this.#o = options;
    this.#emit = emit;
    this.#log = options.log ?? (() => {});
  }

  /** The rank (or -1 before init). */
  get rank(): number {
    return this.#s?.init.rank ?? -1;
  }

  /** Runs one command to completion; errors become `error` events. Returns "exit" after shutdown or a fatal error. */
  async handle(cmd: ExecutorCommand): Promise<HandleResult> {
    try {
      switch (cmd.type) {
        case "init":
          await this.#fatalOnError(() => this.#init(cmd.init));
          return "continue";
        case "peers":
          await this.#fatalOnError(() => this.#peers(cmd.endpoints));
          return "continue";
        case "step":
          await this.#runStep(cmd.plan);
          return "continue";
        case "save":
          await this.#save(cmd.path);
          return "continue";
        case "load":
          await this.#load(cmd.path, cmd.sha256);
          return "continue";
        case "profile_compute":
        case "profile_alltoall":
          await this.#profile(cmd);
          return "continue";
        case "shutdown":
          await this.close();
          return "exit";
        default:
          throw new Error(`unknown command ${(cmd as { type: string }).type}`);
      }
    } catch (e) {
      const fatal = e instanceof FatalError || e instanceof DataPlaneError;
      const message = e instanceof Error ? e.message : String(e);
      this.#emit({ type: "error", rank: this.rank, message, fatal, echo: isPeerEcho(e), waitingFor: waitedRank(e) });
      if (fatal) {
        await this.#s?.mesh.abort(`rank ${this.rank} failed: ${message}`).catch(() => {});
        await this.close();
        return "exit";
      }
      return "continue";
    }
  }

  async #fatalOnError<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw new FatalError(e instanceof Error ? e.message : String(e), { cause: e });
    }
  }

  #ready(what: string): Ready {
    if (!this.#s) throw new Error(`${what}: executor is not initialised (send init first)`);
    return this.#s;
  }

  async #init(init: ExecutorInit): Promise<void> {
    if (this.#s) throw new Error("init: executor is already initialised");
    validateShape(init.model);
    if (!Number.isInteger(init.worldSize) || init.worldSize < 1) {
      throw new Error(`init: bad worldSize ${init.worldSize}`);
    }
    if (!Number.isInteger(init.rank) || init.rank < 0 || init.rank >= init.worldSize) {
      throw new Error(`init: rank ${init.rank} outside [0, ${init.worldSize})`);
    }
    const layout = paramLayout(init.model);
    const source = init.dataset
      ? await fileSource(init.dataset.tokensPath, init.dataset.tokenBytes)
      : syntheticSource(init.model.vocab);
    const backend = await this.#o.createBackend();
    const params = backend.upload(initParams(layout, init.seed));
    const grads = backend.alloc(layout.total), m = backend.alloc(layout.total), v = backend.alloc(layout.total);
    const slices = layout.slices.map((s) => ({
      p: backend.view(params, s.offset, s.length),
      g: backend.view(grads, s.offset, s.length),
      m: backend.view(m, s.offset, s.length),
      v: backend.view(v, s.offset, s.length),
      decay: s.decay,
    }));
    const mesh = await Mesh.listen({
      rank: init.rank,
      worldSize: init.worldSize,
      secret: init.secret,
      bindHost: init.bindHost,
      connectTimeoutMs: this.#o.connectTimeoutMs,
      opTimeoutMs: this.#o.opTimeoutMs,
      log: this.#log,
    });
    const model = new UlyssesGpt(backend, layout, params, grads);
    this.#s = { init, backend, layout, params, grads, m, v, slices, model, mesh, source, step: 0, connected: false };
    this.#emit({
      type: "ready",
      rank: init.rank,
      kind: this.#o.kind,
      device: `${this.#o.kind}:${this.#o.device} ${backend.device}`,
      endpoint: mesh.endpoint,
    });
  }

  async #peers(endpoints: Endpoint[]): Promise<void> {
    const s = this.#ready("peers");
    await s.mesh.connect(endpoints);
    s.connected = true;
    this.#emit({ type: "connected", rank: s.init.rank });
  }

  async #runStep(plan: ExecutorStepPlan): Promise<void> {
    const s = this.#ready("step");
    const { rank, worldSize, model: shape } = s.init;
    if (worldSize > 1 && !s.connected) throw new Error("step: data plane not connected (send peers first)");
    const mine = checkPlan(plan, rank, worldSize, shape);
    // Past validation, the ranks of a group depend on each other mid-collective: any failure here is fatal, and
    // aborting the mesh makes the other ranks fail fast instead of waiting for their timeouts.
    await this.#fatalOnError(() => this.#execute(s, plan, mine));
  }

  /**
   * Tests only: FLEXSP_STEP_FAULT="RANK:exit" makes that rank exit (code 3) inside its first micro-batch, while its
   * group's peers are in their first collective; "RANK:error" makes it throw there (a fatal step error).
   */
  #stepFault(rank: number, step: number): void {
    const fault = injectedFault("FLEXSP_STEP_FAULT", rank);
    if (fault === "exit") {
      console.error(`rank ${rank}: injected fault (FLEXSP_STEP_FAULT) in step ${step}: exiting`);
      Deno.exit(3);
    }
    if (fault === "error") throw new Error(`injected fault (FLEXSP_STEP_FAULT) in step ${step}`);
  }

  async #execute(s: Ready, plan: ExecutorStepPlan, mine: MyGroup[]): Promise<void> {
    const { rank, worldSize, model: shape, optimizer: opt } = s.init;
    const b = s.backend;
    const t0 = performance.now();
    b.zero(s.grads);
    const reports: { ms: number; lossSum: number; tokens: number }[] = [];
    for (let i = 0; i < mine.length; i++) {
      const tm = performance.now();
      const { group, spRank } = mine[i];
      const d = this.#o.testDelay;
      if (d && d.rank === rank && group.sequences.length && plan.step >= d.firstStep && plan.step <= d.lastStep) {
        await new Promise((r) => setTimeout(r, d.ms));
      }
      const seqs = await Promise.all(group.sequences.map((q) => s.source.read(q)));
      const packed = packGroup(seqs, group.degree, shape.maxSeq, shape.vocab);
      const prefix = `s${plan.step}.m${i}.`;
      const comm = group.degree === 1 ? SOLO_GROUP : s.mesh.group(group.ranks, prefix);
      if (i === 0) this.#stepFault(rank, plan.step);
      const res = await s.model.run(rankSlice(packed, spRank), comm, { lossScale: 1 / plan.globalTokens });
      let groupLoss = res.lossSum;
      if (group.degree > 1) {
        // Sum the members' loss sums in SP-rank order (hi/lo float32 pairs keep float64 precision).
        const hi = Math.fround(res.lossSum), lo = res.lossSum - hi;
        const parts = await comm.allToAll(group.ranks.map(() => Float32Array.of(hi, lo)), "loss");
        groupLoss = parts.reduce((a, p) => a + p[0] + p[1], 0);
      }
      await b.sync();
      reports.push({
        ms: performance.now() - tm,
        lossSum: spRank === 0 ? groupLoss : 0,
        tokens: spRank === 0 ? packed.targetCount : 0,
      });
      this.#emit({ type: "step_progress", rank, step: plan.step, microBatch: i, ms: performance.now() - tm });
    }
    if (worldSize > 1) {
      const host = await b.download(s.grads);
      await s.mesh.allReduce(host, `s${plan.step}.grads`);
      b.write(s.grads, host);
    }
    const norm = Math.sqrt(await b.sumSquares(s.grads));
    if (!Number.isFinite(norm)) throw new Error(`step ${plan.step}: gradient norm is ${norm}; update skipped`);
    const clip = opt.gradClip > 0 && norm > opt.gradClip ? opt.gradClip / (norm + 1e-6) : 1;
    s.step++;
    for (const x of s.slices) {
      b.adamw(x.p, x.g, x.m, x.v, {
        lr: plan.lr,
        beta1: opt.beta1,
        beta2: opt.beta2,
        eps: opt.eps,
        weightDecay: x.decay ? opt.weightDecay : 0,
        step: s.step,
        gradScale: clip,
      });
    }
    await b.sync();
    const ms = performance.now() - t0;
    this.#emit({ type: "step_done", rank, step: plan.step, microBatches: reports, ms, gradNorm: norm });
  }

  /** Profiling commands (kernels/profiling.ts): validated first, then run like a step (failures are fatal). */
  async #profile(
    cmd: Extract<ExecutorCommand, { type: "profile_compute" | "profile_alltoall" }>,
  ): Promise<void> {
    const s = this.#ready(cmd.type);
    const ctx: ProfileContext = {
      rank: s.init.rank,
      worldSize: s.init.worldSize,
      shape: s.init.model,
      backend: s.backend,
      layout: s.layout,
      params: s.params,
      grads: s.grads,
      mesh: s.mesh,
      source: s.source,
      connected: s.connected,
      device: `${this.#o.kind}:${this.#o.device} ${s.backend.device}`,
    };
    if (cmd.type === "profile_compute") {
      checkComputeRequest(cmd.request, s.init.model);
      const result = await this.#fatalOnError(() => profileCompute(ctx, cmd.request));
      this.#emit({ type: "profile_compute_done", rank: s.init.rank, result });
    } else {
      checkAllToAllRequest(cmd.request, s.init.worldSize);
      const result = await this.#fatalOnError(() => profileAllToAll(ctx, cmd.request));
      this.#emit({ type: "profile_alltoall_done", rank: s.init.rank, result });
    }
  }

  async #save(path: string): Promise<void> {
    const s = this.#ready("save");
    const [params, m, v] = await Promise.all([s.params, s.m, s.v].map((t) => s.backend.download(t)));
    const bytes = encodeState({ shape: s.init.model, step: s.step, params, m, v });
    const written = await writeStateFile(path, bytes);
    this.#emit({ type: "saved", rank: s.init.rank, path, ...written });
  }

  async #load(path: string, sha256?: string): Promise<void> {
    const s = this.#ready("load");
    const bytes = await readStateFile(path, sha256);
    const st = decodeState(bytes, s.init.model, path);
    if (st.params.length !== s.layout.total) {
      throw new Error(`load: ${path} holds ${st.params.length} values, layout has ${s.layout.total}`);
    }
    s.backend.write(s.params, st.params);
    s.backend.write(s.m, st.m);
    s.backend.write(s.v, st.v);
    await s.backend.sync();
    s.step = st.step;
    this.#emit({ type: "loaded", rank: s.init.rank, path });
  }

  /** Closes the mesh, the token source and the backend. Idempotent. */
  async close(): Promise<void> {
    const s = this.#s;
    if (!s) return;
    this.#s = undefined;
    s.mesh.close();
    s.source.close();
    await s.backend.sync().catch(() => {});
    s.backend.dispose();
  }
}

/** An error that makes the executor unusable (init or data-plane failures); `cause` is the error it wraps. */
class FatalError extends Error {
  override name = "FatalError";
}
