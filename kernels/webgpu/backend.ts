// The WebGPU backend: implements `Backend` (../backend.ts) with the WGSL kernels in ./shaders, recording every op
// into one command encoder that is submitted only when the host waits (download, sumSquares, sync), so a whole
// forward or backward phase goes to the device as a single submission. Tensors stay on the device; freed buffers
// are pooled by size and reused (zero-filled again) by later allocations.

import type {
  AdamWOptions,
  AttentionBackwardArgs,
  AttentionForwardArgs,
  Backend,
  CrossEntropyArgs,
  EmbeddingArgs,
  HeadLayoutArgs,
  IntTensor,
  LayerNormBackwardArgs,
  LayerNormForwardArgs,
  MatmulOptions,
  Tensor,
} from "../backend.ts";
import { VIEW_ALIGN } from "../backend.ts";
import { type BufferRange, GpuContext, type KernelSpec, type UniformValue } from "./context.ts";
import { openGpuDevice } from "./device.ts";
import { buildCsrIndex, buildSeqBounds } from "./host_index.ts";
import { encodeMatmul } from "./ops/matmul.ts";
import { adamwKernel } from "./shaders/adamw.ts";
import {
  attentionBackwardDkvKernel,
  attentionBackwardDqKernel,
  attentionForwardKernel,
  attentionRowsPerThread,
} from "./shaders/attention.ts";
import { WG } from "./shaders/common.ts";
import { CROSS_ENTROPY_GRAD, CROSS_ENTROPY_LSE } from "./shaders/cross_entropy.ts";
import { addBiasKernel, addKernel, copyKernel, geluBackwardKernel, geluForwardKernel } from "./shaders/elementwise.ts";
import { EMBEDDING_BACKWARD, EMBEDDING_FORWARD } from "./shaders/embedding.ts";
import { fromHeadMajorKernel, toHeadMajorKernel } from "./shaders/head_layout.ts";
import { LAYERNORM_BACKWARD_DX, LAYERNORM_BACKWARD_PARAMS, LAYERNORM_FORWARD } from "./shaders/layernorm.ts";
import { COLSUM_FINAL, COLSUM_PARTIAL, SUM_FINAL, SUMSQ_PARTIAL } from "./shaders/reduce.ts";
import { GpuIntTensor, GpuTensor } from "./tensors.ts";

/** Bytes of freed buffers kept for reuse before further frees are destroyed. */
const POOL_LIMIT_BYTES = 256 * 1024 * 1024;
/** Parallel partial sums of {@link WebGpuBackend.sumSquares}. */
const SUMSQ_PARTS = 4096;

/** Minimum element counts of column-sum chunking: at least this many rows per chunk, up to ~this many threads. */
const COLSUM_MIN_ROWS = 16;
const COLSUM_TARGET_THREADS = 8192;

/** Options of {@link createWebGpuBackend}. */
export interface WebGpuBackendOptions {
  /**
   * Treat storage bindings as limited to this many bytes (default: the device's maxStorageBufferBindingSize).
   * Tests lower it to exercise the chunked paths that large tensors take.
   */
  maxBindingBytes?: number;
  /** Request the "timestamp-query" feature so that `ctx.startProfiling()` works (benchmarks). */
  timestamps?: boolean;
}

/** The WebGPU implementation of {@link Backend}. */
export class WebGpuBackend implements Backend {
  readonly kind = "webgpu" as const;
  readonly device: string;
  /** The command recorder (exposed for benchmarks and tests: submission counts, sync). */
  readonly ctx: GpuContext;

  private readonly pool = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;
  private resultBuf: GPUBuffer | null = null;
  private disposed = false;

  /** Wraps an opened device; use {@link createWebGpuBackend} to open one. */
  constructor(device: GPUDevice, description: string, options: WebGpuBackendOptions = {}) {
    this.ctx = new GpuContext(device, { maxBindingBytes: options.maxBindingBytes });
    this.device = `webgpu: ${description}`;
  }

  // ---------- memory ----------

