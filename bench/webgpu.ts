// WebGPU section of the kernel benchmark: per-op times (and GFLOP/s for matmul and attention) on the WebGPU backend
// against the CPU reference backend, and tokens/s of a gpt-tiny training step (forward + backward) at packed lengths
// 512..4K. GPU op times are amortised over several dispatches in one submission, minus the measured latency of an
// empty submit-and-wait (about 10 ms on Deno + llvmpipe). Runnable alone: `deno run -A bench/webgpu.ts [--quick]`
// (`--quick`: fewer shapes, steps at 512 and 1K only). One step (2K, or 512 with --quick) is also profiled with
// timestamp queries: device ms per kernel, the top ones as rows and all of them in the JSON.

import type { Backend, Tensor } from "../kernels/backend.ts";
import { createCpuBackend } from "../kernels/cpu/backend.ts";
import { SOLO_GROUP } from "../kernels/group_comm.ts";
import { initParams, paramLayout, Prng } from "../kernels/model.ts";
import { packGroup, rankSlice } from "../kernels/packing.ts";
import { UlyssesGpt } from "../kernels/ulysses_model.ts";
import { createWebGpuBackend, type WebGpuBackend } from "../kernels/webgpu/backend.ts";
import { requestGpuAdapter } from "../kernels/webgpu/device.ts";
import { MODEL_PRESETS } from "../core/model_shape.ts";

type Row = Record<string, string | number>;

interface OpCase {
  op: string;
  shape: string;
  /** Floating-point operations of one call (0: report time only). */
  flops: number;
  /** Allocates inputs on `b` and returns a closure that enqueues one call. */
  setup: (b: Backend) => () => void;
}

function rand(n: number, seed: number): Float32Array {
  const r = new Prng(seed);
  return Float32Array.from({ length: n }, () => r.uniform() * 2 - 1);
}

/** Causal pairs (i, j <= i) of a packed stream with the given sequence lengths. */
function causalPairs(lengths: number[]): number {
  return lengths.reduce((s, n) => s + (n * (n + 1)) / 2, 0);
}

function matmulCase(m: number, n: number, k: number, transA: boolean, transB: boolean, what: string): OpCase {
  return {
    op: `matmul ${transA ? "Aᵀ" : "A"}·${transB ? "Bᵀ" : "B"}`,
    shape: `${m}x${n}x${k} (${what})`,
    flops: 2 * m * n * k,
    setup: (b) => {
      const a = b.upload(rand(m * k, 1)), bb = b.upload(rand(k * n, 2)), c = b.alloc(m * n);
      return () => b.matmul(a, bb, c, m, n, k, { transA, transB });
    },
  };
}

function attentionCases(heads: number, lengths: number[], headDim: number): OpCase[] {
  const S = lengths.reduce((a, b) => a + b, 0), n = heads * S * headDim;
  const cu = Int32Array.from([0, ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((a, b) => a + b, 0))]);
  const pairs = causalPairs(lengths) * heads;
  const shape = `H=${heads} S=${S} (${lengths.length}x${lengths[0]}) D=${headDim}`;
  const make = (b: Backend) => {
    const t = (seed: number) => b.upload(rand(n, seed));
    const q = t(3), k = t(4), v = t(5), dout = t(6);
    const out = b.alloc(n), lse = b.alloc(heads * S), dq = b.alloc(n), dk = b.alloc(n), dv = b.alloc(n);
    const args = { q, k, v, cuSeqlens: b.uploadInt(cu), heads, seqLen: S, headDim, scale: 1 / Math.sqrt(headDim) };
    b.attentionForward({ ...args, out, lse });
    return { args, out, lse, dout, dq, dk, dv };
  };
  return [
    {
      op: "attention fwd",
      shape,
      flops: 4 * pairs * headDim, // q·k and p·v
      setup: (b) => {
        const s = make(b);
        return () => b.attentionForward({ ...s.args, out: s.out, lse: s.lse });
      },
    },
    {
      op: "attention bwd",
      shape,
      flops: 10 * pairs * headDim, // score recomputation, dP, dQ, dK, dV (bench/kernels.ts convention)
      setup: (b) => {
        const s = make(b);
        return () =>
          b.attentionBackward({ ...s.args, out: s.out, lse: s.lse, dout: s.dout, dq: s.dq, dk: s.dk, dv: s.dv });
      },
    },
  ];
}

