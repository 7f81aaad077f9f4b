// The tensor-op interface every TypeScript executor backend implements (CPU reference, WebGPU). The model code
// (`ulysses_model.ts`) is written once against it. Tensors are opaque device buffers of row-major float32 (or
// int32 for ids); compute ops are enqueued in call order and only `download`, `sumSquares` and `sync` wait.
//
// Conventions shared by every op:
// - All shapes are in elements, row-major, last dimension contiguous. `[R, C]` means R rows of C elements.
// - A tensor argument must have at least the length the shapes imply; ops touch only that prefix.
// - Distinct tensor arguments of one op never overlap in memory (they may be views into one parent buffer, at
//   disjoint ranges), except where an op says "in place". Outputs are overwritten unless the op says it
//   accumulates (`+=`). Parameter-gradient outputs (dgamma, dbeta, dbias, dwte, dwpe) always accumulate, so
//   gradients of several micro-batches sum into one buffer; `matmul` accumulates when `accumulate` is set.
// - Float results need not be bit-identical between backends (summation order may differ), but each backend
//   must be deterministic: the same inputs give bit-identical outputs on every run and every rank.

import type { TsExecutorKind } from "../core/protocol.ts";

/** A float32 device tensor (opaque; create it with the backend that uses it). */
export interface Tensor {
  readonly dtype: "f32";
  /** Number of float32 elements. */
  readonly length: number;
}

/** An int32 device tensor: token ids, position ids, targets, cumulative sequence lengths. */
export interface IntTensor {
  readonly dtype: "i32";
  /** Number of int32 elements. */
  readonly length: number;
}

/**
 * Views must start at a multiple of this many elements (256 bytes, WebGPU's storage-buffer offset alignment).
 * The flat parameter layout (`model.ts`) aligns every named slice to it.
 */
export const VIEW_ALIGN = 64;

/** Options of {@link Backend.matmul}. */
export interface MatmulOptions {
  /** A is stored transposed: as `[k, m]` instead of `[m, k]`. */
  transA?: boolean;
  /** B is stored transposed: as `[n, k]` instead of `[k, n]`. */
  transB?: boolean;
  /** `C += op(A)·op(B)` instead of `C = op(A)·op(B)`. */
  accumulate?: boolean;
}

/** Arguments of {@link Backend.layerNormForward}. `x`, `out`: `[rows, cols]`; `gamma`, `beta`: `[cols]`. */
export interface LayerNormForwardArgs {
  x: Tensor;
  gamma: Tensor;
  beta: Tensor;
  out: Tensor;
  /** Saved per-row mean, `[rows]`. */
  mean: Tensor;
  /** Saved per-row `1/sqrt(var + eps)` (biased variance), `[rows]`. */
  rstd: Tensor;
  rows: number;
  cols: number;
  eps: number;
}

/**
 * Arguments of {@link Backend.layerNormBackward}. With `xhat = (x - mean)·rstd`, `g = dy·gamma`:
 * `dx = rstd·(g - mean_c(g) - xhat·mean_c(g·xhat))`, `dgamma += Σ_rows dy·xhat`, `dbeta += Σ_rows dy`.
 */
export interface LayerNormBackwardArgs {
  /** Gradient of the output, `[rows, cols]`. */
  dy: Tensor;
  /** The forward input, `[rows, cols]`. */
  x: Tensor;
  gamma: Tensor;
  /** `mean` and `rstd` saved by the forward, `[rows]` each. */
  mean: Tensor;
  rstd: Tensor;
  /** Gradient of the input, `[rows, cols]`: overwritten, or `+=` when `accumulateDx`. */
  dx: Tensor;
  /** `[cols]`, always accumulated. */
  dgamma: Tensor;
  /** `[cols]`, always accumulated. */
  dbeta: Tensor;
  rows: number;
  cols: number;
  accumulateDx: boolean;
}

/** Arguments of the embedding ops: `out[i, :] = wte[tokens[i], :] + wpe[positions[i], :]`. */
export interface EmbeddingArgs {
  /** Token ids `[rows]`, each in `[0, vocab)`. */
  tokens: IntTensor;
  /** Position ids `[rows]`, each in `[0, maxSeq)`. */
  positions: IntTensor;
  rows: number;
  hidden: number;
}

/**
 * Causal attention over a packed stream of variable-length sequences, head-major. Sequence `s` occupies token
 * rows `[cuSeqlens[s], cuSeqlens[s+1])`; token `i` of it attends to tokens `j` of the same sequence with `j <= i`
 * (never across sequences). Scores are `scale · q_i·k_j`; `lse_i = log Σ_j exp(score_ij)` (natural log), and
 * `out_i = Σ_j exp(score_ij - lse_i) · v_j`.
 */