  alloc(length: number): Tensor {
    this.live();
    if (!Number.isInteger(length) || length < 0) throw new Error(`webgpu backend: bad tensor length ${length}`);
    const bytes = roundBytes(length * 4);
    const pooled = this.pool.get(bytes)?.pop();
    if (pooled) {
      this.pooledBytes -= bytes;
      this.ctx.clear(pooled, 0, bytes);
      return new GpuTensor(pooled, 0, length, null);
    }
    return new GpuTensor(this.ctx.createBuffer(bytes), 0, length, null);
  }

  upload(data: Float32Array): Tensor {
    const t = this.allocUncleared(data.length);
    this.ctx.write(t.buffer, 0, data);
    return t;
  }

  uploadInt(data: Int32Array): IntTensor {
    this.live();
    const host = data.slice();
    const buffer = this.ctx.createBuffer(roundBytes(host.length * 4));
    this.ctx.write(buffer, 0, host);
    return new GpuIntTensor(buffer, host);
  }

  write(dst: Tensor, data: Float32Array, offset = 0): void {
    const d = this.f(dst, offset + data.length, "write target");
    this.ctx.write(d.buffer, d.byteOffset + offset * 4, data);
  }

  async download(src: Tensor): Promise<Float32Array> {
    const s = this.f(src, 0, "download source");
    if (s.length === 0) return new Float32Array(0);
    return new Float32Array(await this.ctx.read(s.buffer, s.byteOffset, s.length * 4));
  }

  view(parent: Tensor, offset: number, length: number): Tensor {
    const p = this.f(parent, offset + length, "view parent");
    if (!Number.isInteger(offset) || offset < 0 || offset % VIEW_ALIGN !== 0) {
      throw new Error(`webgpu backend: view offset ${offset} not a multiple of ${VIEW_ALIGN}`);
    }
    return new GpuTensor(p.buffer, p.byteOffset + offset * 4, length, p.parent ?? p);
  }

  free(t: Tensor | IntTensor): void {
    if (t instanceof GpuTensor) {
      if (t.parent || t.freed) return;
      t.freed = true;
      this.release(t.buffer);
    } else if (t instanceof GpuIntTensor) {
      if (t.freed) return;
      t.freed = true;
      this.ctx.destroyLater(t.buffer);
      for (const d of t.derived.values()) this.ctx.destroyLater(d.buffer);
      t.derived.clear();
    }
  }

