// The executor's side of `deno task profile`: forward+backward timing of packed degree-1 batches (the compute grid)
// with activation-memory accounting, and timed all-to-alls of concurrent groups over the data plane (network).
//
// Memory: the TypeScript backends have no allocator statistics, so a thin wrapper counts the bytes of every buffer
// the model allocates (alloc/upload/uploadInt minus free) and keeps the peak of one run: the activation memory of
// that batch. Model states are the four flat buffers every executor keeps (parameters, gradients, AdamW m and v).
//
// Fault injection (tests only): FLEXSP_PROFILE_FAULT="RANK:error" makes that rank's compute benchmark throw, and
// "RANK:exit" makes the process exit, at the first timed run.

import { injectedFault } from "./fault_injection.ts";
import type {
  ProfileAllToAllRequest,
  ProfileAllToAllResult,
  ProfileComputeRequest,
  ProfileComputeResult,
} from "../core/protocol.ts";
import type { Backend, IntTensor, Tensor } from "./backend.ts";
import type { Mesh } from "./dataplane/mesh.ts";
import { SOLO_GROUP } from "./group_comm.ts";
import type { ModelShape, ParamLayout } from "./model.ts";
import { packGroup, rankSlice } from "./packing.ts";
import type { TokenSource } from "./token_source.ts";
import { UlyssesGpt } from "./ulysses_model.ts";

/** What a profiling command needs from an initialised executor. */
export interface ProfileContext {
  rank: number;
  worldSize: number;
  shape: ModelShape;
  backend: Backend;
  layout: ParamLayout;
  params: Tensor;
  grads: Tensor;
  mesh: Mesh;
  source: TokenSource;
  /** Whether the data plane is connected (needed for barriers and all-to-alls when worldSize > 1). */
  connected: boolean;
  /** Device description as `ready` reports it. */
  device: string;
}

/** Live and peak bytes of the buffers allocated through a {@link trackedBackend}. */
export class MemoryTracker {
  live = 0;
  peak = 0;
  readonly #sizes = new WeakMap<object, number>();

  /** Records a new buffer. */
  add(t: Tensor | IntTensor): void {
    const bytes = t.length * 4;
    this.#sizes.set(t, bytes);
    this.live += bytes;
    if (this.live > this.peak) this.peak = this.live;
  }

  /** Records a freed buffer (views and unknown tensors count nothing). */
  remove(t: Tensor | IntTensor): void {
    const bytes = this.#sizes.get(t);
    if (bytes === undefined) return;
    this.#sizes.delete(t);
    this.live -= bytes;
  }

  /** Starts a new peak measurement from the current live bytes. */
  resetPeak(): void {
    this.peak = this.live;
  }
}

