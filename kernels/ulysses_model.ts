// Forward and backward of the whole GPT for ONE rank of a Ulysses SP group of degree d, written once against
// `Backend` + `GroupComm`. The rank holds a contiguous slice of the group's packed token stream; everything is
// token-local except attention, where an all-to-all turns "local tokens, all heads" into "all tokens, heads/d
// heads" (Q, K, V in one exchange), causal varlen attention runs, and a second all-to-all turns the output back.
// The backward mirrors it (dO out, dQ/dK/dV back). With d = 1 both exchanges are skipped.

import type { Backend, HeadLayoutArgs, IntTensor, Tensor } from "./backend.ts";
import type { GroupComm } from "./group_comm.ts";
import { LN_EPS, type ParamLayout, type ParamSlice } from "./model.ts";
import type { RankSlice } from "./packing.ts";

/** Device views of every named parameter (or gradient) slice. */
interface Views {
  wte: Tensor;
  wpe: Tensor;
  lnfg: Tensor;
  lnfb: Tensor;
  layers: Record<keyof ParamLayout["layers"][number], Tensor>[];
}

function makeViews(b: Backend, flat: Tensor, layout: ParamLayout): Views {
  const v = (s: ParamSlice) => b.view(flat, s.offset, s.length);
  return {
    wte: v(layout.wte),
    wpe: v(layout.wpe),
    lnfg: v(layout.lnfg),
    lnfb: v(layout.lnfb),
    layers: layout.layers.map((l) => {
      const out = {} as Record<keyof typeof l, Tensor>;
      for (const k of Object.keys(l) as (keyof typeof l)[]) out[k] = v(l[k]);
      return out;
    }),
  };
}

/** Activations one layer saves for its backward. */
interface Saved {
  x: Tensor;
  a: Tensor;
  mean1: Tensor;
  rstd1: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  lse: Tensor;
  y: Tensor;
  h: Tensor;
  bn: Tensor;
  mean2: Tensor;
  rstd2: Tensor;
  u: Tensor;
  g: Tensor;
}

/** What one call of {@link UlyssesGpt.run} shares across its layers: sizes, uploaded inputs, temporaries. */
interface Pass {
  comm: GroupComm;
  /** This rank's tokens, the group's tokens, hidden size, heads, head size, heads per rank, vocabulary. */
  T: number;
  S: number;
  H: number;
  NH: number;
  D: number;
  hpr: number;
  V: number;
  /** Token ranges of the group's ranks. */
  bounds: number[];
  /** Attention scale 1/√D. */
  scale: number;
  tok: IntTensor;
  pos: IntTensor;
  tgt: IntTensor;
  cu: IntTensor;
  /** Every temporary of the pass, freed when `run` returns. */
  temps: (Tensor | IntTensor)[];
  /** Allocates a temporary of `n` elements. */
  t: (n: number) => Tensor;
  /** The head layout of `[T, ·]` rows of `stride` elements, heads starting at column `col`. */
  rowsLayout: (stride: number, col: number) => HeadLayoutArgs;
}

/** The final layer norm's activations, the logits and the per-token losses. */
interface Head {
  fo: Tensor;
  meanf: Tensor;
  rstdf: Tensor;
  logits: Tensor;
  losses: Tensor;
}

/** Gradient buffers the layers' backward reuse (`dx` carries the gradient from layer to layer). */
interface BackwardBuffers {
  dx: Tensor;
  dT: Tensor;
  d4: Tensor;
  du: Tensor;
  dqkv: Tensor;
}

/** Options of {@link UlyssesGpt.run}. */
export interface RunOptions {
  /** Run the backward and accumulate gradients (default true). */
  backward?: boolean;
  /** Multiplies every token's loss gradient (e.g. `1 / globalTokens`). Default 1. */
  lossScale?: number;
}

/** What one rank's forward(+backward) of a micro-batch produced. */
export interface RunResult {
  /** Σ of this rank's token losses (float64 sum of the float32 per-token losses). */
  lossSum: number;
  /** Number of this rank's tokens that carry a target. */
  targets: number;
}

/**
 * The GPT on one SP rank: parameters and gradients are flat device buffers laid out by `ParamLayout`
 * (gradients accumulate across calls until the caller zeroes them).
 */
