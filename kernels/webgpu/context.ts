// The WebGPU command recorder shared by all kernels: pipeline cache, buffer creation, uniform arena, and one
// command encoder that batches every dispatch, copy and upload of a phase into a single queue submission.

import { GpuProfiler, type KernelTime } from "./profiler.ts";

/** How a shader binding is used: uniform parameters, read-only storage or read-write storage. */
export type BindingKind = "uniform" | "read" | "rw";

/** A compute kernel: WGSL source with one entry point `main` and its bindings in order (group 0, binding i). */
export interface KernelSpec {
  /** Unique cache key (the source is compiled once per key). */
  key: string;
  /** WGSL source. */
  code: string;
  /** Binding kinds for @group(0) @binding(0..n-1). */
  bindings: readonly BindingKind[];
}

/** A storage buffer range bound to a kernel; offset must be a multiple of 256 bytes. */
export interface BufferRange {
  buffer: GPUBuffer;
  /** Byte offset (default 0). */
  offset?: number;
  /** Byte size (default: the rest of the buffer). */
  size?: number;
}

/** Values of a uniform block, written in declaration order as 4-byte words; `f` marks a float, else u32/i32. */
export type UniformValue = number | { f: number } | { i: number };

const UNIFORM_SLOT = 256;
const UNIFORM_CHUNK_SLOTS = 256;
const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

/** Records compute work on one device and submits it in batches; reads back through mapAsync. */
export class GpuContext {
  /** The device all work runs on. */
  readonly device: GPUDevice;
  /** Largest byte size a single storage binding may have. */
  readonly maxBindingBytes: number;
  /** Largest workgroup count per dispatch dimension. */
  readonly maxWorkgroupsPerDim: number;
  /** Number of queue submissions so far (for tests and benchmarks). */
  submissions = 0;
  /** Number of dispatches recorded so far. */
  dispatches = 0;

  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private readonly aliasSpecs = new Map<string, KernelSpec>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly uniformChunks: GPUBuffer[] = [];
  private uniformHostChunks: Uint8Array<ArrayBuffer>[] = [];
  private uniformSlotsUsed = 0;
  private pendingDestroy: GPUBuffer[] = [];
  private scratchBuf: GPUBuffer | null = null;
  private lost = false;
  private profiler: GpuProfiler | null = null;
  private readonly errors: string[] = [];

  /** `options.maxBindingBytes` may lower (never raise) the binding limit the launchers plan for (tests). */
  constructor(device: GPUDevice, options: { maxBindingBytes?: number } = {}) {
    this.device = device;
    const limit = device.limits.maxStorageBufferBindingSize;
    this.maxBindingBytes = Math.min(limit, options.maxBindingBytes ?? limit);
    this.maxWorkgroupsPerDim = device.limits.maxComputeWorkgroupsPerDimension;
    device.lost.then(() => {
      this.lost = true;
    });
    device.addEventListener("uncapturederror", (e) => {
      this.errors.push((e as GPUUncapturedErrorEvent).error.message.trim());
    });
  }

  /** Creates a storage buffer (STORAGE | COPY_SRC | COPY_DST) of at least `bytes` bytes (rounded up to 16). */
  createBuffer(bytes: number, label?: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    return this.device.createBuffer({ size, usage: STORAGE_USAGE, label });
  }