/** `backend` with every allocation and free counted by `tracker` (all other calls pass straight through). */
export function trackedBackend(backend: Backend, tracker: MemoryTracker): Backend {
  return new Proxy(backend, {
    get(target, prop) {
      switch (prop) {
        case "alloc":
          return (n: number) => {
            const t = target.alloc(n);
            tracker.add(t);
            return t;
          };
        case "upload":
          return (d: Float32Array) => {
            const t = target.upload(d);
            tracker.add(t);
            return t;
          };
        case "uploadInt":
          return (d: Int32Array) => {
            const t = target.uploadInt(d);
            tracker.add(t);
            return t;
          };
        case "free":
          return (t: Tensor | IntTensor) => {
            tracker.remove(t);
            target.free(t);
          };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** Checks a compute request before any collective starts (every rank refuses a bad one the same way). */
export function checkComputeRequest(req: ProfileComputeRequest, shape: ModelShape): void {
  if (!req || typeof req.id !== "string" || !Array.isArray(req.points) || req.points.length === 0) {
    throw new Error("profile_compute: needs an id and at least one point");
  }
  req.points.forEach((p, i) => {
    if (!Number.isInteger(p.count) || p.count < 1 || !Number.isInteger(p.length) || p.length < 2) {
      throw new Error(`profile_compute: point ${i} needs count >= 1 and length >= 2, got ${JSON.stringify(p)}`);
    }
    if (p.length > shape.maxSeq) {
      throw new Error(`profile_compute: point ${i} has length ${p.length}, more than the model's ${shape.maxSeq}`);
    }
  });
  if (!Array.isArray(req.order) || req.order.length === 0) throw new Error("profile_compute: empty order");
  for (const i of req.order) {
    if (!Number.isInteger(i) || i < 0 || i >= req.points.length) {
      throw new Error(`profile_compute: order refers to point ${i}, which does not exist`);
    }
  }
  if (!Number.isInteger(req.warmup) || req.warmup < 0) throw new Error("profile_compute: bad warmup");
}

/** Runs the compute grid on this device (see the file header); collectives make every failure fatal to the caller. */
export async function profileCompute(ctx: ProfileContext, req: ProfileComputeRequest): Promise<ProfileComputeResult> {
  const tracker = new MemoryTracker();
  const b = trackedBackend(ctx.backend, tracker);
  const model = new UlyssesGpt(b, ctx.layout, ctx.params, ctx.grads);
  const { maxSeq, vocab } = ctx.shape;
  const sync = req.barrier && ctx.worldSize > 1;
  if (sync && !ctx.connected) throw new Error("profile_compute: data plane not connected (send peers first)");
  const fault = injectedFault("FLEXSP_PROFILE_FAULT", ctx.rank);
  const samples: ProfileComputeResult["samples"] = [];
  const runs = [...new Array(req.warmup).fill(req.order[0]), ...req.order];
  for (let i = 0; i < runs.length; i++) {
    const timed = i >= req.warmup;
    const p = req.points[runs[i]];
    if (sync) await ctx.mesh.barrier(`${req.id}.c${i}`);
    if (timed && fault) {
      if (fault === "exit") {
        console.error(`rank ${ctx.rank}: injected fault (FLEXSP_PROFILE_FAULT): exiting`);
        Deno.exit(3);
      }
      throw new Error(`injected fault (FLEXSP_PROFILE_FAULT) at ${p.count}x${p.length} tokens`);
    }
    const base = tracker.live;
    tracker.resetPeak();
    const t0 = performance.now();
    // The same path as a training micro-batch: read the sequences, pack, forward+backward, wait for the device.
    const refs = Array.from(
      { length: p.count },
      (_, k) => ({ id: 1_000_000 + i * 64 + k, offset: 0, length: p.length }),
    );
    const seqs = await Promise.all(refs.map((r) => ctx.source.read(r)));
    const packed = packGroup(seqs, 1, maxSeq, vocab);
    const res = await model.run(rankSlice(packed, 0), SOLO_GROUP, { lossScale: 1 / Math.max(1, packed.targetCount) });
    await b.sync();
    const ms = performance.now() - t0;
    if (!Number.isFinite(res.lossSum)) {
      throw new Error(`loss is ${res.lossSum} at ${p.count}x${p.length} tokens: the device computes garbage`);
    }
    if (timed) samples.push({ point: runs[i], ms, tokens: packed.seqLen, peakBytes: tracker.peak - base });
  }
  ctx.backend.zero(ctx.grads);
  await ctx.backend.sync();
  return {
    id: req.id,
    samples,
    modelStateBytes: 4 * ctx.layout.total * 4,
    memorySource: "buffers",
    device: ctx.device,
  };
}

/** Checks an all-to-all request before any collective starts. */
export function checkAllToAllRequest(req: ProfileAllToAllRequest, worldSize: number): void {
  if (!req || typeof req.id !== "string" || !Array.isArray(req.groups) || !Array.isArray(req.sizes)) {
    throw new Error("profile_alltoall: needs id, groups and sizes");
  }
  const seen = new Set<number>();
  for (const g of req.groups) {
    if (!Array.isArray(g) || g.length < 2) throw new Error("profile_alltoall: every group needs at least 2 ranks");
    for (const r of g) {
      if (!Number.isInteger(r) || r < 0 || r >= worldSize) throw new Error(`profile_alltoall: bad rank ${r}`);
      if (seen.has(r)) throw new Error(`profile_alltoall: rank ${r} is in two groups`);
      seen.add(r);
    }
  }
  for (const s of req.sizes) {
    if (!Number.isInteger(s) || s < 0) throw new Error(`profile_alltoall: bad size ${s}`);
  }
  if (!Number.isInteger(req.iters) || req.iters < 1 || !Number.isInteger(req.warmup) || req.warmup < 0) {
    throw new Error("profile_alltoall: bad iters or warmup");
  }
}

/**
 * Runs timed all-to-alls: for every size, warmup + iters rounds, each started by a barrier over all ranks so the
 * groups run at once; each member sends `size / degree` bytes to every member (itself included, as Ulysses does).
 */
export async function profileAllToAll(
  ctx: ProfileContext,
  req: ProfileAllToAllRequest,
): Promise<ProfileAllToAllResult> {
  if (ctx.worldSize > 1 && !ctx.connected) throw new Error("profile_alltoall: data plane not connected");
  const group = req.groups.find((g) => g.includes(ctx.rank));
  const samples: ProfileAllToAllResult["samples"] = [];
  for (const [si, bytes] of req.sizes.entries()) {
    const ms: number[] = [];
    const chunks = group
      ? group.map(() => {
        const c = new Float32Array(Math.max(1, Math.floor(bytes / 4 / group.length)));
        c.fill(ctx.rank + 0.5);
        return c;
      })
      : [];
    for (let it = 0; it < req.warmup + req.iters; it++) {
      const tag = `${req.id}.s${si}.i${it}`;
      if (ctx.worldSize > 1) await ctx.mesh.barrier(`${tag}.b`);
      if (!group) continue;
      const t0 = performance.now();
      const got = await ctx.mesh.allToAll(group, chunks, tag);
      const dt = performance.now() - t0;
      if (got.length !== group.length) throw new Error(`profile_alltoall: got ${got.length} chunks`);
      if (it >= req.warmup) ms.push(dt);
    }
    samples.push({ bytes, ms });
  }
  return { id: req.id, samples };
}