export interface AttentionArgs {
  /** `[heads, seqLen, headDim]` each. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** Cumulative sequence lengths, `[numSeqs + 1]`: `0 = c[0] < c[1] < ... < c[numSeqs] = seqLen`. */
  cuSeqlens: IntTensor;
  heads: number;
  seqLen: number;
  headDim: number;
  /** Usually `1/sqrt(headDim)`. */
  scale: number;
}

/** Arguments of {@link Backend.attentionForward}. */
export interface AttentionForwardArgs extends AttentionArgs {
  /** `[heads, seqLen, headDim]`, overwritten. */
  out: Tensor;
  /** `[heads, seqLen]`, overwritten: the log-sum-exp of each query row's scores, saved for the backward. */
  lse: Tensor;
}

/**
 * Arguments of {@link Backend.attentionBackward}. With `p_ij = exp(score_ij - lse_i)` and
 * `D_i = dout_i·out_i`: `dv_j = Σ_i p_ij dout_i`, `ds_ij = p_ij (dout_i·v_j - D_i)`,
 * `dq_i = scale Σ_j ds_ij k_j`, `dk_j = scale Σ_i ds_ij q_i` (sums over causal same-sequence pairs only).
 */
export interface AttentionBackwardArgs extends AttentionArgs {
  /** The forward's `out` and `lse`. */
  out: Tensor;
  lse: Tensor;
  /** Gradient of `out`, `[heads, seqLen, headDim]`. */
  dout: Tensor;
  /** `[heads, seqLen, headDim]` each, overwritten. */
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

/**
 * Arguments of the head re-layout ops between token-major rows and head-major blocks:
 * `rowsTensor[t, colOffset + h·headDim + e]  <->  headTensor[h, t, e]` for `t < tokens`, `h < heads`, `e < headDim`.
 * The row tensor is `[tokens, rowStride]` (e.g. the fused QKV output `[T, 3H]` with `colOffset` 0, H or 2H).
 */
export interface HeadLayoutArgs {
  tokens: number;
  heads: number;
  headDim: number;
  /** Elements per row of the token-major tensor. */
  rowStride: number;
  /** First column of head 0 in a row of the token-major tensor. */
  colOffset: number;
}

/** Arguments of the cross-entropy ops over `logits [rows, vocab]` with `targets [rows]` (`-1` = ignored row). */
export interface CrossEntropyArgs {
  logits: Tensor;
  targets: IntTensor;
  rows: number;
  vocab: number;
}

/**
 * Options of {@link Backend.adamw} (decoupled weight decay, PyTorch `AdamW` semantics), per element:
 * `g = grad·gradScale; p = p·(1 - lr·weightDecay); m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
 *  p = p - lr · (m / (1 - β1^step)) / (sqrt(v / (1 - β2^step)) + eps)`.
 */
export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count (after incrementing for this update). */
  step: number;
  /** Multiplies the gradient first (gradient-clipping coefficient; 1 for none). `grad` itself is not modified. */
  gradScale: number;
}

/** The tensor ops of one compute device. Every op is enqueued; results are visible to later ops in call order. */
export interface Backend {
  /** Which executor kind this backend serves. */
  readonly kind: TsExecutorKind;
  /** Human-readable device description (CPU model, adapter name). */
  readonly device: string;

  // ---------- memory ----------

  /** A new zero-filled tensor of `length` float32 elements. */
  alloc(length: number): Tensor;
  /** A new tensor holding a copy of `data`. */
  upload(data: Float32Array): Tensor;
  /** A new int tensor holding a copy of `data`. */
  uploadInt(data: Int32Array): IntTensor;
  /** Overwrites `dst[offset, offset + data.length)` with `data` (enqueued after earlier ops). */
  write(dst: Tensor, data: Float32Array, offset?: number): void;
  /** Copies `src` to the host once every earlier op has finished. */
  download(src: Tensor): Promise<Float32Array>;
  /**
   * A tensor aliasing `parent[offset, offset + length)`: writes through either are visible through the other.
   * `offset` must be a multiple of {@link VIEW_ALIGN}. Freeing the parent invalidates its views.
   */
  view(parent: Tensor, offset: number, length: number): Tensor;
  /** Releases a tensor (a view releases nothing). Using it afterwards is an error. */
  free(t: Tensor | IntTensor): void;
  /** Resolves once every op enqueued so far has finished (for timing). */
  sync(): Promise<void>;
  /** Releases the device; the backend is unusable afterwards. */
  dispose(): void;