export class UlyssesGpt {
  readonly #b: Backend;
  readonly #layout: ParamLayout;
  readonly #p: Views;
  readonly #g: Views;

  /** `params` and `grads` are flat tensors of `layout.total` elements on `backend`. */
  constructor(backend: Backend, layout: ParamLayout, params: Tensor, grads: Tensor) {
    if (params.length < layout.total || grads.length < layout.total) {
      throw new Error(`model: parameter/gradient buffers must hold ${layout.total} elements`);
    }
    this.#b = backend;
    this.#layout = layout;
    this.#p = makeViews(backend, params, layout);
    this.#g = makeViews(backend, grads, layout);
  }

  /**
   * Forward (and backward unless `backward: false`) of this rank's slice of a packed group, exchanging
   * attention shards with the other group members through `comm`. Throws a clear error when the head count is
   * not divisible by the degree or the slice does not belong to a group of `comm.size` ranks.
   */
  async run(slice: RankSlice, comm: GroupComm, options: RunOptions = {}): Promise<RunResult> {
    const backward = options.backward ?? true;
    const lossScale = options.lossScale ?? 1;
    const pass = this.#begin(slice, comm);
    const { T, H } = pass;
    const b = this.#b, P = this.#p;
    let targets = 0;
    for (const x of slice.targets) if (x >= 0) targets++;

    try {
      // ---------- forward ----------
      let x = pass.t(T * H);
      b.embeddingForward({ wte: P.wte, wpe: P.wpe, tokens: pass.tok, positions: pass.pos, out: x, rows: T, hidden: H });
      const saved: Saved[] = [];
      for (let l = 0; l < this.#layout.shape.layers; l++) {
        const s = await this.#layerForward(pass, l, x);
        saved.push(s);
        x = s.out;
      }
      const head = this.#headForward(pass, x);
      const lossHost = await b.download(head.losses);
      let lossSum = 0;
      for (let i = 0; i < T; i++) lossSum += lossHost[i];
      if (!backward) return { lossSum, targets };
      await this.#backward(pass, x, head, saved, lossScale);
      return { lossSum, targets };
    } finally {
      for (const x of pass.temps) b.free(x);
    }
  }

