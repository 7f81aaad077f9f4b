// Behaviour of the WebGPU backend beyond op values: one queue submission per phase, bit-identical results on
// repeated runs, device errors surfaced as exceptions, misuse (freed tensors, bad views, bad ids) rejected with
// clear messages, buffer reuse returning zeroed memory, and the no-adapter error message.

import type { Backend } from "../../kernels/backend.ts";
import { openGpuDevice, WebGpuUnavailableError } from "../../kernels/webgpu/device.ts";
import type { GpuTensor } from "../../kernels/webgpu/tensors.ts";
import { assert, assertIdentical, gpuTest, randomFloats, randomInts } from "./gpu_test_util.ts";

async function rejects(fn: () => unknown, pattern: RegExp, what: string): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert(pattern.test((e as Error).message), `${what}: wrong message: ${(e as Error).message}`);
    return;
  }
  throw new Error(`${what}: did not throw`);
}

gpuTest("a phase of many ops is one queue submission; only download/sync/sumSquares submit", async (b) => {
  const n = 4096;
  const x = b.upload(randomFloats(n, 1)), y = b.alloc(n), z = b.alloc(n);
  const before = b.ctx.submissions;
  for (let i = 0; i < 20; i++) {
    b.geluForward(x, y);
    b.add(x, y, z);
    b.matmul(z, y, x, 64, 64, 64, { accumulate: false });
  }
  assert(b.ctx.submissions === before, `ops submitted early (${b.ctx.submissions - before})`);
  await b.download(x);
  assert(b.ctx.submissions === before + 1, `expected one submission, got ${b.ctx.submissions - before}`);
});

gpuTest("Aᵀ·B with a small output and a long K is split into partial products (more workgroups)", async (b) => {
  const m = 16, n = 24, k = 1100;
  const a = b.upload(randomFloats(k * m, 1)), bb = b.upload(randomFloats(k * n, 2)), c = b.alloc(m * n);
  const before = b.ctx.dispatches;
  b.matmul(a, bb, c, m, n, k, { transA: true });
  assert(b.ctx.dispatches - before >= 3, `expected split-K dispatches, got ${b.ctx.dispatches - before}`);
  const once = await b.download(c);
  b.matmul(a, bb, c, m, n, k, { transA: true });
  assertIdentical(once, await b.download(c), "split-K result");
});

gpuTest("more than 65535 workgroups: element-parallel ops use a 2-D grid and reach every element", async (b) => {
  const n = 65535 * 64 + 4097; // one workgroup more than a 1-D dispatch allows, and a partial one
  const [gx, gy] = b.ctx.grid(Math.ceil(n / 64));
  assert(gy > 1 && gx <= 65535 && gx * gy * 64 >= n, `grid ${gx}x${gy}`);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = i % 1000;
  const a = b.upload(x), out = b.alloc(n);
  b.add(a, a, out);
  const got = await b.download(out);
  for (let i = 0; i < n; i++) {
    if (got[i] !== 2 * (i % 1000)) throw new Error(`element ${i}: ${got[i]}, want ${2 * (i % 1000)}`);
  }
});

/** Runs the reduction-heavy ops once and returns their outputs. */
async function reductions(b: Backend): Promise<Float32Array[]> {
  const rows = 200, cols = 48, heads = 2, S = 100, D = 8, n = heads * S * D;
  const dy = b.upload(randomFloats(rows * cols, 3)), x = b.upload(randomFloats(rows * cols, 4));
  const db = b.alloc(cols), dg = b.alloc(cols), dbt = b.alloc(cols), dx = b.alloc(rows * cols);
  b.biasGrad(dy, db, rows, cols);
  const mean = b.alloc(rows), rstd = b.alloc(rows), out = b.alloc(rows * cols), gamma = b.upload(randomFloats(cols, 5));
  b.layerNormForward({ x, gamma, beta: db, out, mean, rstd, rows, cols, eps: 1e-5 });
  b.layerNormBackward({ dy, x, gamma, mean, rstd, dx, dgamma: dg, dbeta: dbt, rows, cols, accumulateDx: false });
  const tok = b.uploadInt(randomInts(rows, 7, 6)), pos = b.uploadInt(randomInts(rows, 30, 7));
  const dwte = b.alloc(7 * cols), dwpe = b.alloc(30 * cols);
  b.embeddingBackward({ dout: dy, tokens: tok, positions: pos, dwte, dwpe, rows, hidden: cols });
  const q = b.upload(randomFloats(n, 8)), k = b.upload(randomFloats(n, 9)), v = b.upload(randomFloats(n, 10));
  const cu = b.uploadInt(new Int32Array([0, 60, 100]));
  const o = b.alloc(n), lse = b.alloc(heads * S), dq = b.alloc(n), dk = b.alloc(n), dv = b.alloc(n);
  const args = { q, k, v, cuSeqlens: cu, heads, seqLen: S, headDim: D, scale: 0.3 };
  b.attentionForward({ ...args, out: o, lse });
  b.attentionBackward({ ...args, out: o, lse, dout: b.upload(randomFloats(n, 11)), dq, dk, dv });
  const ss = await b.sumSquares(dx);
  return [
    ...await Promise.all([db, dg, dbt, dx, dwte, dwpe, o, lse, dq, dk, dv].map((t) => b.download(t))),
    new Float32Array([ss]),
  ];
}

