// Kernel benchmark of the TypeScript executors: tokens/s of one training step (forward + backward + AdamW, one
// micro-batch at SP degree 1) of gpt-tiny and gpt-small at packed lengths 512..16K on the CPU reference backend
// (and on WebGPU when kernels/webgpu/backend.ts loads and an adapter exists), per-op times with GFLOP/s of matmul
// and attention against a measured machine peak, the op breakdown inside one CPU step, and the all-to-all /
// all-reduce bandwidth of the TCP data plane on loopback.
//
// Method:
// - Packed length L is made of full-length documents of min(L, maxSeq) tokens, so beyond maxSeq the attention
//   cost per token is constant. gpt-small runs up to 2K (= its maxSeq) by default: its 4K..16K steps are the same
//   per-token work and take minutes on 2 cores; `--full` (or FLEXSP_BENCH_FULL=1) runs every length everywhere.
// - Peak: (1) "scalar FP peak": a register-only loop of 8 independent multiply-adds per iteration in float64
//   (what one JS thread can issue at best); (2) "matmul peak": the best GFLOP/s of the CPU backend's own
//   register-blocked matmul over cache-resident square sizes 128..384. Matmul and attention GFLOP/s are shown as
//   % of (2) and can exceed 100% (a longer k panel amortises better than the square probes); (1) tells how far
//   the JIT'd kernel is from the scalar ceiling. Both are best-of-many short windows. Single thread; the machine is shared,
//   so numbers move with the load of other processes.
// - Attention FLOPs: forward 4·D per causal (query, key) pair and head (Q·K and P·V); backward 10·D (score
//   recomputation, dP, dQ, dK, dV).
// - Op times: an op repeated until ~150 ms have passed (at least once), divided by the count, with `sync()`
//   before the clock stops (WebGPU: amortised over one submission).
// - Data plane: 4 ranks in THIS process (one event loop) connected through real authenticated TCP on 127.0.0.1;
//   bandwidth = bytes each rank sends / time.
// Runnable alone: `deno run -A bench/kernels.ts [--full]`.

import type { Backend, Tensor } from "../kernels/backend.ts";
import { createCpuBackend } from "../kernels/cpu/backend.ts";
import { matmul as cpuMatmul } from "../kernels/cpu/matmul.ts";
import { Mesh } from "../kernels/dataplane/mesh.ts";
import { SOLO_GROUP } from "../kernels/group_comm.ts";
import { initParams, type ModelShape, paramLayout, Prng } from "../kernels/model.ts";
import { packGroup, rankSlice } from "../kernels/packing.ts";
import { UlyssesGpt } from "../kernels/ulysses_model.ts";
import { MODEL_PRESETS } from "../core/model_shape.ts";

type Row = Record<string, string | number>;

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

function randF32(n: number, seed: number): Float32Array {
  const r = new Prng(seed);
  return Float32Array.from({ length: n }, () => r.uniform() * 2 - 1);
}

// ---------- peak ----------

function scalarPeak(): number {
  let a0 = 1, a1 = 1.1, a2 = 1.2, a3 = 1.3, a4 = 1.4, a5 = 1.5, a6 = 1.6, a7 = 1.7;
  const m = 0.9999999, c = 1e-7;
  let best = 0;
  for (let rep = 0; rep < 5; rep++) {
    const n = 5_000_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      a0 = a0 * m + c, a1 = a1 * m + c, a2 = a2 * m + c, a3 = a3 * m + c;
      a4 = a4 * m + c, a5 = a5 * m + c, a6 = a6 * m + c, a7 = a7 * m + c;
    }
    const s = (performance.now() - t0) / 1000;
    best = Math.max(best, (16 * n) / s / 1e9);
  }
  if (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 === 42) console.error(""); // keep the loop alive
  return best;
}

function matmulPeak(): { gflops: number; size: number } {
  // Best of many short windows: on a shared machine the best window is the closest to the unloaded speed.
  let best = { gflops: 0, size: 0 };
  for (let round = 0; round < 3; round++) {
    for (const n of [128, 256, 384]) {
      const a = randF32(n * n, 1), b = randF32(n * n, 2), c = new Float32Array(n * n);
      cpuMatmul(a, b, c, n, n, n, false, false, false);
      for (let w = 0; w < 4; w++) {
        let reps = 0;
        const t0 = performance.now();
        while (performance.now() - t0 < 40) cpuMatmul(a, b, c, n, n, n, false, false, false), reps++;
        const g = (2 * n * n * n * reps) / ((performance.now() - t0) / 1000) / 1e9;
        if (g > best.gflops) best = { gflops: g, size: n };
      }
    }
  }
  return best;
}