  /** Checks the slice against the communicator, uploads its inputs and sets up the pass's temporaries. */
  #begin(slice: RankSlice, comm: GroupComm): Pass {
    const { hidden: H, heads: NH, vocab: V } = this.#layout.shape;
    const d = comm.size;
    if (NH % d !== 0) {
      throw new Error(`Ulysses SP: ${NH} attention heads are not divisible by the SP degree ${d}`);
    }
    if (slice.group.degree !== d || slice.spRank !== comm.rank) {
      throw new Error(
        `Ulysses SP: slice is for SP rank ${slice.spRank} of ${slice.group.degree}, communicator is ${comm.rank} of ${d}`,
      );
    }
    const b = this.#b;
    const T = slice.count, D = H / NH;
    const temps: (Tensor | IntTensor)[] = [];
    const tok = b.uploadInt(slice.tokens), pos = b.uploadInt(slice.positions), tgt = b.uploadInt(slice.targets);
    const cu = b.uploadInt(slice.group.cuSeqlens);
    temps.push(tok, pos, tgt, cu);
    return {
      comm,
      T,
      S: slice.group.seqLen,
      H,
      NH,
      D,
      hpr: NH / d,
      V,
      bounds: slice.group.bounds,
      scale: 1 / Math.sqrt(D),
      tok,
      pos,
      tgt,
      cu,
      temps,
      t: (n: number): Tensor => {
        const x = b.alloc(n);
        temps.push(x);
        return x;
      },
      rowsLayout: (stride: number, col: number) => ({
        tokens: T,
        heads: NH,
        headDim: D,
        rowStride: stride,
        colOffset: col,
      }),
    };
  }

  /** Layer `l`'s forward from its input `x`: the activations its backward needs, and its output. */
  async #layerForward(pass: Pass, l: number, x: Tensor): Promise<Saved & { out: Tensor }> {
    const { comm, T, S, H, NH, D, hpr, bounds, scale, cu, t, rowsLayout } = pass;
    const b = this.#b;
    const p = this.#p.layers[l];
    const a = t(T * H), mean1 = t(T), rstd1 = t(T);
    b.layerNormForward({
      x,
      gamma: p.ln1g,
      beta: p.ln1b,
      out: a,
      mean: mean1,
      rstd: rstd1,
      rows: T,
      cols: H,
      eps: LN_EPS,
    });
    const qkv = b.alloc(T * 3 * H);
    b.matmul(a, p.wqkv, qkv, T, 3 * H, H);
    b.addBias(qkv, p.bqkv, T, 3 * H);
    const local = [0, 1, 2].map((i) => {
      const hm = b.alloc(NH * T * D);
      b.toHeadMajor(qkv, hm, rowsLayout(3 * H, i * H));
      return hm;
    });
    b.free(qkv);
    const [q, k, v] = await this.#tokensToHeads(comm, local, bounds, hpr, D, `L${l}.fwd.qkv`);
    pass.temps.push(q, k, v);
    const o = t(hpr * S * D), lse = t(hpr * S);
    b.attentionForward({ q, k, v, out: o, lse, cuSeqlens: cu, heads: hpr, seqLen: S, headDim: D, scale });
    const [oLocal] = await this.#headsToTokens(comm, [o], bounds, hpr, D, `L${l}.fwd.out`, false);
    const y = t(T * H);
    b.fromHeadMajor(oLocal, y, rowsLayout(H, 0));
    if (oLocal !== o) b.free(oLocal);
    const z = b.alloc(T * H);
    b.matmul(y, p.wo, z, T, H, H);
    b.addBias(z, p.bo, T, H);
    const h = t(T * H);
    b.add(x, z, h);
    b.free(z);
    const bn = t(T * H), mean2 = t(T), rstd2 = t(T);
    b.layerNormForward({
      x: h,
      gamma: p.ln2g,
      beta: p.ln2b,
      out: bn,
      mean: mean2,
      rstd: rstd2,
      rows: T,
      cols: H,
      eps: LN_EPS,
    });
    const u = t(T * 4 * H), g = t(T * 4 * H);
    b.matmul(bn, p.wfc, u, T, 4 * H, H);
    b.addBias(u, p.bfc, T, 4 * H);
    b.geluForward(u, g);
    const mo = b.alloc(T * H);
    b.matmul(g, p.wproj, mo, T, H, 4 * H);
    b.addBias(mo, p.bproj, T, H);
    const xn = t(T * H);
    b.add(h, mo, xn);
    b.free(mo);
    return { x, a, mean1, rstd1, q, k, v, o, lse, y, h, bn, mean2, rstd2, u, g, out: xn };
  }

  /** The final layer norm, the logits (tied to the embedding) and the per-token losses. */
  #headForward(pass: Pass, x: Tensor): Head {
    const { T, H, V, tgt, t } = pass;
    const b = this.#b, P = this.#p;
    const fo = t(T * H), meanf = t(T), rstdf = t(T);
    b.layerNormForward({
      x,
      gamma: P.lnfg,
      beta: P.lnfb,
      out: fo,
      mean: meanf,
      rstd: rstdf,
      rows: T,
      cols: H,
      eps: LN_EPS,
    });
    const logits = t(T * V), losses = t(T);
    b.matmul(fo, P.wte, logits, T, V, H, { transB: true });
    b.crossEntropyForward({ logits, targets: tgt, losses, rows: T, vocab: V });
    return { fo, meanf, rstdf, logits, losses };
  }

  /** The backward from the loss down to the embedding; gradients accumulate into the gradient buffer. */
  async #backward(pass: Pass, x: Tensor, head: Head, saved: Saved[], lossScale: number): Promise<void> {
    const { T, H, V, tok, pos, tgt, t } = pass;
    const b = this.#b, P = this.#p, G = this.#g;
    const { fo, meanf, rstdf, logits } = head;
    const dlogits = t(T * V);
    b.crossEntropyBackward({ logits, targets: tgt, dlogits, rows: T, vocab: V, scale: lossScale });
    b.matmul(dlogits, fo, G.wte, V, H, T, { transA: true, accumulate: true });
    const df = t(T * H);
    b.matmul(dlogits, P.wte, df, T, H, V);
    const dx = t(T * H);
    b.layerNormBackward({
      dy: df,
      x,
      gamma: P.lnfg,
      mean: meanf,
      rstd: rstdf,
      dx,
      dgamma: G.lnfg,
      dbeta: G.lnfb,
      rows: T,
      cols: H,
      accumulateDx: false,
    });
    const work: BackwardBuffers = { dx, dT: t(T * H), d4: t(T * 4 * H), du: t(T * 4 * H), dqkv: t(T * 3 * H) };
    for (let l = saved.length - 1; l >= 0; l--) await this.#layerBackward(pass, l, saved[l], work);
    b.embeddingBackward({ dout: dx, tokens: tok, positions: pos, dwte: G.wte, dwpe: G.wpe, rows: T, hidden: H });
    await b.sync();
  }

  /** Layer `l`'s backward: `work.dx` holds the gradient of its output on entry and of its input on return. */
  async #layerBackward(pass: Pass, l: number, s: Saved, work: BackwardBuffers): Promise<void> {
    const { comm, T, S, H, NH, D, hpr, bounds, scale, cu, rowsLayout } = pass;
    const { dx, dT, d4, du, dqkv } = work;
    const b = this.#b, p = this.#p.layers[l], gr = this.#g.layers[l];
    // MLP: x_{l+1} = h + gelu(ln2(h)·Wfc + bfc)·Wproj + bproj
    b.matmul(s.g, dx, gr.wproj, 4 * H, H, T, { transA: true, accumulate: true });
    b.biasGrad(dx, gr.bproj, T, H);
    b.matmul(dx, p.wproj, d4, T, 4 * H, H, { transB: true });
    b.geluBackward(s.u, d4, du);
    b.matmul(s.bn, du, gr.wfc, H, 4 * H, T, { transA: true, accumulate: true });
    b.biasGrad(du, gr.bfc, T, 4 * H);
    b.matmul(du, p.wfc, dT, T, H, 4 * H, { transB: true });
    b.layerNormBackward({
      dy: dT,
      x: s.h,
      gamma: p.ln2g,
      mean: s.mean2,
      rstd: s.rstd2,
      dx,
      dgamma: gr.ln2g,
      dbeta: gr.ln2b,
      rows: T,
      cols: H,
      accumulateDx: true,
    });
    // attention: h = x + attn(ln1(x))·Wo + bo
    b.matmul(s.y, dx, gr.wo, H, H, T, { transA: true, accumulate: true });
    b.biasGrad(dx, gr.bo, T, H);
    b.matmul(dx, p.wo, dT, T, H, H, { transB: true });
    const doLocal = b.alloc(NH * T * D);
    b.toHeadMajor(dT, doLocal, rowsLayout(H, 0));
    const [dO] = await this.#tokensToHeads(comm, [doLocal], bounds, hpr, D, `L${l}.bwd.dout`);
    const dq = b.alloc(hpr * S * D), dk = b.alloc(hpr * S * D), dv = b.alloc(hpr * S * D);
    b.attentionBackward({
      q: s.q,
      k: s.k,
      v: s.v,
      out: s.o,
      lse: s.lse,
      dout: dO,
      dq,
      dk,
      dv,
      cuSeqlens: cu,
      heads: hpr,
      seqLen: S,
      headDim: D,
      scale,
    });
    b.free(dO);
    const grads = await this.#headsToTokens(comm, [dq, dk, dv], bounds, hpr, D, `L${l}.bwd.dqkv`, true);
    grads.forEach((gh, i) => b.fromHeadMajor(gh, dqkv, rowsLayout(3 * H, i * H)));
    for (const gh of grads) b.free(gh);
    b.matmul(s.a, dqkv, gr.wqkv, H, 3 * H, T, { transA: true, accumulate: true });
    b.biasGrad(dqkv, gr.bqkv, T, 3 * H);
    b.matmul(dqkv, p.wqkv, dT, T, H, 3 * H, { transB: true });
    b.layerNormBackward({
      dy: dT,
      x: s.x,
      gamma: p.ln1g,
      mean: s.mean1,
      rstd: s.rstd1,
      dx,
      dgamma: gr.ln1g,
      dbeta: gr.ln1b,
      rows: T,
      cols: H,
      accumulateDx: true,
    });
  }

  /**
   * "Local tokens, all heads" -> "all tokens, this rank's heads": each input is `[NH, T, D]` for the local tokens;
   * each output is `[hpr, S, D]` for heads `[rank·hpr, (rank+1)·hpr)`. One all-to-all carries every input.
   * With d = 1 the inputs are returned as they are (then NH = hpr, T = S).
   */
  async #tokensToHeads(
    comm: GroupComm,
    inputs: Tensor[],
    bounds: number[],
    hpr: number,
    D: number,
    tag: string,
  ): Promise<Tensor[]> {
    const d = comm.size;
    if (d === 1) return inputs;
    const b = this.#b, me = comm.rank, S = bounds[d], nt = inputs.length;
    const T = bounds[me + 1] - bounds[me];
    const host = await Promise.all(inputs.map((x) => b.download(x)));
    for (const x of inputs) b.free(x);
    const block = hpr * T * D;
    const chunks: Float32Array[] = [];
    for (let j = 0; j < d; j++) {
      const c = new Float32Array(nt * block);
      for (let i = 0; i < nt; i++) c.set(host[i].subarray(j * block, (j + 1) * block), i * block);
      chunks.push(c);
    }
    const recv = await comm.allToAll(chunks, tag);
    const outs: Tensor[] = [];
    for (let i = 0; i < nt; i++) {
      const full = new Float32Array(hpr * S * D);
      for (let src = 0; src < d; src++) {
        const Ti = bounds[src + 1] - bounds[src];
        const r = recv[src];
        if (r.length !== nt * hpr * Ti * D) throw new Error(`Ulysses SP: ${tag}: bad chunk size from SP rank ${src}`);
        for (let hh = 0; hh < hpr; hh++) {
          const from = (i * hpr + hh) * Ti * D;
          full.set(r.subarray(from, from + Ti * D), (hh * S + bounds[src]) * D);
        }
      }
      outs.push(b.upload(full));
    }
    return outs;
  }

  /**
   * "All tokens, this rank's heads" -> "local tokens, all heads": the inverse of {@link #tokensToHeads}. Each
   * input is `[hpr, S, D]`; each output `[NH, T, D]`. With d = 1 the inputs are returned as they are. When
   * `consume` is set the inputs are freed once downloaded.
   */
  async #headsToTokens(
    comm: GroupComm,
    inputs: Tensor[],
    bounds: number[],
    hpr: number,
    D: number,
    tag: string,
    consume: boolean,
  ): Promise<Tensor[]> {
    const d = comm.size;
    if (d === 1) return inputs;
    const b = this.#b, me = comm.rank, S = bounds[d], nt = inputs.length;
    const T = bounds[me + 1] - bounds[me];
    const host = await Promise.all(inputs.map((x) => b.download(x)));
    if (consume) { for (const x of inputs) b.free(x); }
    const chunks: Float32Array[] = [];
    for (let j = 0; j < d; j++) {
      const a = bounds[j], Tj = bounds[j + 1] - a;
      const c = new Float32Array(nt * hpr * Tj * D);
      for (let i = 0; i < nt; i++) {
        for (let hh = 0; hh < hpr; hh++) {
          const from = (hh * S + a) * D;
          c.set(host[i].subarray(from, from + Tj * D), (i * hpr + hh) * Tj * D);
        }
      }
      chunks.push(c);
    }
    const recv = await comm.allToAll(chunks, tag);
    const block = hpr * T * D;
    const outs: Tensor[] = [];
    for (let i = 0; i < nt; i++) {
      const full = new Float32Array(d * block);
      for (let src = 0; src < d; src++) {
        const r = recv[src];
        if (r.length !== nt * block) throw new Error(`Ulysses SP: ${tag}: bad chunk size from SP rank ${src}`);
        full.set(r.subarray(i * block, (i + 1) * block), src * block);
      }
      outs.push(b.upload(full));
    }
    return outs;
  }
}
