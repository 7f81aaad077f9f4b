// Optional per-dispatch GPU timing with timestamp queries: each profiled dispatch gets its own compute pass whose
// begin/end timestamps are resolved at submit time and read back asynchronously, accumulated per kernel key.
// Used by the benchmark to attribute a training step's device time to kernels without host-sync overhead.

/** Accumulated device time of one kernel key. */
export interface KernelTime {
  /** Number of dispatches. */
  count: number;
  /** Total device milliseconds. */
  ms: number;
}

const QUERY_RESOLVE = 0x200;
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;

/** Records timestamps around dispatches (requires the device feature "timestamp-query"). */
export class GpuProfiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuf: GPUBuffer;
  private keys: string[] = [];
  private readonly pending: Promise<void>[] = [];
  private readonly totals = new Map<string, KernelTime>();
  private unsubmitted: { buf: GPUBuffer; keys: string[] } | null = null;

  /** `capacity`: dispatches per submission (the context flushes early when it is reached). */
  constructor(private readonly device: GPUDevice, readonly capacity = 2048) {
    this.querySet = device.createQuerySet({ type: "timestamp", count: capacity * 2 });
    this.resolveBuf = device.createBuffer({ size: capacity * 16, usage: QUERY_RESOLVE | COPY_SRC });
  }

  /** Whether another dispatch fits before the next submission. */
  get full(): boolean {
    return this.keys.length >= this.capacity;
  }

  /** The timestamp writes of the pass that will hold the next dispatch of `key`. */
  next(key: string): GPUComputePassTimestampWrites {
    const q = this.keys.length;
    this.keys.push(key);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * q, endOfPassWriteIndex: 2 * q + 1 };
  }

  /** Records the resolve of this submission's timestamps (call before `encoder.finish()`). */
  resolve(encoder: GPUCommandEncoder): void {
    const n = this.keys.length;
    if (n === 0) return;
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolveBuf, 0);
    const buf = this.device.createBuffer({ size: n * 16, usage: MAP_READ | COPY_DST });
    encoder.copyBufferToBuffer(this.resolveBuf, 0, buf, 0, n * 16);
    this.unsubmitted = { buf, keys: this.keys };
    this.keys = [];
  }

  /** Starts reading back the timestamps of the submission just made. */
  submitted(): void {
    const u = this.unsubmitted;
    if (!u) return;
    this.unsubmitted = null;
    this.pending.push((async () => {
      await u.buf.mapAsync(MAP_READ);
      const ts = new BigUint64Array(u.buf.getMappedRange().slice(0));
      u.buf.unmap();
      u.buf.destroy();
      u.keys.forEach((key, i) => {
        const ns = Number(ts[2 * i + 1] - ts[2 * i]);
        const t = this.totals.get(key) ?? { count: 0, ms: 0 };
        t.count++;
        t.ms += Math.max(0, ns) / 1e6;
        this.totals.set(key, t);
      });
    })());
  }

  /** Waits for all read-backs and returns the totals per kernel key (then resets them). */
  async take(): Promise<Map<string, KernelTime>> {
    await Promise.all(this.pending.splice(0));
    const out = new Map(this.totals);
    this.totals.clear();
    return out;
  }

  /** Releases the query set and buffers. */
  destroy(): void {
    this.querySet.destroy();
    this.resolveBuf.destroy();
  }
}
