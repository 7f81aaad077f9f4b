// The CPU reference backend: implements `Backend` (../backend.ts) on typed arrays, synchronously. Storage is
// float32 normally; `createCpuBackend({ precision: "f64" })` runs the very same kernels on float64 storage,
// which the gradient checks use as their finite-difference oracle.

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
import { adamw, sumSquares } from "./adamw.ts";
import { attentionBackward, attentionForward } from "./attention.ts";
import { crossEntropyBackward, crossEntropyForward } from "./cross_entropy.ts";
import { add, addBias, biasGrad, fromHeadMajor, geluBackward, geluForward, toHeadMajor } from "./elementwise.ts";
import { embeddingBackward, embeddingForward } from "./embedding.ts";
import { layerNormBackward, layerNormForward } from "./layer_norm.ts";
import { type FArray, matmul } from "./matmul.ts";

/** A CPU float tensor: a typed array (a view shares its parent's memory). */
export class CpuTensor implements Tensor {
  readonly dtype = "f32" as const;
  constructor(public data: FArray, readonly isView = false) {}
  /** Number of elements. */
  get length(): number {
    return this.data.length;
  }
}

/** A CPU int tensor. */
export class CpuIntTensor implements IntTensor {
  readonly dtype = "i32" as const;
  constructor(public data: Int32Array) {}
  /** Number of elements. */
  get length(): number {
    return this.data.length;
  }
}

const FREED = new Float32Array(0);
const FREED_INT = new Int32Array(0);

function f(t: Tensor, need: number, what: string): FArray {
  if (!(t instanceof CpuTensor)) throw new Error(`cpu backend: ${what} is not a CPU tensor`);
  const d = t.data;
  if (d === FREED) throw new Error(`cpu backend: ${what} was freed`);
  if (d.length < need) throw new Error(`cpu backend: ${what} has ${d.length} elements, needs ${need}`);
  return d;
}

function ints(t: IntTensor, need: number, what: string): Int32Array {
  if (!(t instanceof CpuIntTensor)) throw new Error(`cpu backend: ${what} is not a CPU int tensor`);
  if (t.data === FREED_INT) throw new Error(`cpu backend: ${what} was freed`);
  if (t.data.length < need) throw new Error(`cpu backend: ${what} has ${t.data.length} elements, needs ${need}`);
  return t.data;
}

/** Options of {@link createCpuBackend}. */
export interface CpuBackendOptions {
  /** Storage precision: "f32" (default, the executor) or "f64" (gradient-check oracle). */
  precision?: "f32" | "f64";
}

/** The CPU reference backend. Besides `Backend` it offers float64 upload/download for tests. */
export class CpuBackend implements Backend {
  readonly kind = "cpu" as const;
  readonly device: string;
  readonly precision: "f32" | "f64";

  constructor(options: CpuBackendOptions = {}) {
    this.precision = options.precision ?? "f32";
    this.device = `cpu (TypeScript reference, ${this.precision})`;
  }

