// Placement of SP groups on concrete ranks: aligned power-of-two blocks, node-aware, on any device count.
// A buddy allocator hands out blocks in O(log N): exact-size free blocks first, else the smallest free block
// is split, so large aligned blocks stay whole for the groups that need them.

import type { Topology } from "./topology.ts";

/** A block of ranks handed to one group. */
export interface Block {
  start: number;
  degree: number;
  /** Slowest device speed in the block. */
  speed: number;
  /** Whether it spans nodes. */
  spans: boolean;
  /** Token capacity per device of the block (its smallest device). */
  capacity: number;
}

/** Descriptors of every aligned block of a topology, computed once. */
export class BlockTable {
  private readonly table = new Map<number, Block[]>();
  /** Fastest device speed inside each block, by degree then block index. */
  private readonly fastest = new Map<number, number[]>();
  readonly devices: number;

  constructor(topo: Topology, capacityOf: (rank: number) => number) {
    this.devices = topo.devices;
    let level: Block[] = [];
    let fast: number[] = [];
    for (let r = 0; r < topo.devices; r++) {
      level.push({ start: r, degree: 1, speed: topo.speed[r], spans: false, capacity: capacityOf(r) });
      fast.push(topo.speed[r]);
    }
    for (let d = 1; level.length > 0; d *= 2) {
      this.table.set(d, level);
      this.fastest.set(d, fast);
      const next: Block[] = [];
      const nextFast: number[] = [];
      for (let i = 0; i + 1 < level.length; i += 2) {
        const [a, b] = [level[i], level[i + 1]];
        next.push({
          start: a.start,
          degree: 2 * d,
          speed: Math.min(a.speed, b.speed),
          spans: a.spans || b.spans || topo.nodeOf[a.start] !== topo.nodeOf[b.start + d - 1],
          capacity: Math.min(a.capacity, b.capacity),
        });
        nextFast.push(Math.max(fast[i], fast[i + 1]));
      }
      level = next;
      fast = nextFast;
    }
  }

  /** The aligned block at `start` of size `degree`. */
  get(start: number, degree: number): Block {
    return this.table.get(degree)![start / degree];
  }

  /** Fastest device in the block. */
  fastestIn(start: number, degree: number): number {
    return this.fastest.get(degree)![start / degree];
  }

  /** Whether a block of this size exists at all. */
  has(degree: number): boolean {
    return (this.table.get(degree)?.length ?? 0) > 0;
  }
}

/** Allocates aligned blocks from the free ranks of one micro-batch. */
export class BlockAllocator {
  /** Free blocks by degree (starts). */
  private readonly freeLists = new Map<number, number[]>();
  private free: number;

  constructor(private readonly table: BlockTable) {
    this.free = table.devices;
    // The maximal aligned blocks covering [0, N).
    let r = 0;
    while (r < table.devices) {
      let d = 1;
      while (r % (2 * d) === 0 && r + 2 * d <= table.devices) d *= 2;
      this.list(d).push(r);
      r += d;
    }
  }

  private list(d: number): number[] {
    let l = this.freeLists.get(d);
    if (!l) this.freeLists.set(d, l = []);
    return l;
  }

  /** Ranks not yet in a block. */
  get freeRanks(): number {
    return this.free;
  }

  /**
   * Best free aligned block of this degree without taking it, or undefined. Preference: inside one node,
   * fastest, of one speed (not wasting faster devices), carved from the smallest free block (keeps large
   * blocks whole), lowest start.
   */
  peek(degree: number, minCapacity = 0): Block | undefined {
    if (this.free < degree) return undefined;
    let best: Block | undefined;
    let bestKey: number[] = [];
    for (const [size, starts] of this.freeLists) {
      if (size < degree) continue;
      for (const s of starts) {
        const sub = this.bestSub(s, size, degree, minCapacity);
        if (!sub) continue;
        // A block mixing device types runs at its slowest and holds its smallest: keep faster devices free.
        const mixed = this.table.fastestIn(sub.start, degree) > sub.speed ? 1 : 0;
        const key = [sub.spans ? 1 : 0, -sub.speed, mixed, size, sub.start];
        if (!best || lexLess(key, bestKey)) [best, bestKey] = [sub, key];
      }
    }
    return best;
  }

  /** Best block of `degree` inside the free block (s, size). */
  private bestSub(s: number, size: number, degree: number, minCapacity: number): Block | undefined {
    const top = this.table.fastestIn(s, size);
    let best: Block | undefined;
    let bestMixed = false;
    for (let x = s; x < s + size; x += degree) {
      const b = this.table.get(x, degree);
      if (b.capacity < minCapacity) continue;
      const mixedB = this.table.fastestIn(x, degree) > b.speed;
      if (
        !best || (best.spans && !b.spans) || (best.spans === b.spans && b.speed > best.speed) ||
        (best.spans === b.spans && b.speed === best.speed && bestMixed && !mixedB)
      ) [best, bestMixed] = [b, mixedB];
      if (!best.spans && best.speed >= top && !bestMixed) break;
    }
    return best;
  }

  /** Takes a block (from `peek`), splitting the free block that holds it. */
  take(block: Block): void {
    for (const [size, starts] of this.freeLists) {
      if (size < block.degree) continue;
      const i = starts.findIndex((s) => s <= block.start && block.start < s + size);
      if (i < 0) continue;
      starts.splice(i, 1);
      // Return the buddies on the path from the containing block down to the taken one.
      let d = block.degree;
      let start = block.start;
      while (d < size) {
        const buddy = start ^ d;
        this.list(d).push(buddy);
        start = Math.min(start, buddy);
        d *= 2;
      }
      this.free -= block.degree;
      return;
    }
    throw new Error(`block [${block.start}, ${block.start + block.degree}) is not free`);
  }

  /** Covers the remaining free ranks with their free blocks (idle groups), largest blocks as they are. */
  remainder(): Block[] {
    const out: Block[] = [];
    for (const [size, starts] of this.freeLists) for (const s of starts) out.push(this.table.get(s, size));
    this.freeLists.clear();
    this.free = 0;
    return out.sort((a, b) => a.start - b.start);
  }
}

function lexLess(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

/** The largest power of two not above n. */
export function floorPow2(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}
