// The WebGPU backend's tensor handles: float tensors (whole buffers or aligned views into one) and int tensors that
// keep the host copy they were uploaded from, plus the index tables derived from it (CSR, sequence bounds).

import type { IntTensor, Tensor } from "../backend.ts";
import type { BufferRange } from "./context.ts";

/** A float32 tensor living in (a range of) a GPU buffer. */
export class GpuTensor implements Tensor {
  readonly dtype = "f32" as const;
  /** Set when the owning buffer was released. */
  freed = false;

  /**
   * @param buffer the GPU buffer holding the data
   * @param byteOffset start of the tensor in the buffer (a multiple of 256)
   * @param length number of float32 elements
   * @param parent the tensor this is a view of (null for an owning tensor)
   */
  constructor(
    readonly buffer: GPUBuffer,
    readonly byteOffset: number,
    readonly length: number,
    readonly parent: GpuTensor | null,
  ) {}

  /** The binding range of the first `elems` elements. */
  range(elems = this.length): BufferRange {
    return { buffer: this.buffer, offset: this.byteOffset, size: Math.max(4, elems * 4) };
  }

  /** Whether this tensor or the one it views has been freed. */
  get dead(): boolean {
    return this.freed || (this.parent?.dead ?? false);
  }
}

/** An int32 tensor; uploaded from the host, whose copy it keeps to build index tables without a readback. */
export class GpuIntTensor implements IntTensor {
  readonly dtype = "i32" as const;
  /** Set when released. */
  freed = false;
  /** Derived device-side tables (CSR indices, sequence bounds), keyed by their parameters; freed with the tensor. */
  readonly derived = new Map<string, { buffer: GPUBuffer; count: number }>();
  /** Cached value range of the host data (validated once). */
  private rangeCache: { n: number; min: number; max: number } | null = null;

  constructor(readonly buffer: GPUBuffer, readonly host: Int32Array) {}

  /** Number of int32 elements. */
  get length(): number {
    return this.host.length;
  }

  /** The binding range of the first `elems` elements. */
  range(elems = this.length): BufferRange {
    return { buffer: this.buffer, offset: 0, size: Math.max(4, elems * 4) };
  }

  /** Smallest and largest of the first `n` values (cached for the largest n asked so far). */
  valueRange(n: number): { min: number; max: number } {
    if (!this.rangeCache || this.rangeCache.n !== n) {
      let min = Infinity, max = -Infinity;
      for (let i = 0; i < n; i++) {
        const v = this.host[i];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      this.rangeCache = { n, min, max };
    }
    return this.rangeCache;
  }
}