  #arr(n: number): FArray {
    return this.precision === "f64" ? new Float64Array(n) : new Float32Array(n);
  }

  alloc(length: number): Tensor {
    if (!Number.isInteger(length) || length < 0) throw new Error(`cpu backend: bad tensor length ${length}`);
    return new CpuTensor(this.#arr(length));
  }
  upload(data: Float32Array): Tensor {
    const a = this.#arr(data.length);
    a.set(data);
    return new CpuTensor(a);
  }
  /** Uploads float64 data (kept exactly on an f64 backend, rounded on f32). */
  uploadF64(data: Float64Array): Tensor {
    const a = this.#arr(data.length);
    a.set(data);
    return new CpuTensor(a);
  }
  uploadInt(data: Int32Array): IntTensor {
    return new CpuIntTensor(data.slice());
  }
  write(dst: Tensor, data: Float32Array, offset = 0): void {
    f(dst, offset + data.length, "write target").set(data, offset);
  }
  download(src: Tensor): Promise<Float32Array> {
    return Promise.resolve(Float32Array.from(f(src, 0, "download source")));
  }
  /** The tensor's values as float64 (exact on an f64 backend). */
  downloadF64(src: Tensor): Float64Array {
    return Float64Array.from(f(src, 0, "download source"));
  }
  /** Direct access to a tensor's storage (tests and host-side code on the CPU backend only). */
  data(t: Tensor): FArray {
    return f(t, 0, "tensor");
  }
  view(parent: Tensor, offset: number, length: number): Tensor {
    const d = f(parent, offset + length, "view parent");
    if (offset % VIEW_ALIGN !== 0) {
      throw new Error(`cpu backend: view offset ${offset} not a multiple of ${VIEW_ALIGN}`);
    }
    return new CpuTensor(d.subarray(offset, offset + length), true);
  }
  free(t: Tensor | IntTensor): void {
    if (t instanceof CpuTensor) {
      if (!t.isView) t.data = FREED;
    } else if (t instanceof CpuIntTensor) t.data = FREED_INT;
  }
  sync(): Promise<void> {
    return Promise.resolve();
  }
  dispose(): void {}

  zero(t: Tensor): void {
    f(t, 0, "zero target").fill(0);
  }
  copy(src: Tensor, dst: Tensor): void {
    const s = f(src, 0, "copy source");
    f(dst, s.length, "copy target").set(s);
  }
  add(a: Tensor, b: Tensor, out: Tensor): void {
    const n = out.length;
    add(f(a, n, "add a"), f(b, n, "add b"), f(out, n, "add out"), n);
  }

  matmul(a: Tensor, b: Tensor, c: Tensor, m: number, n: number, k: number, o: MatmulOptions = {}): void {
    matmul(
      f(a, m * k, "matmul A"),
      f(b, k * n, "matmul B"),
      f(c, m * n, "matmul C"),
      m,
      n,
      k,
      !!o.transA,
      !!o.transB,
      !!o.accumulate,
    );
  }
  addBias(x: Tensor, bias: Tensor, rows: number, cols: number): void {
    addBias(f(x, rows * cols, "addBias x"), f(bias, cols, "bias"), rows, cols);
  }
  biasGrad(dy: Tensor, dbias: Tensor, rows: number, cols: number): void {
    biasGrad(f(dy, rows * cols, "biasGrad dy"), f(dbias, cols, "dbias"), rows, cols);
  }

  layerNormForward(a: LayerNormForwardArgs): void {
    const n = a.rows * a.cols;
    layerNormForward(
      f(a.x, n, "ln x"),
      f(a.gamma, a.cols, "ln gamma"),
      f(a.beta, a.cols, "ln beta"),
      f(a.out, n, "ln out"),
      f(a.mean, a.rows, "ln mean"),
      f(a.rstd, a.rows, "ln rstd"),
      a.rows,
      a.cols,
      a.eps,
    );
  }
  layerNormBackward(a: LayerNormBackwardArgs): void {
    const n = a.rows * a.cols;
    layerNormBackward(
      f(a.dy, n, "ln dy"),
      f(a.x, n, "ln x"),
      f(a.gamma, a.cols, "ln gamma"),
      f(a.mean, a.rows, "ln mean"),
      f(a.rstd, a.rows, "ln rstd"),
      f(a.dx, n, "ln dx"),
      f(a.dgamma, a.cols, "ln dgamma"),
      f(a.dbeta, a.cols, "ln dbeta"),
      a.rows,
      a.cols,
      a.accumulateDx,
    );
  }
  geluForward(x: Tensor, out: Tensor): void {
    const n = x.length;
    geluForward(f(x, n, "gelu x"), f(out, n, "gelu out"), n);
  }
  geluBackward(x: Tensor, dy: Tensor, dx: Tensor): void {
    const n = x.length;
    geluBackward(f(x, n, "gelu x"), f(dy, n, "gelu dy"), f(dx, n, "gelu dx"), n);
  }

  embeddingForward(a: EmbeddingArgs & { wte: Tensor; wpe: Tensor; out: Tensor }): void {
    embeddingForward(
      f(a.wte, 0, "wte"),
      f(a.wpe, 0, "wpe"),
      ints(a.tokens, a.rows, "tokens"),
      ints(a.positions, a.rows, "positions"),
      f(a.out, a.rows * a.hidden, "embedding out"),
      a.rows,
      a.hidden,
    );
  }
  embeddingBackward(a: EmbeddingArgs & { dout: Tensor; dwte: Tensor; dwpe: Tensor }): void {
    embeddingBackward(
      f(a.dout, a.rows * a.hidden, "embedding dout"),
      ints(a.tokens, a.rows, "tokens"),
      ints(a.positions, a.rows, "positions"),
      f(a.dwte, 0, "dwte"),
      f(a.dwpe, 0, "dwpe"),
      a.rows,
      a.hidden,
    );
  }

  toHeadMajor(rows: Tensor, head: Tensor, l: HeadLayoutArgs): void {
    toHeadMajor(f(rows, l.tokens * l.rowStride, "rows"), f(head, l.tokens * l.heads * l.headDim, "head"), l);
  }
  fromHeadMajor(head: Tensor, rows: Tensor, l: HeadLayoutArgs): void {
    fromHeadMajor(f(head, l.tokens * l.heads * l.headDim, "head"), f(rows, l.tokens * l.rowStride, "rows"), l);
  }
  attentionForward(a: AttentionForwardArgs): void {
    const n = a.heads * a.seqLen * a.headDim;
    attentionForward(
      f(a.q, n, "q"),
      f(a.k, n, "k"),
      f(a.v, n, "v"),
      f(a.out, n, "attention out"),
      f(a.lse, a.heads * a.seqLen, "lse"),
      ints(a.cuSeqlens, 2, "cuSeqlens"),
      a,
    );
  }
  attentionBackward(a: AttentionBackwardArgs): void {
    const n = a.heads * a.seqLen * a.headDim;
    attentionBackward(
      f(a.q, n, "q"),
      f(a.k, n, "k"),
      f(a.v, n, "v"),
      f(a.out, n, "attention out"),
      f(a.dout, n, "dout"),
      f(a.lse, a.heads * a.seqLen, "lse"),
      f(a.dq, n, "dq"),
      f(a.dk, n, "dk"),
      f(a.dv, n, "dv"),
      ints(a.cuSeqlens, 2, "cuSeqlens"),
      a,
    );
  }

  crossEntropyForward(a: CrossEntropyArgs & { losses: Tensor }): void {
    crossEntropyForward(
      f(a.logits, a.rows * a.vocab, "logits"),
      ints(a.targets, a.rows, "targets"),
      f(a.losses, a.rows, "losses"),
      a.rows,
      a.vocab,
    );
  }
  crossEntropyBackward(a: CrossEntropyArgs & { dlogits: Tensor; scale: number }): void {
    crossEntropyBackward(
      f(a.logits, a.rows * a.vocab, "logits"),
      ints(a.targets, a.rows, "targets"),
      f(a.dlogits, a.rows * a.vocab, "dlogits"),
      a.rows,
      a.vocab,
      a.scale,
    );
  }

  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
    const n = grad.length;
    adamw(f(param, n, "param"), f(grad, n, "grad"), f(m, n, "adam m"), f(v, n, "adam v"), n, o);
  }
  sumSquares(x: Tensor): Promise<number> {
    return Promise.resolve(sumSquares(f(x, 0, "sumSquares x"), x.length));
  }
}

/** Creates the CPU reference backend. */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}
