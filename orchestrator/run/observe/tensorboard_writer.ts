// TensorBoard event files written by flexsp itself: TFRecord framing (u64 length, masked CRC32C of the length, the
// record, masked CRC32C of the record) around `Event` protos whose few fields are encoded by hand: wall_time (1,
// double), step (2, int64), file_version (3, string) and summary (5) of values with tag (1) and simple_value (2,
// float). Every step's scalars are written (and reach the file) at once. A step that is written again (a resumed
// run re-executes the steps after its checkpoint) first cuts every event of that step and later ones out of the
// existing files (each rewritten atomically), so the directory never holds a step twice.

import { writeAtomic } from "../../../core/atomic_write.ts";
import { WriteFailure } from "../../errors.ts";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC32C (Castagnoli) of `b`. */
export function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15, add a constant. */
export function maskedCrc32c(b: Uint8Array): number {
  const c = crc32c(b);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function varint(n: number | bigint, out: number[]): void {
  let v = BigInt.asUintN(64, BigInt(n));
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function bytesField(field: number, data: Uint8Array, out: number[]): void {
  varint((field << 3) | 2, out);
  varint(data.length, out);
  for (const x of data) out.push(x);
}

/** One `Event` proto: a file_version header (no scalars) or a summary of scalars at a step. */
export function encodeEvent(
  e: { wallTime: number; step?: number; fileVersion?: string; scalars?: [string, number][] },
) {
  const out: number[] = [];
  const d = new DataView(new ArrayBuffer(8));
  d.setFloat64(0, e.wallTime, true);
  out.push(0x09, ...new Uint8Array(d.buffer));
  if (e.step !== undefined) {
    out.push(0x10);
    varint(e.step, out);
  }
  if (e.fileVersion !== undefined) bytesField(3, new TextEncoder().encode(e.fileVersion), out);
  if (e.scalars) {
    const summary: number[] = [];
    for (const [tag, value] of e.scalars) {
      const v: number[] = [];
      bytesField(1, new TextEncoder().encode(tag), v);
      const f = new DataView(new ArrayBuffer(4));
      f.setFloat32(0, value, true);
      v.push(0x15, ...new Uint8Array(f.buffer));
      bytesField(1, Uint8Array.from(v), summary);
    }
    bytesField(5, Uint8Array.from(summary), out);
  }
  return Uint8Array.from(out);
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(data.length), true);
  v.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  v.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** The records of a TFRecord file (a torn or corrupt tail ends the list). */
export function readTfRecords(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  while (o + 12 <= b.length) {
    const n = Number(v.getBigUint64(o, true));
    if (v.getUint32(o + 8, true) !== maskedCrc32c(b.subarray(o, o + 8)) || o + 16 + n > b.length) break;
    const data = b.subarray(o + 12, o + 12 + n);
    if (v.getUint32(o + 12 + n, true) !== maskedCrc32c(data)) break;
    out.push(data);
    o += 16 + n;
  }
  return out;
}

/** The step field of an encoded `Event` (0 when absent). */
export function eventStep(e: Uint8Array): number {
  let o = 0;
  const readVarint = () => {
    let r = 0n, shift = 0n;
    for (;;) {
      const x = e[o++];
      r |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) return r;
      shift += 7n;
    }
  };
  while (o < e.length) {
    const key = Number(readVarint());
    const field = key >> 3, wire = key & 7;
    if (field === 2 && wire === 0) return Number(BigInt.asIntN(64, readVarint()));
    if (wire === 0) readVarint();
    else if (wire === 1) o += 8;
    else if (wire === 5) o += 4;
    else if (wire === 2) o += Number(readVarint());
    else break;
  }
  return 0;
}

/** Appends scalar events to a new event file of `dir` (see the file header). */
export class TensorBoardWriter {
  #file: Deno.FsFile | undefined;
  #path = "";
  #lastStep = -Infinity;
  #seq = 0;

  constructor(readonly dir: string) {}

  /** The steps already in the directory's event files (for a resumed run). */
  async existingSteps(): Promise<number[]> {
    const steps = new Set<number>();
    for (const f of await this.#files()) {
      for (const r of readTfRecords(await Deno.readFile(f))) {
        const s = eventStep(r);
        if (s > 0) steps.add(s);
      }
    }
    return [...steps].sort((a, b) => a - b);
  }

  async #files(): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const e of Deno.readDir(this.dir)) {
        if (e.isFile && e.name.startsWith("events.out.tfevents.") && !e.name.includes(".tmp-")) {
          out.push(`${this.dir}/${e.name}`);
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out.sort();
  }

  /** Removes every event of step `step` and later from the directory's files (each rewritten atomically). */
  async truncateFrom(step: number): Promise<void> {
    this.#file?.close();
    this.#file = undefined;
    for (const f of await this.#files()) {
      const records = readTfRecords(await Deno.readFile(f));
      const keep = records.filter((r) => eventStep(r) < step);
      if (keep.length === records.length) continue;
      const parts = keep.map(tfRecord);
      const bytes = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
      let o = 0;
      for (const p of parts) bytes.set(p, (o += p.length) - p.length);
      await writeAtomic(f, bytes);
    }
    this.#lastStep = step - 1;
  }

  /** Writes the scalars of one step (a step not after the last written one first truncates, see the header). */
  async scalars(step: number, values: [string, number][], wallTime = Date.now() / 1000): Promise<void> {
    try {
      await this.#scalars(step, values, wallTime);
    } catch (e) {
      throw e instanceof WriteFailure ? e : new WriteFailure(this.#path || this.dir, e);
    }
  }

  async #scalars(step: number, values: [string, number][], wallTime: number): Promise<void> {
    if (step <= this.#lastStep) await this.truncateFrom(step);
    if (!this.#file) {
      await Deno.mkdir(this.dir, { recursive: true });
      const host = Deno.hostname().replace(/[^A-Za-z0-9_.-]/g, "_");
      this.#path = `${this.dir}/events.out.tfevents.${Math.floor(wallTime)}.${host}.${Deno.pid}.${this.#seq++}`;
      this.#file = await Deno.open(this.#path, { append: true, create: true });
      await this.#write(encodeEvent({ wallTime, fileVersion: "brain.Event:2" }));
    }
    const finite = values.filter(([, v]) => Number.isFinite(v));
    await this.#write(encodeEvent({ wallTime, step, scalars: finite }));
    this.#lastStep = step;
  }

  async #write(event: Uint8Array): Promise<void> {
    const b = tfRecord(event);
    let o = 0;
    while (o < b.length) o += await this.#file!.write(b.subarray(o));
  }

  /** Sets the last step already in the files (a resumed run: writing an earlier step truncates first). */
  set lastStep(step: number) {
    this.#lastStep = step;
  }

  close(): void {
    try {
      this.#file?.close();
    } catch { /* closed */ }
    this.#file = undefined;
  }
}