  async sync(): Promise<void> {
    this.live();
    await this.ctx.sync();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const list of this.pool.values()) for (const b of list) this.ctx.destroyLater(b);
    this.pool.clear();
    this.ctx.destroy();
  }

  // ---------- elementwise and data movement ----------

  zero(t: Tensor): void {
    const x = this.f(t, 0, "zero target");
    if (x.length > 0) this.ctx.clear(x.buffer, x.byteOffset, x.length * 4);
  }

  copy(src: Tensor, dst: Tensor): void {
    const s = this.f(src, 0, "copy source");
    const d = this.f(dst, s.length, "copy target");
    if (s.length === 0) return;
    if (s.buffer !== d.buffer) this.ctx.copy(s.buffer, s.byteOffset, d.buffer, d.byteOffset, s.length * 4);
    else this.linear(copyKernel, s.length, (o, n, u) => [[u], [sub(s, o, n), sub(d, o, n)]]);
  }

  add(a: Tensor, b: Tensor, out: Tensor): void {
    const n = out.length;
    const A = this.f(a, n, "add a"), B = this.f(b, n, "add b"), O = this.f(out, n, "add out");
    this.linear(addKernel, n, (o, c, u) => [[u], [sub(A, o, c), sub(B, o, c), sub(O, o, c)]]);
  }

  // ---------- dense ----------

  matmul(a: Tensor, b: Tensor, c: Tensor, m: number, n: number, k: number, options: MatmulOptions = {}): void {
    const A = this.f(a, m * k, "matmul A"), B = this.f(b, k * n, "matmul B"), C = this.f(c, m * n, "matmul C");
    encodeMatmul(this.ctx, A.range(m * k), B.range(k * n), C.range(m * n), m, n, k, {
      transA: options.transA,
      transB: options.transB,
      accumulate: options.accumulate,
    });
  }

  addBias(x: Tensor, bias: Tensor, rows: number, cols: number): void {
    const X = this.f(x, rows * cols, "addBias x"), bs = this.f(bias, cols, "bias");
    const v = cols % 4 === 0 ? 4 : 1;
    this.linear(addBiasKernel, rows * cols, (o, n, u) => [[u, cols / v], [bs.range(cols), sub(X, o, n)]], cols, v);
  }

  biasGrad(dy: Tensor, dbias: Tensor, rows: number, cols: number): void {
    const D = this.f(dy, rows * cols, "biasGrad dy"), db = this.f(dbias, cols, "dbias");
    if (rows === 0 || cols === 0) return;
    const { rowsPer, chunks } = colsumChunks(rows, cols);
    const part = this.scratch(chunks * cols);
    this.run(COLSUM_PARTIAL, [rows, cols, rowsPer, chunks], [D.range(rows * cols), part], chunks * cols);
    this.run(COLSUM_FINAL, [cols, chunks, cols, 0], [part, db.range(cols)], cols);
  }

  // ---------- normalisation and activation ----------

  layerNormForward(a: LayerNormForwardArgs): void {
    const n = a.rows * a.cols;
    this.run(LAYERNORM_FORWARD, [a.rows, a.cols, { f: a.eps }], [
      this.f(a.x, n, "ln x").range(n),
      this.f(a.gamma, a.cols, "ln gamma").range(a.cols),
      this.f(a.beta, a.cols, "ln beta").range(a.cols),
      this.f(a.out, n, "ln out").range(n),
      this.f(a.mean, a.rows, "ln mean").range(a.rows),
      this.f(a.rstd, a.rows, "ln rstd").range(a.rows),
    ], a.rows);
  }

  layerNormBackward(a: LayerNormBackwardArgs): void {
    const { rows, cols } = a;
    const n = rows * cols;
    const dy = this.f(a.dy, n, "ln dy").range(n), x = this.f(a.x, n, "ln x").range(n);
    const mean = this.f(a.mean, rows, "ln mean").range(rows), rstd = this.f(a.rstd, rows, "ln rstd").range(rows);
    const gamma = this.f(a.gamma, cols, "ln gamma").range(cols);
    const dg = this.f(a.dgamma, cols, "ln dgamma").range(cols), dbt = this.f(a.dbeta, cols, "ln dbeta").range(cols);
    const dx = this.f(a.dx, n, "ln dx").range(n);
    if (rows === 0 || cols === 0) return;
    this.run(LAYERNORM_BACKWARD_DX, [rows, cols, a.accumulateDx ? 1 : 0], [dy, x, gamma, mean, rstd, dx], rows);
    const { rowsPer, chunks } = colsumChunks(rows, cols);
    const part = this.scratch(chunks * 2 * cols);
    this.run(LAYERNORM_BACKWARD_PARAMS, [rows, cols, rowsPer, chunks], [dy, x, mean, rstd, part], chunks * cols);
    this.run(COLSUM_FINAL, [cols, chunks, 2 * cols, 0], [part, dg], cols);
    this.run(COLSUM_FINAL, [cols, chunks, 2 * cols, cols], [part, dbt], cols);
  }

  geluForward(x: Tensor, out: Tensor): void {
    const n = x.length;
    const X = this.f(x, n, "gelu x"), O = this.f(out, n, "gelu out");
    this.linear(geluForwardKernel, n, (o, c, u) => [[u], [sub(X, o, c), sub(O, o, c)]]);
  }

  geluBackward(x: Tensor, dy: Tensor, dx: Tensor): void {
    const n = x.length;
    const X = this.f(x, n, "gelu x"), DY = this.f(dy, n, "gelu dy"), DX = this.f(dx, n, "gelu dx");
    this.linear(geluBackwardKernel, n, (o, c, u) => [[u], [sub(X, o, c), sub(DY, o, c), sub(DX, o, c)]]);
  }

  // ---------- embeddings ----------

  embeddingForward(a: EmbeddingArgs & { wte: Tensor; wpe: Tensor; out: Tensor }): void {
    const { rows, hidden } = a;
    const wte = this.f(a.wte, 0, "wte"), wpe = this.f(a.wpe, 0, "wpe");
    const tok = this.ints(a.tokens, rows, "tokens"), pos = this.ints(a.positions, rows, "positions");
    checkIds(tok, rows, Math.floor(wte.length / hidden), "tokens");
    checkIds(pos, rows, Math.floor(wpe.length / hidden), "positions");
    this.run(EMBEDDING_FORWARD, [rows, hidden], [
      tok.range(rows),
      pos.range(rows),
      wte.range(),
      wpe.range(),
      this.f(a.out, rows * hidden, "embedding out").range(rows * hidden),
    ], rows * hidden);
  }

  embeddingBackward(a: EmbeddingArgs & { dout: Tensor; dwte: Tensor; dwpe: Tensor }): void {
    const { rows, hidden } = a;
    const dout = this.f(a.dout, rows * hidden, "embedding dout").range(rows * hidden);
    const tables: [IntTensor, Tensor, string][] = [[a.tokens, a.dwte, "tokens"], [a.positions, a.dwpe, "positions"]];
    for (const [ids, table, what] of tables) {
      const t = this.ints(ids, rows, what);
      const tb = this.f(table, 0, what === "tokens" ? "dwte" : "dwpe");
      const limit = Math.floor(tb.length / hidden);
      const key = `csr:${rows}:${limit}`;
      let idx = t.derived.get(key);
      if (!idx) {
        const csr = buildCsrIndex(t.host, rows, limit, what);
        const buffer = this.ctx.createBuffer(roundBytes(csr.packed.length * 4));
        this.ctx.write(buffer, 0, csr.packed);
        idx = { buffer, count: csr.unique };
        t.derived.set(key, idx);
      }
      if (idx.count === 0) continue;
      this.run(EMBEDDING_BACKWARD, [idx.count, hidden], [{ buffer: idx.buffer }, dout, tb.range()], idx.count * hidden);
    }
  }

  // ---------- attention ----------

  toHeadMajor(rows: Tensor, head: Tensor, l: HeadLayoutArgs): void {
    const R = this.f(rows, l.tokens * l.rowStride, "rows"), H = this.f(head, l.tokens * l.heads * l.headDim, "head");
    checkLayout(l);
    const n = l.tokens * l.heads * l.headDim, v = layoutVec(l);
    this.run(toHeadMajorKernel(v > 1), layoutUniforms(l, v), [R.range(l.tokens * l.rowStride), H.range(n)], n / v);
  }

  fromHeadMajor(head: Tensor, rows: Tensor, l: HeadLayoutArgs): void {
    const H = this.f(head, l.tokens * l.heads * l.headDim, "head"), R = this.f(rows, l.tokens * l.rowStride, "rows");
    checkLayout(l);
    const n = l.tokens * l.heads * l.headDim, v = layoutVec(l);
    this.run(fromHeadMajorKernel(v > 1), layoutUniforms(l, v), [H.range(n), R.range(l.tokens * l.rowStride)], n / v);
  }

  attentionForward(a: AttentionForwardArgs): void {
    const n = a.heads * a.seqLen * a.headDim, nr = a.heads * a.seqLen;
    const bindings = [
      this.f(a.q, n, "q").range(n),
      this.f(a.k, n, "k").range(n),
      this.f(a.v, n, "v").range(n),
      this.seqBounds(a.cuSeqlens, a.seqLen),
      this.f(a.out, n, "attention out").range(n),
      this.f(a.lse, nr, "lse").range(nr),
    ];
    if (nr === 0) return;
    const threads = a.heads * Math.ceil(a.seqLen / attentionRowsPerThread(a.headDim));
    this.run(attentionForwardKernel(a.headDim), [a.heads, a.seqLen, { f: a.scale }], bindings, threads);
  }

  attentionBackward(a: AttentionBackwardArgs): void {
    const n = a.heads * a.seqLen * a.headDim, nr = a.heads * a.seqLen;
    const q = this.f(a.q, n, "q").range(n), k = this.f(a.k, n, "k").range(n), v = this.f(a.v, n, "v").range(n);
    const out = this.f(a.out, n, "attention out").range(n), dout = this.f(a.dout, n, "dout").range(n);
    const lse = this.f(a.lse, nr, "lse").range(nr);
    const dq = this.f(a.dq, n, "dq").range(n), dk = this.f(a.dk, n, "dk").range(n), dv = this.f(a.dv, n, "dv").range(n);
    const bounds = this.seqBounds(a.cuSeqlens, a.seqLen);
    if (nr === 0) return;
    const u: UniformValue[] = [a.heads, a.seqLen, { f: a.scale }];
    const dsum = this.scratch(nr);
    const threads = a.heads * Math.ceil(a.seqLen / attentionRowsPerThread(a.headDim));
    this.run(attentionBackwardDqKernel(a.headDim), u, [q, k, v, out, dout, lse, bounds, dq, dsum], threads);
    this.run(attentionBackwardDkvKernel(a.headDim), u, [q, k, v, dout, lse, dsum, bounds, dk, dv], threads);
  }

  // ---------- loss ----------

  crossEntropyForward(a: CrossEntropyArgs & { losses: Tensor }): void {
    const { rows, vocab } = a;
    const logits = this.f(a.logits, rows * vocab, "logits").range(rows * vocab);
    const tgt = this.targets(a.targets, rows, vocab);
    const losses = this.f(a.losses, rows, "losses").range(rows);
    if (rows === 0) return;
    this.run(CROSS_ENTROPY_LSE, [rows, vocab], [logits, tgt, this.scratch(rows), losses], rows);
  }

  crossEntropyBackward(a: CrossEntropyArgs & { dlogits: Tensor; scale: number }): void {
    const { rows, vocab } = a;
    const logits = this.f(a.logits, rows * vocab, "logits").range(rows * vocab);
    const tgt = this.targets(a.targets, rows, vocab);
    const dl = this.f(a.dlogits, rows * vocab, "dlogits").range(rows * vocab);
    if (rows === 0) return;
    // The scratch holds [lse(rows) | losses(rows)]; the losses are a by-product here.
    const lseOff = 0, lossOff = roundBytes(rows * 4);
    const scratch = this.scratch(lossOff / 4 + rows);
    const lse = { buffer: scratch.buffer, offset: lseOff, size: rows * 4 };
    const junk = { buffer: scratch.buffer, offset: lossOff, size: rows * 4 };
    this.run(CROSS_ENTROPY_LSE, [rows, vocab], [logits, tgt, lse, junk], rows);
    this.run(CROSS_ENTROPY_GRAD, [rows, vocab, { f: a.scale }], [logits, tgt, lse, dl], rows * vocab);
  }

  // ---------- optimizer ----------

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    const n = grad.length;
    const P = this.f(param, n, "param"), G = this.f(grad, n, "grad"), M = this.f(m, n, "adam m");
    const V = this.f(v, n, "adam v");
    if (!(o.step >= 1)) throw new Error(`adamw: step must be >= 1, got ${o.step}`);
    const u = (c: number): UniformValue[] => [
      c,
      { f: o.lr },
      { f: o.beta1 },
      { f: o.beta2 },
      { f: o.eps },
      { f: o.lr * o.weightDecay },
      { f: 1 - Math.pow(o.beta1, o.step) },
      { f: 1 - Math.pow(o.beta2, o.step) },
      { f: o.gradScale },
    ];
    this.linear(
      adamwKernel,
      n,
      (off, c, units) => [u(units), [sub(G, off, c), sub(P, off, c), sub(M, off, c), sub(V, off, c)]],
    );
  }

  async sumSquares(x: Tensor): Promise<number> {
    const X = this.f(x, 0, "sumSquares x");
    if (X.length === 0) return 0;
    const chunk = this.chunkElems(1);
    const nChunks = Math.ceil(X.length / chunk);
    if (!this.resultBuf || this.resultBuf.size < nChunks * 4) {
      if (this.resultBuf) this.ctx.destroyLater(this.resultBuf);
      this.resultBuf = this.ctx.createBuffer(roundBytes(nChunks * 4));
    }
    for (let c = 0; c < nChunks; c++) {
      const off = c * chunk, cnt = Math.min(chunk, X.length - off);
      const parts = Math.min(SUMSQ_PARTS, Math.ceil(cnt / 16));
      const part = this.scratch(parts);
      this.run(SUMSQ_PARTIAL, [cnt, parts], [sub(X, off, cnt), part], parts);
      this.ctx.dispatch(SUM_FINAL, [parts, c], [part, { buffer: this.resultBuf }], [1]);
    }
    const r = new Float32Array(await this.ctx.read(this.resultBuf, 0, nChunks * 4));
    let s = 0;
    for (const v of r) s += v;
    return s;
  }

  // ---------- helpers ----------

  private live(): void {
    if (this.disposed) throw new Error("webgpu backend: used after dispose()");
  }

  private f(t: Tensor, need: number, what: string): GpuTensor {
    this.live();
    if (!(t instanceof GpuTensor)) throw new Error(`webgpu backend: ${what} is not a WebGPU tensor`);
    if (t.dead) throw new Error(`webgpu backend: ${what} was freed`);
    if (t.length < need) throw new Error(`webgpu backend: ${what} has ${t.length} elements, needs ${need}`);
    return t;
  }

  private ints(t: IntTensor, need: number, what: string): GpuIntTensor {
    this.live();
    if (!(t instanceof GpuIntTensor)) throw new Error(`webgpu backend: ${what} is not a WebGPU int tensor`);
    if (t.freed) throw new Error(`webgpu backend: ${what} was freed`);
    if (t.length < need) throw new Error(`webgpu backend: ${what} has ${t.length} elements, needs ${need}`);
    return t;
  }

  private targets(t: IntTensor, rows: number, vocab: number): BufferRange {
    const tg = this.ints(t, rows, "targets");
    const { min, max } = tg.valueRange(rows);
    if (rows > 0 && (min < -1 || max >= vocab)) {
      for (let r = 0; r < rows; r++) {
        const v = tg.host[r];
        if (v !== -1 && !(v >= 0 && v < vocab)) {
          throw new Error(`cross-entropy: target ${v} at row ${r} outside [0, ${vocab})`);
        }
      }
    }
    return tg.range(rows);
  }

  private seqBounds(cu: IntTensor, seqLen: number): BufferRange {
    const c = this.ints(cu, 2, "cuSeqlens");
    const key = `bounds:${seqLen}`;
    let d = c.derived.get(key);
    if (!d) {
      const b = buildSeqBounds(c.host, seqLen);
      const buffer = this.ctx.createBuffer(roundBytes(b.length * 4));
      this.ctx.write(buffer, 0, b);
      d = { buffer, count: seqLen };
      c.derived.set(key, d);
    }
    return { buffer: d.buffer, offset: 0, size: Math.max(4, seqLen * 8) };
  }

  private allocUncleared(length: number): GpuTensor {
    this.live();
    const bytes = roundBytes(length * 4);
    const pooled = this.pool.get(bytes)?.pop();
    if (pooled) {
      this.pooledBytes -= bytes;
      return new GpuTensor(pooled, 0, length, null);
    }
    return new GpuTensor(this.ctx.createBuffer(bytes), 0, length, null);
  }

  private release(buf: GPUBuffer): void {
    if (this.pooledBytes + buf.size > POOL_LIMIT_BYTES) {
      this.ctx.destroyLater(buf);
      return;
    }
    let list = this.pool.get(buf.size);
    if (!list) this.pool.set(buf.size, list = []);
    list.push(buf);
    this.pooledBytes += buf.size;
  }

  /** A scratch range of `elems` floats (see {@link GpuContext.scratch}). */
  private scratch(elems: number): BufferRange {
    return this.ctx.scratch(Math.max(1, elems) * 4);
  }

  /** Records an element-parallel kernel over `threads` invocations (2-D grid past the workgroup limit). */
  private run(spec: KernelSpec, uniforms: UniformValue[], buffers: BufferRange[], threads: number): void {
    if (threads === 0) return;
    this.ctx.dispatch(spec, uniforms, buffers, this.ctx.grid(Math.ceil(threads / WG)));
  }

  /** Elements per chunk so that one binding stays under the limit (a multiple of `multiple` and of 64). */
  private chunkElems(multiple: number): number {
    const unit = lcm(multiple, VIEW_ALIGN);
    return Math.max(unit, Math.floor(this.ctx.maxBindingBytes / 4 / unit) * unit);
  }

  /**
   * Runs an element-parallel kernel over `n` elements in chunks that respect the binding limit. `kernel(vec4)`
   * gives the vec4 variant when `n` (and `multiple`) divide by 4; `make(offset, count, units)` gets element
   * offsets and counts plus the count in the kernel's units.
   */
  private linear(
    kernel: (vec4: boolean) => KernelSpec,
    n: number,
    make: (offset: number, count: number, units: number) => [UniformValue[], BufferRange[]],
    multiple = 1,
    unit = n % 4 === 0 ? 4 : 1,
  ): void {
    const spec = kernel(unit === 4);
    const chunk = this.chunkElems(multiple);
    for (let off = 0; off < n; off += chunk) {
      const cnt = Math.min(chunk, n - off);
      const [u, b] = make(off, cnt, cnt / unit);
      this.run(spec, u, b, cnt / unit);
    }
  }
}

