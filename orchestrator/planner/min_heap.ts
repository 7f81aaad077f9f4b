// A binary min-heap keyed by a number, with in-place re-keying of its top (LPT-style packing).

/** Min-heap of items ordered by `key(item)`; keys may change only for the top, then call `fixTop`. */
export class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly key: (item: T) => number) {}

  get size(): number {
    return this.items.length;
  }

  /** The item with the smallest key. */
  peek(): T | undefined {
    return this.items[0];
  }

  /** All items, in heap order. */
  values(): readonly T[] {
    return this.items;
  }

  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.key(a[p]) <= this.key(a[i])) break;
      [a[p], a[i]] = [a[i], a[p]];
      i = p;
    }
  }

  /** Restores heap order after the top item's key grew. */
  fixTop(): void {
    this.siftDown(0);
  }

  /** Restores heap order after the key of the item at `index` grew. */
  fixAt(index: number): void {
    this.siftDown(index);
  }

  private siftDown(i: number): void {
    const a = this.items;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.key(a[l]) < this.key(a[m])) m = l;
      if (r < n && this.key(a[r]) < this.key(a[m])) m = r;
      if (m === i) return;
      [a[m], a[i]] = [a[i], a[m]];
      i = m;
    }
  }
}