// ---------- ops ----------

interface OpCase {
  op: string;
  flops: number;
  setup: (b: Backend) => { run: () => void; free: () => void };
}

function attnPairs(cu: number[]): number {
  let p = 0;
  for (let s = 0; s + 1 < cu.length; s++) {
    const n = cu[s + 1] - cu[s];
    p += (n * (n + 1)) / 2;
  }
  return p;
}

/** Op cases at the shapes of gpt-small with T = 2048 tokens (one 2048-token sequence). */
function opCases(): OpCase[] {
  const T = 2048, H = 128, NH = 8, D = H / NH, V = 256;
  const cu = [0, T], pairs = attnPairs(cu);
  const tensors = (b: Backend, sizes: number[]) => sizes.map((n, i) => b.upload(randF32(n, 10 + i)));
  const freeAll = (b: Backend, ts: Tensor[]) => () => ts.forEach((t) => b.free(t));
  const mm = (name: string, m: number, n: number, k: number, transA: boolean, transB: boolean): OpCase => ({
    op: `matmul ${name} [${m}x${k}]·[${k}x${n}]${transA ? " Aᵀ" : ""}${transB ? " Bᵀ" : ""}`,
    flops: 2 * m * n * k,
    setup: (b) => {
      const ts = tensors(b, [m * k, k * n, m * n]);
      return { run: () => b.matmul(ts[0], ts[1], ts[2], m, n, k, { transA, transB }), free: freeAll(b, ts) };
    },
  });
  const attn = (b: Backend) => {
    const ts = tensors(b, [NH * T * D, NH * T * D, NH * T * D, NH * T * D, NH * T, NH * T * D]);
    const cuT = b.uploadInt(Int32Array.from(cu));
    const common = { q: ts[0], k: ts[1], v: ts[2], cuSeqlens: cuT, heads: NH, seqLen: T, headDim: D, scale: 0.25 };
    b.attentionForward({ ...common, out: ts[3], lse: ts[4] });
    return { ts, cuT, common };
  };
  return [
    mm("qkv", T, 3 * H, H, false, false),
    mm("fc", T, 4 * H, H, false, false),
    mm("logits", T, V, H, false, true),
    mm("dX", T, H, 4 * H, false, true),
    mm("dW", H, 4 * H, T, true, false),
    {
      op: `attention fwd ${NH}h S=${T} D=${D}`,
      flops: 4 * D * pairs * NH,
      setup: (b) => {
        const { ts, cuT, common } = attn(b);
        return {
          run: () => b.attentionForward({ ...common, out: ts[3], lse: ts[4] }),
          free: () => (freeAll(b, ts)(), b.free(cuT)),
        };
      },
    },
    {
      op: `attention bwd ${NH}h S=${T} D=${D}`,
      flops: 10 * D * pairs * NH,
      setup: (b) => {
        const { ts, cuT, common } = attn(b);
        const g = tensors(b, [NH * T * D, NH * T * D, NH * T * D]);
        return {
          run: () =>
            b.attentionBackward({ ...common, out: ts[3], lse: ts[4], dout: ts[5], dq: g[0], dk: g[1], dv: g[2] }),
          free: () => (freeAll(b, [...ts, ...g])(), b.free(cuT)),
        };
      },
    },
    {
      op: `layernorm fwd [${T}x${H}]`,
      flops: 0,
      setup: (b) => {
        const ts = tensors(b, [T * H, H, H, T * H, T, T]);
        const run = () =>
          b.layerNormForward({
            x: ts[0],
            gamma: ts[1],
            beta: ts[2],
            out: ts[3],
            mean: ts[4],
            rstd: ts[5],
            rows: T,
            cols: H,
            eps: 1e-5,
          });
        return { run, free: freeAll(b, ts) };
      },
    },
    {
      op: `layernorm bwd [${T}x${H}]`,
      flops: 0,
      setup: (b) => {
        const ts = tensors(b, [T * H, T * H, H, T, T, T * H, H, H]);
        const run = () =>
          b.layerNormBackward({
            dy: ts[0],
            x: ts[1],
            gamma: ts[2],
            mean: ts[3],
            rstd: ts[4],
            dx: ts[5],
            dgamma: ts[6],
            dbeta: ts[7],
            rows: T,
            cols: H,
            accumulateDx: false,
          });
        return { run, free: freeAll(b, ts) };
      },
    },
    {
      op: `gelu fwd+bwd [${T}x${4 * H}]`,
      flops: 0,
      setup: (b) => {
        const ts = tensors(b, [T * 4 * H, T * 4 * H, T * 4 * H]);
        return { run: () => (b.geluForward(ts[0], ts[1]), b.geluBackward(ts[0], ts[1], ts[2])), free: freeAll(b, ts) };
      },
    },
    {
      op: `cross-entropy fwd+bwd [${T}x${V}]`,
      flops: 0,
      setup: (b) => {
        const ts = tensors(b, [T * V, T, T * V]);
        const tg = b.uploadInt(Int32Array.from({ length: T }, (_, i) => (i * 7) % V));
        const a = { logits: ts[0], targets: tg, rows: T, vocab: V };
        return {
          run:
            () => (b.crossEntropyForward({ ...a, losses: ts[1] }),
              b.crossEntropyBackward({ ...a, dlogits: ts[2], scale: 1 / T })),
          free: () => (freeAll(b, ts)(), b.free(tg)),
        };
      },
    },
    {
      op: `embedding fwd+bwd [${T}x${H}]`,
      flops: 0,
      setup: (b) => {
        const ts = tensors(b, [V * H, T * H, T * H, V * H, T * H]);
        const tok = b.uploadInt(Int32Array.from({ length: T }, (_, i) => (i * 13) % V));
        const pos = b.uploadInt(Int32Array.from({ length: T }, (_, i) => i));
        const a = { tokens: tok, positions: pos, rows: T, hidden: H };
        return {
          run:
            () => (b.embeddingForward({ ...a, wte: ts[0], wpe: ts[1], out: ts[2] }),
              b.embeddingBackward({ ...a, dout: ts[2], dwte: ts[3], dwpe: ts[4] })),
          free: () => (freeAll(b, ts)(), b.free(tok), b.free(pos)),
        };
      },
    },
    {
      op: `adamw gpt-small (${paramLayout(MODEL_PRESETS["gpt-small"]).total} values)`,
      flops: 0,
      setup: (b) => {
        const n = paramLayout(MODEL_PRESETS["gpt-small"]).total;
        const ts = [b.upload(randF32(n, 1)), b.upload(randF32(n, 2)), b.alloc(n), b.alloc(n)];
        let step = 0;
        const o = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 1 };
        return { run: () => b.adamw(ts[0], ts[1], ts[2], ts[3], { ...o, step: ++step }), free: freeAll(b, ts) };
      },
    },
  ];
}