function otherCases(rows: number, hidden: number, vocab: number): OpCase[] {
  const shape = `${rows}x${hidden}`;
  return [
    {
      op: "layer norm fwd+bwd",
      shape,
      flops: 0,
      setup: (b) => {
        const x = b.upload(rand(rows * hidden, 7)), g = b.upload(rand(hidden, 8)), be = b.alloc(hidden);
        const out = b.alloc(rows * hidden), mean = b.alloc(rows), rstd = b.alloc(rows), dx = b.alloc(rows * hidden);
        const dg = b.alloc(hidden), db = b.alloc(hidden);
        return () => {
          b.layerNormForward({ x, gamma: g, beta: be, out, mean, rstd, rows, cols: hidden, eps: 1e-5 });
          b.layerNormBackward({
            dy: out,
            x,
            gamma: g,
            mean,
            rstd,
            dx,
            dgamma: dg,
            dbeta: db,
            rows,
            cols: hidden,
            accumulateDx: false,
          });
        };
      },
    },
    {
      op: "gelu fwd+bwd",
      shape: `${rows}x${4 * hidden}`,
      flops: 0,
      setup: (b) => {
        const n = rows * 4 * hidden;
        const x = b.upload(rand(n, 9)), y = b.alloc(n), dx = b.alloc(n);
        return () => {
          b.geluForward(x, y);
          b.geluBackward(x, y, dx);
        };
      },
    },
    {
      op: "cross-entropy fwd+bwd",
      shape: `${rows}x${vocab}`,
      flops: 0,
      setup: (b) => {
        const logits = b.upload(rand(rows * vocab, 10)), losses = b.alloc(rows), dl = b.alloc(rows * vocab);
        const targets = b.uploadInt(Int32Array.from({ length: rows }, (_, i) => (i * 7) % vocab));
        return () => {
          b.crossEntropyForward({ logits, targets, losses, rows, vocab });
          b.crossEntropyBackward({ logits, targets, dlogits: dl, rows, vocab, scale: 1 / rows });
        };
      },
    },
  ];
}

/** Milliseconds of an empty submit-and-wait round trip (median of 5). */
async function syncLatency(b: WebGpuBackend): Promise<number> {
  const t: number[] = [];
  const x = b.alloc(64);
  for (let i = 0; i < 5; i++) {
    b.zero(x);
    const t0 = performance.now();
    await b.sync();
    t.push(performance.now() - t0);
  }
  b.free(x);
  return t.sort((a, c) => a - c)[2];
}

/** Mean ms of one call: `reps` calls enqueued back to back, best of `trials`, minus `latency` per wait. */
async function timeOp(b: Backend, call: () => void, reps: number, trials: number, latency: number): Promise<number> {
  call();
  await b.sync();
  let best = Infinity;
  for (let t = 0; t < trials; t++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) call();
    await b.sync();
    best = Math.min(best, performance.now() - t0);
  }
  return Math.max(0, best - latency) / reps;
}

const fmt = (x: number, d = 1) => Number(x.toFixed(d));

async function opRows(gpu: WebGpuBackend, latency: number, quick: boolean): Promise<Row[]> {
  const S = 2048, H = 64, V = 256;
  const cases: OpCase[] = quick
    ? [matmulCase(S, 4 * H, H, false, false, "gpt-tiny MLP up"), ...attentionCases(4, [1024, 1024], 16)]
    : [
      matmulCase(512, 512, 512, false, false, "square"),
      matmulCase(S, 4 * H, H, false, false, "gpt-tiny MLP up"),
      matmulCase(S, H, 4 * H, false, true, "gpt-tiny dX of MLP up"),
      matmulCase(H, 4 * H, S, true, false, "gpt-tiny dW of MLP up"),
      matmulCase(S, V, H, false, true, "gpt-tiny logits"),
      ...attentionCases(4, [1024, 1024], 16),
      ...attentionCases(4, [1024], 64),
      ...otherCases(S, H, V),
    ];
  const rows: Row[] = [];
  for (const c of cases) {
    const cpu = createCpuBackend();
    const gpuMs = await timeOp(gpu, c.setup(gpu), 5, 3, latency);
    const cpuMs = await timeOp(cpu, c.setup(cpu), 1, 2, 0);
    const row: Row = { op: c.op, shape: c.shape, webgpu_ms: fmt(gpuMs, 2), cpu_ms: fmt(cpuMs, 2) };
    if (c.flops > 0) {
      row.webgpu_gflops = fmt(c.flops / gpuMs / 1e6, 2);
      row.cpu_gflops = fmt(c.flops / cpuMs / 1e6, 2);
    }
    row.speedup = fmt(cpuMs / gpuMs, 2);
    rows.push(row);
    await gpu.sync();
  }
  return rows;
}