gpuTest("reductions and attention are bit-identical across runs", async (b) => {
  const first = await reductions(b);
  const second = await reductions(b);
  first.forEach((a, i) => assertIdentical(a, second[i], `output ${i}`));
});

gpuTest("device validation errors surface as exceptions at the next wait", async (b) => {
  b.ctx.dispatch(
    { key: "broken", code: "this is not wgsl", bindings: [] },
    null,
    [],
    [1],
  );
  await rejects(() => b.sync(), /WebGPU error/, "broken shader");
  await b.sync(); // the error is reported once
});

gpuTest("misuse is rejected with clear messages", async (b) => {
  const t = b.alloc(256);
  await rejects(() => b.view(t, 10, 20), /multiple of 64/, "misaligned view");
  await rejects(() => b.view(t, 192, 100), /has 256 elements, needs 292/, "view past the end");
  await rejects(() => b.matmul(t, t, b.alloc(10), 4, 4, 4), /matmul C has 10 elements, needs 16/, "short output");
  const tok = b.uploadInt(new Int32Array([0, 5])), pos = b.uploadInt(new Int32Array([0, 1]));
  await rejects(
    () =>
      b.embeddingForward({
        wte: b.alloc(5 * 4),
        wpe: b.alloc(8),
        tokens: tok,
        positions: pos,
        out: b.alloc(8),
        rows: 2,
        hidden: 4,
      }),
    /tokens must lie in \[0, 5\), got values from 0 to 5/,
    "token out of range",
  );
  const cu = b.uploadInt(new Int32Array([0, 3]));
  await rejects(
    () =>
      b.attentionForward({
        q: t,
        k: t,
        v: t,
        out: b.alloc(256),
        lse: b.alloc(64),
        cuSeqlens: cu,
        heads: 1,
        seqLen: 4,
        headDim: 4,
        scale: 1,
      }),
    /cuSeqlens must run from 0 to seqLen 4/,
    "bad cuSeqlens",
  );
  b.free(t);
  await rejects(() => b.download(t), /was freed/, "freed tensor");
  const parent = b.alloc(128);
  const view = b.view(parent, 64, 64);
  b.free(parent);
  await rejects(() => b.zero(view), /was freed/, "view of a freed tensor");
});

gpuTest("freed buffers are reused and come back zero-filled; views alias their parent", async (b) => {
  const a = b.upload(randomFloats(1000, 12));
  await b.sync();
  b.free(a);
  const c = b.alloc(1000); // same size class: reuses a's buffer
  assert((c as GpuTensor).buffer === (a as GpuTensor).buffer, "the freed buffer was not reused");
  const host = await b.download(c);
  assert(host.every((x) => x === 0), "reused buffer was not zeroed");
  const v = b.view(c, 128, 10);
  b.write(v, new Float32Array([1, 2, 3]));
  const back = await b.download(c);
  assert(back[128] === 1 && back[130] === 3 && back[127] === 0, "view did not alias its parent");
});

Deno.test({
  name: "no adapter: openGpuDevice throws WebGpuUnavailableError naming the fix",
  ignore: !navigator.gpu,
  fn: async () => {
    const gpu = navigator.gpu;
    const original = gpu.requestAdapter;
    Object.defineProperty(gpu, "requestAdapter", { value: () => Promise.resolve(null), configurable: true });
    try {
      await openGpuDevice();
      throw new Error("did not throw");
    } catch (e) {
      assert(e instanceof WebGpuUnavailableError, `wrong error type: ${e}`);
      assert(/no WebGPU adapter found.*mesa-vulkan-drivers/.test(e.message), `message: ${e.message}`);
    } finally {
      Object.defineProperty(gpu, "requestAdapter", { value: original, configurable: true, writable: true });
    }
  },
});