async function timeOp(b: Backend, c: OpCase): Promise<number> {
  const { run, free } = c.setup(b);
  try {
    run(); // warm-up (JIT, pipeline compilation)
    await b.sync();
    let reps = 0;
    const t0 = performance.now();
    do {
      run();
      reps++;
      if (reps % 4 === 0 || reps === 1) await b.sync();
    } while (performance.now() - t0 < 150 && reps < 200);
    await b.sync();
    return (performance.now() - t0) / reps;
  } finally {
    free();
  }
}

// ---------- training step ----------

function packedBatch(shape: ModelShape, length: number, seed: number) {
  const rng = new Prng(seed);
  const docs: Int32Array[] = [];
  for (let left = length; left > 0;) {
    const n = Math.min(left, shape.maxSeq);
    docs.push(Int32Array.from({ length: n }, () => rng.int(shape.vocab)));
    left -= n;
  }
  return packGroup(docs, 1, shape.maxSeq, shape.vocab);
}

/** One training step: forward + backward (one micro-batch, degree 1), global norm, AdamW. */
async function trainStep(b: Backend, shape: ModelShape, length: number, ctx: StepCtx): Promise<number> {
  const g = packedBatch(shape, length, length);
  const t0 = performance.now();
  b.zero(ctx.grads);
  await ctx.model.run(rankSlice(g, 0), SOLO_GROUP, { lossScale: 1 / g.targetCount });
  const norm = Math.sqrt(await b.sumSquares(ctx.grads));
  b.adamw(ctx.params, ctx.grads, ctx.m, ctx.v, {
    lr: 1e-4,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weightDecay: 0.1,
    step: ++ctx.step,
    gradScale: norm > 1 ? 1 / norm : 1,
  });
  await b.sync();
  return performance.now() - t0;
}

