// The deterministic sampler that forms global batches. A dataset's documents become training sequences (documents
// longer than the model's context are split into pieces or dropped, per `training.long_sequences`); every epoch
// visits all sequences once in an order drawn from the seed and the epoch number; a cursor marks the position.
// Its whole state (seed, epoch, cursor, the epoch's RNG state) is a few integers, saved in every checkpoint, so a
// resumed run draws exactly the batches the interrupted one would have.
//
// Without a dataset (`training.lengths` only), lengths are drawn from a named length distribution with a seeded
// `Rng` whose state is checkpointed the same way; executors then train on their synthetic token source.

import { sampleLengths } from "./length_distributions.ts";
import { Rng } from "./rng.ts";
import type { TrainingConfig } from "../config/types.ts";

/** Training sequences made from a dataset's documents. */
export interface SequenceTable {
  /** Token offset of each sequence in the token file. */
  offsets: Float64Array;
  lengths: Uint32Array;
  /** The document each sequence comes from. */
  docs: Uint32Array;
  /** Where each sequence starts inside its document (tokens; non-zero for the later pieces of a split document). */
  docOffsets: Float64Array;
  /** Documents longer than the context (split into pieces, or dropped). */
  longDocs: number;
  policy: TrainingConfig["longSequences"];
  maxSeq: number;
}

/** Builds the sequence table: documents up to `maxSeq` tokens as they are; longer ones split or dropped. */
export function buildSequenceTable(
  index: { offsets: Float64Array; lengths: Uint32Array },
  maxSeq: number,
  policy: TrainingConfig["longSequences"],
  minLength = 2,
): SequenceTable {
  let count = 0, longDocs = 0;
  for (const len of index.lengths) {
    if (len <= maxSeq) count += len >= minLength ? 1 : 0;
    else {
      longDocs++;
      if (policy === "split") count += Math.floor(len / maxSeq) + (len % maxSeq >= minLength ? 1 : 0);
    }
  }
  const offsets = new Float64Array(count), lengths = new Uint32Array(count), docs = new Uint32Array(count);
  const docOffsets = new Float64Array(count);
  let k = 0;
  for (let d = 0; d < index.lengths.length; d++) {
    const len = index.lengths[d], off = index.offsets[d];
    if (len <= maxSeq) {
      if (len < minLength) continue;
      offsets[k] = off, lengths[k] = len, docs[k++] = d;
    } else if (policy === "split") {
      for (let p = 0; p < len; p += maxSeq) {
        const piece = Math.min(maxSeq, len - p);
        if (piece < minLength) continue;
        offsets[k] = off + p, lengths[k] = piece, docOffsets[k] = p, docs[k++] = d;
      }
    }
  }
  return { offsets, lengths, docs, docOffsets, longDocs, policy, maxSeq };
}

/** A global batch: sequence ids, with their token offsets and lengths. */
export interface Batch {
  ids: number[];
  offsets: number[];
  lengths: number[];
  /** Epoch of the batch's first sequence (0 for synthetic lengths). */
  epoch: number;
  /** Per sequence: its document and where in that document it starts (absent for synthetic lengths). */
  docs?: number[];
  docOffsets?: number[];
}

/** The sampler's position, saved in checkpoints. */
export type SamplerState =
  | { kind: "dataset"; seed: number; epoch: number; cursor: number; epochRng: number; sequences: number }
  | { kind: "synthetic"; distribution: string; rng: number; drawn: number };

/** Draws global batches deterministically. */
export interface BatchSampler {
  next(size: number): Batch;
  state(): SamplerState;
}

/** The RNG seed of an epoch's order (SplitMix-style mix of the run seed and the epoch). */
export function epochSeed(seed: number, epoch: number): number {
  let z = (seed + Math.imul(epoch + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Epoch permutations over a sequence table. */
export class DatasetSampler implements BatchSampler {
  #epoch = 0;
  #cursor = 0;
  #epochRng = 0;
  #perm: Uint32Array = new Uint32Array(0);

  constructor(readonly table: SequenceTable, readonly seed: number, state?: SamplerState) {
    if (table.lengths.length === 0) throw new Error("sampler: the dataset has no usable sequence");
    if (state) {
      if (state.kind !== "dataset") throw new Error(`sampler: saved state is for ${state.kind} data, not a dataset`);
      if (state.sequences !== table.lengths.length) {
        throw new Error(`sampler: saved for ${state.sequences} sequences, this dataset has ${table.lengths.length}`);
      }
      if (state.seed !== seed) throw new Error(`sampler: saved with seed ${state.seed}, this run has seed ${seed}`);
      this.#startEpoch(state.epoch, state.epochRng);
      this.#cursor = state.cursor;
    } else {
      this.#startEpoch(0, epochSeed(seed, 0));
    }
  }

  #startEpoch(epoch: number, rngState: number): void {
    this.#epoch = epoch;
    this.#epochRng = rngState >>> 0;
    this.#cursor = 0;
    const n = this.table.lengths.length;
    const perm = new Uint32Array(n);
    for (let i = 0; i < n; i++) perm[i] = i;
    const rng = new Rng(this.#epochRng);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    this.#perm = perm;
  }

  next(size: number): Batch {
    const batch: Batch = { ids: [], offsets: [], lengths: [], epoch: this.#epoch, docs: [], docOffsets: [] };
    for (let k = 0; k < size; k++) {
      if (this.#cursor >= this.#perm.length) this.#startEpoch(this.#epoch + 1, epochSeed(this.seed, this.#epoch + 1));
      if (k === 0) batch.epoch = this.#epoch;
      const id = this.#perm[this.#cursor++];
      batch.ids.push(id);
      batch.offsets.push(this.table.offsets[id]);
      batch.lengths.push(this.table.lengths[id]);
      batch.docs!.push(this.table.docs[id]);
      batch.docOffsets!.push(this.table.docOffsets[id]);
    }
    return batch;
  }

  state(): SamplerState {
    return {
      kind: "dataset",
      seed: this.seed,
      epoch: this.#epoch,
      cursor: this.#cursor,
      epochRng: this.#epochRng,
      sequences: this.table.lengths.length,
    };
  }
}

/** Lengths drawn from a named distribution (no dataset); ids count the sequences drawn. */
export class SyntheticSampler implements BatchSampler {
  readonly #rng: Rng;
  #drawn = 0;

  constructor(readonly distribution: string, readonly maxSeq: number, seed: number, state?: SamplerState) {
    if (state && state.kind !== "synthetic") throw new Error("sampler: saved state is for a dataset");
    this.#rng = new Rng(state ? state.rng : seed);
    this.#drawn = state ? state.drawn : 0;
  }

  next(size: number): Batch {
    const lengths = sampleLengths(this.distribution, size, this.maxSeq, this.#rng).map((s) => Math.max(2, s));
    const ids = lengths.map(() => this.#drawn++);
    return { ids, offsets: ids.map(() => 0), lengths, epoch: 0 };
  }

  state(): SamplerState {
    return { kind: "synthetic", distribution: this.distribution, rng: this.#rng.state, drawn: this.#drawn };
  }
}
