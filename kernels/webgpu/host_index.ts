// Host-side index tables the WebGPU kernels read instead of searching on the device: the CSR list of token rows per
// embedding-table row (for the atomic-free scatter-add backward) and each token's [start, end) sequence bounds from
// cuSeqlens (for varlen attention). Pure functions over Int32Arrays, built once per uploaded int tensor.

/** A CSR index of which rows use which table entries: `packed = [ids(unique) | start(unique+1) | rows(n)]`. */
export interface CsrIndex {
  /** Number of distinct ids. */
  unique: number;
  /** The packed table as uploaded to the device. */
  packed: Int32Array;
}

/**
 * Groups rows `0..n-1` by `ids[r]`: distinct ids ascending, each followed by its rows in ascending order.
 * Throws when an id is outside `[0, limit)`.
 */
export function buildCsrIndex(ids: Int32Array, n: number, limit: number, what: string): CsrIndex {
  const counts = new Map<number, number>();
  for (let r = 0; r < n; r++) {
    const id = ids[r];
    if (!(id >= 0 && id < limit)) throw new RangeError(`${what}[${r}] = ${id} is outside [0, ${limit})`);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const distinct = [...counts.keys()].sort((a, b) => a - b);
  const unique = distinct.length;
  const packed = new Int32Array(2 * unique + 1 + n);
  const slot = new Map<number, number>();
  let off = 0;
  distinct.forEach((id, u) => {
    packed[u] = id;
    packed[unique + u] = off;
    slot.set(id, off);
    off += counts.get(id)!;
  });
  packed[2 * unique] = off;
  const base = 2 * unique + 1;
  for (let r = 0; r < n; r++) {
    const s = slot.get(ids[r])!;
    packed[base + s] = r;
    slot.set(ids[r], s + 1);
  }
  return { unique, packed };
}

/**
 * Per token `t < seqLen` of a packed stream, the bounds `[start, end)` of its sequence as pairs
 * `[2t] = start, [2t+1] = end`. Validates `0 = c[0] < c[1] < ... < c[last] = seqLen`.
 */
export function buildSeqBounds(cuSeqlens: Int32Array, seqLen: number): Int32Array {
  const n = cuSeqlens.length;
  if (n < 2 || cuSeqlens[0] !== 0 || cuSeqlens[n - 1] !== seqLen) {
    throw new RangeError(
      `cuSeqlens must run from 0 to seqLen ${seqLen}, got [${cuSeqlens.slice(0, 4).join(", ")}${
        n > 4 ? ", ..." : ""
      }] ending at ${cuSeqlens[n - 1]}`,
    );
  }
  const out = new Int32Array(2 * seqLen);
  for (let s = 0; s + 1 < n; s++) {
    const a = cuSeqlens[s], b = cuSeqlens[s + 1];
    if (!(b > a)) throw new RangeError(`cuSeqlens is not strictly increasing at index ${s + 1} (${a} then ${b})`);
    for (let t = a; t < b; t++) {
      out[2 * t] = a;
      out[2 * t + 1] = b;
    }
  }
  return out;
}