interface StepCtx {
  model: UlyssesGpt;
  params: Tensor;
  grads: Tensor;
  m: Tensor;
  v: Tensor;
  step: number;
}

function makeCtx(b: Backend, shape: ModelShape): StepCtx {
  const layout = paramLayout(shape);
  const params = b.upload(initParams(layout, 1)), grads = b.alloc(layout.total);
  return {
    model: new UlyssesGpt(b, layout, params, grads),
    params,
    grads,
    m: b.alloc(layout.total),
    v: b.alloc(layout.total),
    step: 0,
  };
}

function freeCtx(b: Backend, c: StepCtx): void {
  for (const t of [c.params, c.grads, c.m, c.v]) b.free(t);
}

/** A CPU backend whose (synchronous) ops add their wall time to `times`. */
function timedCpu(times: Map<string, number>): Backend {
  const inner = createCpuBackend();
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function" || typeof prop !== "string") return v;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const r = v.apply(target, args);
        times.set(prop, (times.get(prop) ?? 0) + performance.now() - t0);
        return r;
      };
    },
  });
}

// ---------- data plane ----------

async function dataPlane(rows: Row[], json: Record<string, unknown>): Promise<void> {
  const N = 4;
  const meshes = await Promise.all(
    Array.from(
      { length: N },
      (_, rank) => Mesh.listen({ rank, worldSize: N, secret: "bench-secret", bindHost: "127.0.0.1" }),
    ),
  );
  const out: unknown[] = [];
  try {
    const eps = meshes.map((m) => m.endpoint);
    await Promise.all(meshes.map((m) => m.connect(eps)));
    for (const d of [2, 4]) {
      for (const mib of [1, 16]) {
        const per = (mib * 1024 * 1024) / 4; // floats each rank sends in total
        const groups = Array.from({ length: N / d }, (_, g) => Array.from({ length: d }, (_, i) => g * d + i));
        const chunks = meshes.map(() => Array.from({ length: d }, () => new Float32Array(Math.floor(per / d))));
        let reps = 0;
        const t0 = performance.now();
        do {
          await Promise.all(groups.flatMap((g) => g.map((r) => meshes[r].allToAll(g, chunks[r], `a2a${reps}`))));
          reps++;
        } while (performance.now() - t0 < 400 && reps < 50);
        const ms = (performance.now() - t0) / reps;
        const sent = ((d - 1) / d) * mib * 1024 * 1024;
        const mbps = sent / (ms / 1000) / 1e6;
        rows.push({
          part: "data plane",
          backend: "tcp",
          case: `allToAll d=${d}, ${mib} MiB/rank`,
          ms: r2(ms),
          rate: r1(mbps),
          unit: "MB/s per rank",
        });
        out.push({ op: "allToAll", degree: d, mibPerRank: mib, ms, mbPerSecPerRank: mbps });
      }
    }
    const n = paramLayout(MODEL_PRESETS["gpt-small"]).total;
    const bufs = meshes.map((_, r) => randF32(n, r));
    let reps = 0;
    const t0 = performance.now();
    do {
      await Promise.all(meshes.map((m, r) => m.allReduce(bufs[r], `ar${reps}`)));
      reps++;
    } while (performance.now() - t0 < 400 && reps < 20);
    const ms = (performance.now() - t0) / reps;
    const sent = 2 * ((N - 1) / N) * n * 4;
    const mbps = sent / (ms / 1000) / 1e6;
    rows.push({
      part: "data plane",
      backend: "tcp",
      case: `allReduce ${N} ranks, gpt-small grads ${r1((n * 4) / 1e6)} MB`,
      ms: r2(ms),
      rate: r1(mbps),
      unit: "MB/s per rank",
    });
    out.push({ op: "allReduce", ranks: N, floats: n, ms, mbPerSecPerRank: mbps });
  } finally {
    meshes.forEach((m) => m.close());
  }
  json.dataPlane = out;
}

// ---------- main ----------

async function tryWebGpu(): Promise<Backend | undefined> {
  try {
    const { loadWebGpuBackend } = await import("../kernels/executor_main.ts");
    return await loadWebGpuBackend();
  } catch (e) {
    console.error(`bench/kernels: WebGPU skipped: ${(e as Error).message}`);
    return undefined;
  }
}