/** Sequences (lengths <= maxSeq, deterministic) packing exactly `total` tokens. */
function packedBatch(total: number, maxSeq: number, vocab: number, seed: number): Int32Array[] {
  const rng = new Prng(seed);
  const seqs: Int32Array[] = [];
  let left = total;
  while (left > 0) {
    const n = Math.min(left, 64 + rng.int(maxSeq - 63));
    seqs.push(Int32Array.from({ length: n }, () => rng.int(vocab)));
    left -= n;
  }
  return seqs;
}

async function stepMs(
  b: Backend,
  lengths: number,
  reps: number,
  profile?: (run: () => Promise<unknown>) => Promise<void>,
): Promise<{ ms: number; loss: number }> {
  const shape = MODEL_PRESETS["gpt-tiny"];
  const layout = paramLayout(shape);
  const params = b.upload(initParams(layout, 1)), grads = b.alloc(layout.total);
  const model = new UlyssesGpt(b, layout, params, grads);
  const group = packGroup(packedBatch(lengths, shape.maxSeq, shape.vocab, lengths), 1, shape.maxSeq, shape.vocab);
  const slice = rankSlice(group, 0);
  const run = () => model.run(slice, SOLO_GROUP, { lossScale: 1 / group.targetCount });
  let r = await run();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    r = await run();
    best = Math.min(best, performance.now() - t0);
  }
  if (profile) await profile(run);
  const free = (t: Tensor) => b.free(t);
  free(params);
  free(grads);
  return { ms: best, loss: r.lossSum / r.targets };
}

/** Device time per kernel of one profiled step (timestamp queries), largest first. */
type Breakdown = { kernel: string; dispatches: number; ms: number }[];

async function stepRows(gpu: WebGpuBackend, quick: boolean): Promise<{ rows: Row[]; breakdown: Breakdown }> {
  const rows: Row[] = [];
  let breakdown: Breakdown = [];
  const lengths = quick ? [512, 1024] : [512, 1024, 2048, 4096];
  const profiled = lengths[lengths.length - 2];
  for (const S of lengths) {
    const profile = S !== profiled ? undefined : async (run: () => Promise<unknown>) => {
      if (!gpu.ctx.startProfiling()) return;
      await run();
      const t = await gpu.ctx.profile();
      await gpu.ctx.stopProfiling();
      breakdown = [...t].map(([kernel, v]) => ({ kernel, dispatches: v.count, ms: fmt(v.ms, 2) }))
        .sort((a, c) => c.ms - a.ms);
    };
    const g = await stepMs(gpu, S, 3, profile);
    const c = await stepMs(createCpuBackend(), S, S >= 2048 ? 1 : 2);
    rows.push({
      op: "gpt-tiny train step (fwd+bwd)",
      shape: `packed ${S} tokens`,
      webgpu_ms: fmt(g.ms),
      cpu_ms: fmt(c.ms),
      webgpu_tok_s: Math.round((S / g.ms) * 1000),
      cpu_tok_s: Math.round((S / c.ms) * 1000),
      speedup: fmt(c.ms / g.ms, 2),
      loss_gap: Number(Math.abs(g.loss - c.loss).toExponential(1)),
    });
  }
  if (breakdown.length > 0) {
    const total = breakdown.reduce((a, r) => a + r.ms, 0);
    for (const r of breakdown.slice(0, 8)) {
      rows.push({
        op: `  step ${profiled} breakdown: ${r.kernel}`,
        shape: `${r.dispatches} dispatches`,
        webgpu_ms: r.ms,
        share: `${Math.round((100 * r.ms) / total)}%`,
      });
    }
  }
  return { rows, breakdown };
}

/** Runs the WebGPU benchmark; without an adapter it returns a single row saying so. */
export async function bench(
  quick = Deno.args.includes("--quick"),
): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const title = "WebGPU kernels vs CPU reference backend";
  if (!(await requestGpuAdapter())) {
    return { title, rows: [{ op: "skipped", shape: "no WebGPU adapter" }], json: { skipped: "no WebGPU adapter" } };
  }
  const gpu = await createWebGpuBackend({ timestamps: true });
  try {
    const latency = await syncLatency(gpu);
    const ops = await opRows(gpu, latency, quick);
    const steps = await stepRows(gpu, quick);
    const rows = [...ops, ...steps.rows];
    return {
      title: `${title} (${gpu.device}; sync latency ${latency.toFixed(1)} ms subtracted from op times)`,
      rows,
      json: { device: gpu.device, syncLatencyMs: latency, quick, rows, stepBreakdown: steps.breakdown },
    };
  } finally {
    gpu.dispose();
  }
}

if (import.meta.main) {
  const r = await bench();
  console.log(r.title);
  console.table(r.rows);
}
