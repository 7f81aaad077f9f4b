// Packs an SP group's sequences into one 1-D token stream (positions restart per sequence, next-token targets
// inside each sequence, cumulative sequence lengths) and cuts the contiguous slice each SP rank holds.
//
// Padding: the packed length S is rounded up to a multiple of the degree d (and to at least d) with ignored
// tokens (token 0, positions 0,1,.. mod maxSeq, target -1) that form their own segment in cuSeqlens, so attention never
// mixes them with real tokens and they carry no loss or gradient. Rank r then holds exactly
// [r·S/d, (r+1)·S/d).

/** The packed stream of one group, as every rank of the group sees it. */
export interface PackedGroup {
  /** Packed length including padding; a multiple of `degree`. */
  seqLen: number;
  degree: number;
  /** All tokens, positions and targets of the stream (`-1` = no target). */
  tokens: Int32Array;
  positions: Int32Array;
  targets: Int32Array;
  /** Cumulative segment lengths over the stream (real sequences, then the padding segment if any). */
  cuSeqlens: Int32Array;
  /** Token bounds of the SP ranks: rank r holds `[bounds[r], bounds[r+1])`. */
  bounds: number[];
  /** Number of positions that carry a target (Σ (length - 1) over the sequences). */
  targetCount: number;
}

/** One SP rank's part of a packed group: what the Ulysses model consumes. */
export interface RankSlice {
  group: PackedGroup;
  /** This rank's SP rank. */
  spRank: number;
  /** Local token count, `bounds[spRank+1] - bounds[spRank]`. */
  count: number;
  tokens: Int32Array;
  positions: Int32Array;
  targets: Int32Array;
}

/**
 * Packs `sequences` (token arrays, each 1..maxSeq long) for a group of `degree` ranks. Throws a clear error on
 * an empty or over-long sequence or an out-of-vocabulary token.
 */
export function packGroup(sequences: Int32Array[], degree: number, maxSeq: number, vocab: number): PackedGroup {
  if (!Number.isInteger(degree) || degree < 1) throw new Error(`packing: bad degree ${degree}`);
  let real = 0;
  sequences.forEach((s, i) => {
    if (s.length < 1) throw new Error(`packing: sequence ${i} is empty`);
    if (s.length > maxSeq) throw new Error(`packing: sequence ${i} has ${s.length} tokens, more than maxSeq ${maxSeq}`);
    real += s.length;
  });
  const seqLen = Math.max(degree, Math.ceil(real / degree) * degree);
  const tokens = new Int32Array(seqLen), positions = new Int32Array(seqLen), targets = new Int32Array(seqLen);
  targets.fill(-1);
  const cu: number[] = [0];
  let o = 0, targetCount = 0;
  for (const s of sequences) {
    for (let i = 0; i < s.length; i++) {
      const t = s[i];
      if (!(t >= 0 && t < vocab)) throw new Error(`packing: token ${t} outside the vocabulary [0, ${vocab})`);
      tokens[o + i] = t;
      positions[o + i] = i;
      if (i + 1 < s.length) targets[o + i] = s[i + 1];
    }
    targetCount += s.length - 1;
    o += s.length;
    cu.push(o);
  }
  if (o < seqLen) {
    for (let i = o; i < seqLen; i++) positions[i] = (i - o) % maxSeq;
    cu.push(seqLen);
  }
  const bounds: number[] = [];
  for (let r = 0; r <= degree; r++) bounds.push((r * seqLen) / degree);
  return { seqLen, degree, tokens, positions, targets, cuSeqlens: Int32Array.from(cu), bounds, targetCount };
}

/** The slice of `group` that SP rank `spRank` holds. */
export function rankSlice(group: PackedGroup, spRank: number): RankSlice {
  if (!(spRank >= 0 && spRank < group.degree)) throw new Error(`packing: SP rank ${spRank} outside the group`);
  const a = group.bounds[spRank], b = group.bounds[spRank + 1];
  return {
    group,
    spRank,
    count: b - a,
    tokens: group.tokens.subarray(a, b),
    positions: group.positions.subarray(a, b),
    targets: group.targets.subarray(a, b),
  };
}