/** Runs the kernel benchmark (see the file header). */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const full = Deno.args.includes("--full") || Deno.env.get("FLEXSP_BENCH_FULL") === "1";
  const rows: Row[] = [];
  const json: Record<string, unknown> = { full };
  const t00 = performance.now();

  const scalar = scalarPeak();
  const mmPeak = matmulPeak();
  rows.push({
    part: "peak",
    backend: "cpu",
    case: "scalar FP (8 independent mul-adds, registers only)",
    rate: r2(scalar),
    unit: "GFLOP/s",
  });
  rows.push({
    part: "peak",
    backend: "cpu",
    case: `matmul peak (best blocked matmul, ${mmPeak.size}³)`,
    rate: r2(mmPeak.gflops),
    unit: "GFLOP/s",
  });
  json.peak = { scalarGflops: scalar, matmulGflops: mmPeak.gflops, matmulSize: mmPeak.size };

  const cpu = createCpuBackend();
  const webgpu = await tryWebGpu();
  const backends: Backend[] = webgpu ? [cpu, webgpu] : [cpu];
  const opsJson: unknown[] = [];
  for (const b of backends) {
    for (const c of opCases()) {
      const ms = await timeOp(b, c);
      const g = c.flops ? c.flops / (ms / 1000) / 1e9 : 0;
      rows.push({
        part: "op (gpt-small, 2048 tokens)",
        backend: b.kind,
        case: c.op,
        ms: r2(ms),
        rate: c.flops ? r2(g) : "",
        unit: c.flops ? "GFLOP/s" : "",
        pct_peak: c.flops ? `${r1((100 * g) / mmPeak.gflops)}%` : "",
      });
      opsJson.push({ backend: b.kind, op: c.op, ms, gflops: g });
    }
  }
  json.ops = opsJson;

  const lengths = [512, 1024, 2048, 4096, 8192, 16384];
  const stepsJson: unknown[] = [];
  for (const b of backends) {
    for (const name of ["gpt-tiny", "gpt-small"]) {
      const shape = MODEL_PRESETS[name];
      const ctx = makeCtx(b, shape);
      await trainStep(b, shape, 256, ctx); // warm-up
      for (const L of lengths) {
        if (!full && name === "gpt-small" && L > 2048) {
          rows.push({
            part: "train step",
            backend: b.kind,
            case: `${name} ${L} tokens`,
            ms: "",
            rate: "skipped (--full)",
            unit: "",
          });
          continue;
        }
        const ms = await trainStep(b, shape, L, ctx);
        const tps = L / (ms / 1000);
        const docs = Math.ceil(L / shape.maxSeq);
        rows.push({
          part: "train step",
          backend: b.kind,
          case: `${name} ${L} tokens (${docs}x${Math.min(L, shape.maxSeq)})`,
          ms: Math.round(ms),
          rate: Math.round(tps),
          unit: "tokens/s",
        });
        stepsJson.push({ backend: b.kind, model: name, tokens: L, ms, tokensPerSec: tps });
      }
      freeCtx(b, ctx);
    }
  }
  json.steps = stepsJson;

  // Where the time goes inside one CPU step (ops are synchronous on the CPU, so wrapping them is exact).
  const times = new Map<string, number>();
  const tb = timedCpu(times);
  const shape = MODEL_PRESETS["gpt-small"];
  const ctx = makeCtx(tb, shape);
  times.clear();
  const stepMs = await trainStep(tb, shape, 1024, ctx);
  const breakdown = [...times.entries()].filter(([k]) => !["sync", "download", "view"].includes(k))
    .sort((a, b) => b[1] - a[1]);
  for (const [op, ms] of breakdown.slice(0, 10)) {
    rows.push({
      part: "cpu step breakdown (gpt-small, 1024)",
      backend: "cpu",
      case: op,
      ms: Math.round(ms),
      rate: `${r1((100 * ms) / stepMs)}%`,
      unit: "of step",
    });
  }
  json.cpuStepBreakdown = { stepMs, ops: Object.fromEntries(breakdown) };

  await dataPlane(rows, json);
  webgpu?.dispose();
  json.seconds = (performance.now() - t00) / 1000;
  return { title: "Kernels: CPU reference / WebGPU executors and the TCP data plane", rows, json };
}

if (import.meta.main) {
  const { printSection } = await import("./report.ts");
  const r = await bench();
  printSection(r);
  console.log(`\n(${r1((r.json as { seconds: number }).seconds)} s)`);
}