  // ---------- elementwise and data movement ----------

  /** `t = 0`. */
  zero(t: Tensor): void;
  /** `dst[0, src.length) = src`. */
  copy(src: Tensor, dst: Tensor): void;
  /** Residual add, `out = a + b` over `out.length` elements (`a`, `b`, `out` distinct). */
  add(a: Tensor, b: Tensor, out: Tensor): void;

  // ---------- dense ----------

  /**
   * `C[m, n] (+)= op(A)[m, k] · op(B)[k, n]`: `op(A)` is A `[m, k]`, or `Aᵀ` of A stored `[k, m]` when `transA`;
   * `op(B)` is B `[k, n]`, or `Bᵀ` of B stored `[n, k]` when `transB`. `C` is distinct from A and B.
   */
  matmul(a: Tensor, b: Tensor, c: Tensor, m: number, n: number, k: number, options?: MatmulOptions): void;
  /** In place: `x[r, c] += bias[c]` for `x [rows, cols]`, `bias [cols]`. */
  addBias(x: Tensor, bias: Tensor, rows: number, cols: number): void;
  /** Bias gradient (column sums), accumulated: `dbias[c] += Σ_r dy[r, c]` for `dy [rows, cols]`. */
  biasGrad(dy: Tensor, dbias: Tensor, rows: number, cols: number): void;

  // ---------- normalisation and activation ----------

  /** `out = (x - mean)·rstd·gamma + beta` per row; saves `mean` and `rstd`. */
  layerNormForward(args: LayerNormForwardArgs): void;
  /** Backward of {@link layerNormForward}; see {@link LayerNormBackwardArgs}. */
  layerNormBackward(args: LayerNormBackwardArgs): void;
  /** `out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` over `x.length` elements. */
  geluForward(x: Tensor, out: Tensor): void;
  /** `dx = dy · gelu'(x)` (derivative of the tanh form) over `x.length` elements; `dx` overwritten. */
  geluBackward(x: Tensor, dy: Tensor, dx: Tensor): void;

  // ---------- embeddings ----------

  /** `out[i, :] = wte[tokens[i], :] + wpe[positions[i], :]`, `out [rows, hidden]`. */
  embeddingForward(args: EmbeddingArgs & { wte: Tensor; wpe: Tensor; out: Tensor }): void;
  /** Scatter-add backward: `dwte[tokens[i], :] += dout[i, :]`, `dwpe[positions[i], :] += dout[i, :]`. */
  embeddingBackward(args: EmbeddingArgs & { dout: Tensor; dwte: Tensor; dwpe: Tensor }): void;

  // ---------- attention ----------

  /** `head[h, t, e] = rows[t, colOffset + h·headDim + e]` (`head` overwritten). */
  toHeadMajor(rows: Tensor, head: Tensor, args: HeadLayoutArgs): void;
  /** `rows[t, colOffset + h·headDim + e] = head[h, t, e]`; other columns of `rows` untouched. */
  fromHeadMajor(head: Tensor, rows: Tensor, args: HeadLayoutArgs): void;
  /** Causal varlen attention forward; see {@link AttentionArgs}. */
  attentionForward(args: AttentionForwardArgs): void;
  /** Causal varlen attention backward; see {@link AttentionBackwardArgs}. */
  attentionBackward(args: AttentionBackwardArgs): void;

  // ---------- loss ----------

  /**
   * `losses[r] = logsumexp(logits[r, :]) - logits[r, targets[r]]`, or 0 where `targets[r] = -1`; `losses [rows]`.
   */
  crossEntropyForward(args: CrossEntropyArgs & { losses: Tensor }): void;
  /**
   * `dlogits[r, :] = scale · (softmax(logits[r, :]) - onehot(targets[r]))`, or 0 where `targets[r] = -1`;
   * `dlogits [rows, vocab]` overwritten (distinct from `logits`).
   */
  crossEntropyBackward(args: CrossEntropyArgs & { dlogits: Tensor; scale: number }): void;

  // ---------- optimizer ----------

  /** In place AdamW update of `param`, `m`, `v` (all the same length as `grad`); see {@link AdamWOptions}. */
  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWOptions): void;
  /** `Σ x²` over the tensor (for the global gradient norm), after every earlier op. */
  sumSquares(x: Tensor): Promise<number>;
}