  /** Returns a compiled pipeline for a kernel spec (compiled on first use). */
  pipeline(spec: KernelSpec): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    let p = this.pipelines.get(spec.key);
    if (!p) {
      const layout = this.device.createBindGroupLayout({
        label: spec.key,
        entries: spec.bindings.map((kind, binding) => ({
          binding,
          visibility: 4, /* GPUShaderStage.COMPUTE */
          buffer: { type: kind === "uniform" ? "uniform" : kind === "read" ? "read-only-storage" : "storage" },
        })),
      });
      const module = this.device.createShaderModule({ code: spec.code, label: spec.key });
      const pipeline = this.device.createComputePipeline({
        label: spec.key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: "main" },
      });
      p = { pipeline, layout };
      this.pipelines.set(spec.key, p);
    }
    return p;
  }

  /**
   * Records one dispatch. `uniforms` (if the spec's first binding is a uniform) are packed into 4-byte words;
   * `buffers` fill the remaining bindings in order. Workgroup counts must each be within the device limit.
   */
  dispatch(
    kernel: KernelSpec,
    uniforms: readonly UniformValue[] | null,
    buffers: readonly (GPUBuffer | BufferRange)[],
    groups: readonly [number, number?, number?],
  ): void {
    if (this.lost) throw new Error("WebGPU device was lost");
    let spec = kernel;
    const [gx, gy = 1, gz = 1] = groups;
    if (gx === 0 || gy === 0 || gz === 0) return;
    for (const g of [gx, gy, gz]) {
      if (g > this.maxWorkgroupsPerDim || !Number.isInteger(g) || g < 0) {
        throw new Error(`${spec.key}: workgroup count ${g} outside 0..${this.maxWorkgroupsPerDim}`);
      }
    }
    const first = spec.bindings[0] === "uniform" ? 1 : 0;
    if (first + buffers.length !== spec.bindings.length) {
      throw new Error(`${spec.key}: expected ${spec.bindings.length - first} buffers, got ${buffers.length}`);
    }
    if (this.readWriteAliased(spec, buffers, first)) spec = this.aliasVariant(spec);
    const { pipeline, layout } = this.pipeline(spec);
    const entries: GPUBindGroupEntry[] = [];
    let b = 0;
    if (first === 1) {
      entries.push({ binding: 0, resource: this.uniformSlot(uniforms ?? []) });
      b = 1;
    }
    for (const buf of buffers) {
      const r: BufferRange = "buffer" in buf ? buf : { buffer: buf as GPUBuffer };
      const offset = r.offset ?? 0;
      const size = r.size ?? r.buffer.size - offset;
      if (size > this.maxBindingBytes) {
        throw new Error(
          `${spec.key}: binding ${b} is ${size} bytes, over maxStorageBufferBindingSize ${this.maxBindingBytes}`,
        );
      }
      if (offset % 256 !== 0) throw new Error(`${spec.key}: binding ${b} offset ${offset} is not 256-aligned`);
      entries.push({ binding: b, resource: { buffer: r.buffer, offset, size: Math.max(4, Math.ceil(size / 4) * 4) } });
      b++;
    }
    const bindGroup = this.device.createBindGroup({ layout, entries });
    if (this.profiler) {
      if (this.profiler.full) this.flush();
      this.endPass();
      this.pass = this.commandEncoder().beginComputePass({ timestampWrites: this.profiler.next(spec.key) });
    }
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(gx, gy, gz);
    if (this.profiler) this.endPass();
    this.dispatches++;
  }

  /**
   * Splits `count` workgroups into a 2-D grid within the per-dimension limit.
   * Kernels recover the linear workgroup id as `wid.x + wid.y * nwg.x` and must bounds-check it.
   */
  grid(count: number): [number, number] {
    if (count <= this.maxWorkgroupsPerDim) return [count, 1];
    const y = Math.ceil(count / this.maxWorkgroupsPerDim);
    const x = Math.ceil(count / y);
    if (y > this.maxWorkgroupsPerDim) throw new Error(`dispatch of ${count} workgroups is too large`);
    return [x, y];
  }

  /** Records a buffer-to-buffer copy (ordered with the dispatches around it). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Records a zero fill of a byte range (offset and size multiples of 4). */
  clear(buf: GPUBuffer, offset = 0, bytes?: number): void {
    this.endPass();
    this.commandEncoder().clearBuffer(buf, offset, bytes ?? buf.size - offset);
  }

  /** Records an upload of host data into a buffer, ordered with the recorded work (via a mapped staging buffer). */
  write(dst: GPUBuffer, dstOffset: number, data: ArrayBufferView): void {
    const bytes = data.byteLength;
    if (bytes === 0) return;
    const padded = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size: padded, usage: 0x04, /* COPY_SRC */ mappedAtCreation: true });
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, bytes));
    staging.unmap();
    this.copy(staging, 0, dst, dstOffset, padded);
    this.pendingDestroy.push(staging);
  }

  /** Submits everything recorded so far as one command buffer (no-op when nothing is recorded). */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    const nChunks = Math.ceil(this.uniformSlotsUsed / UNIFORM_CHUNK_SLOTS);
    for (let c = 0; c < nChunks; c++) {
      const used = Math.min(UNIFORM_CHUNK_SLOTS, this.uniformSlotsUsed - c * UNIFORM_CHUNK_SLOTS);
      this.device.queue.writeBuffer(this.uniformChunks[c], 0, this.uniformHostChunks[c], 0, used * UNIFORM_SLOT);
    }
    this.uniformSlotsUsed = 0;
    this.profiler?.resolve(this.encoder);
    this.device.queue.submit([this.encoder.finish()]);
    this.profiler?.submitted();
    this.encoder = null;
    this.submissions++;
    for (const b of this.pendingDestroy) b.destroy();
    this.pendingDestroy = [];
  }

  /** Flushes and waits until the device has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwErrors();
  }

  /** Throws if the device reported a validation or out-of-memory error since the last check. */
  throwErrors(): void {
    if (this.errors.length === 0) return;
    const msg = this.errors.join("\n");
    this.errors.length = 0;
    throw new Error(`WebGPU error: ${msg}`);
  }

  /** Flushes, copies a byte range into a mappable buffer and returns its contents. */
  async read(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const padded = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ size: padded, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */ });
    this.copy(src, offset, staging, 0, padded);
    this.flush();
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
      const data = staging.getMappedRange().slice(0, bytes);
      this.throwErrors();
      return data;
    } finally {
      staging.unmap();
      staging.destroy();
    }
  }

  /**
   * Starts timing every dispatch with timestamp queries (each then runs in its own compute pass). Requires a
   * device opened with the "timestamp-query" feature; returns false (and does nothing) otherwise.
   */
  startProfiling(): boolean {
    if (!this.device.features.has("timestamp-query")) return false;
    this.flush();
    this.profiler ??= new GpuProfiler(this.device);
    return true;
  }

  /** Flushes, waits for the timestamps and returns device milliseconds per kernel key since the last call. */
  async profile(): Promise<Map<string, KernelTime>> {
    if (!this.profiler) return new Map();
    this.flush();
    return await this.profiler.take();
  }

  /** Stops timing dispatches. */
  async stopProfiling(): Promise<void> {
    if (!this.profiler) return;
    this.flush();
    await this.profiler.take();
    this.profiler.destroy();
    this.profiler = null;
  }

  /** Releases cached pipelines' resources and destroys the device. */
  destroy(): void {
    this.flush();
    this.profiler?.destroy();
    this.profiler = null;
    for (const c of this.uniformChunks) c.destroy();
    this.scratchBuf?.destroy();
    this.scratchBuf = null;
    this.uniformChunks.length = 0;
    this.pipelines.clear();
    this.device.destroy();
  }

  /**
   * A scratch range of at least `bytes` bytes at offset 0 of a buffer shared by all kernels. Recorded work runs in
   * order, so one op may use it freely between its own dispatches; its contents do not survive the next op.
   */
  scratch(bytes: number): BufferRange {
    const size = Math.max(256, Math.ceil(bytes / 256) * 256);
    if (size > this.maxBindingBytes) throw new Error(`scratch of ${size} bytes exceeds the storage binding limit`);
    if (!this.scratchBuf || this.scratchBuf.size < size) {
      if (this.scratchBuf) this.destroyLater(this.scratchBuf);
      this.scratchBuf = this.createBuffer(Math.max(size, 64 * 1024), "scratch");
    }
    return { buffer: this.scratchBuf, offset: 0, size };
  }

  /** Destroys a buffer once the work recorded so far has been submitted (immediately when nothing is pending). */
  destroyLater(buf: GPUBuffer): void {
    if (this.encoder) this.pendingDestroy.push(buf);
    else buf.destroy();
  }

  /** Whether work is recorded but not yet submitted. */
  get pending(): boolean {
    return this.encoder !== null;
  }

  // WebGPU forbids one buffer in a read-only and a writable binding of the same dispatch, even at disjoint ranges
  // (views of one parent). Such dispatches use a variant whose read-only bindings are declared read_write.
  private readWriteAliased(spec: KernelSpec, buffers: readonly (GPUBuffer | BufferRange)[], first: number): boolean {
    const kinds = new Map<GPUBuffer, Set<BindingKind>>();
    buffers.forEach((buf, i) => {
      const gb = "buffer" in buf ? buf.buffer : buf as GPUBuffer;
      let set = kinds.get(gb);
      if (!set) kinds.set(gb, set = new Set());
      set.add(spec.bindings[first + i]);
    });
    for (const set of kinds.values()) if (set.size > 1) return true;
    return false;
  }

  private aliasVariant(spec: KernelSpec): KernelSpec {
    let v = this.aliasSpecs.get(spec.key);
    if (!v) {
      v = {
        key: `${spec.key}#alias`,
        code: spec.code.replaceAll("var<storage, read>", "var<storage, read_write>"),
        bindings: spec.bindings.map((k) => k === "read" ? "rw" : k),
      };
      this.aliasSpecs.set(spec.key, v);
    }
    return v;
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private uniformSlot(values: readonly UniformValue[]): GPUBufferBinding {
    if (values.length * 4 > UNIFORM_SLOT) throw new Error(`too many uniform values (${values.length})`);
    const slot = this.uniformSlotsUsed++;
    const chunk = Math.floor(slot / UNIFORM_CHUNK_SLOTS);
    while (this.uniformChunks.length <= chunk) {
      this.uniformChunks.push(
        this.device.createBuffer({ size: UNIFORM_SLOT * UNIFORM_CHUNK_SLOTS, usage: 0x40 /* UNIFORM */ | 0x08 }),
      );
      this.uniformHostChunks.push(new Uint8Array(UNIFORM_SLOT * UNIFORM_CHUNK_SLOTS));
    }
    const offset = (slot % UNIFORM_CHUNK_SLOTS) * UNIFORM_SLOT;
    const view = new DataView(this.uniformHostChunks[chunk].buffer, offset, UNIFORM_SLOT);
    values.forEach((v, i) => {
      if (typeof v === "number") {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform ${i}: ${v} is not a u32`);
        view.setUint32(i * 4, v, true);
      } else if ("f" in v) view.setFloat32(i * 4, v.f, true);
      else view.setInt32(i * 4, v.i, true);
    });
    return { buffer: this.uniformChunks[chunk], offset, size: UNIFORM_SLOT };
  }
}