function sub(t: GpuTensor, offset: number, count: number): BufferRange {
  return { buffer: t.buffer, offset: t.byteOffset + offset * 4, size: Math.max(4, count * 4) };
}

function roundBytes(bytes: number): number {
  return Math.max(256, Math.ceil(bytes / 256) * 256);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

function colsumChunks(rows: number, cols: number): { rowsPer: number; chunks: number } {
  const want = Math.max(1, Math.ceil(COLSUM_TARGET_THREADS / cols));
  const maxChunks = Math.max(1, Math.floor(rows / COLSUM_MIN_ROWS));
  const rowsPer = Math.ceil(rows / Math.min(want, maxChunks));
  return { rowsPer, chunks: Math.ceil(rows / rowsPer) };
}

function checkIds(t: GpuIntTensor, rows: number, limit: number, what: string): void {
  if (rows === 0) return;
  const { min, max } = t.valueRange(rows);
  if (min < 0 || max >= limit) {
    throw new RangeError(`embedding: ${what} must lie in [0, ${limit}), got values from ${min} to ${max}`);
  }
}

function checkLayout(l: HeadLayoutArgs): void {
  if (l.colOffset + l.heads * l.headDim > l.rowStride) {
    throw new Error(`head layout: colOffset ${l.colOffset} + heads·headDim exceeds rowStride ${l.rowStride}`);
  }
}

/** 4 when the head layout can move vec4 units (head dim, row stride and column offset divide by 4), else 1. */
function layoutVec(l: HeadLayoutArgs): number {
  return l.headDim % 4 === 0 && l.rowStride % 4 === 0 && l.colOffset % 4 === 0 ? 4 : 1;
}

function layoutUniforms(l: HeadLayoutArgs, v: number): UniformValue[] {
  return [l.tokens, l.heads, l.headDim / v, l.rowStride / v, l.colOffset / v];
}

/**
 * Opens the WebGPU adapter and returns a backend on it. Throws `WebGpuUnavailableError` (./device.ts) with an
 * actionable message when no adapter exists.
 */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const { device, adapter } = await openGpuDevice({ timestamps: options.timestamps });
  return new WebGpuBackend(device, adapter.description, options);
}
