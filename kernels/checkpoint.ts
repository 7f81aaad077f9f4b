// Saving and loading an executor's full training state (parameters, AdamW moments, step count) to one file,
// written atomically (temporary file, fsync, rename) and identified by its sha256.
//
// Format: "FLEXSPCK" | u32 LE version | u32 LE header length | header JSON | zero padding to 4 bytes |
// params, m, v as float32 little-endian, `total` values each.

import type { ModelShape } from "./model.ts";
import { writeAtomic } from "../core/atomic_write.ts";
import { sha256Hex } from "../core/hash.ts";

const MAGIC = "FLEXSPCK";
const VERSION = 1;

/** The state of one executor. */
export interface ExecutorState {
  shape: ModelShape;
  /** AdamW steps taken. */
  step: number;
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/** Serialises `s` to bytes. */
export function encodeState(s: ExecutorState): Uint8Array {
  const total = s.params.length;
  if (s.m.length !== total || s.v.length !== total) throw new Error("checkpoint: params/m/v lengths differ");
  const header = new TextEncoder().encode(JSON.stringify({ shape: s.shape, step: s.step, total }));
  const headLen = 16 + header.length;
  const pad = (4 - (headLen % 4)) % 4;
  const out = new Uint8Array(headLen + pad + 3 * total * 4);
  out.set(new TextEncoder().encode(MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, VERSION, true);
  dv.setUint32(12, header.length, true);
  out.set(header, 16);
  let o = headLen + pad;
  for (const a of [s.params, s.m, s.v]) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), o);
    o += a.byteLength;
  }
  return out;
}

/** Parses bytes written by {@link encodeState}; `expect` must match the stored model shape. */
export function decodeState(bytes: Uint8Array, expect: ModelShape, path: string): ExecutorState {
  const bad = (why: string) => new Error(`checkpoint ${path}: ${why}`);
  if (bytes.length < 16 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw bad("not a flexsp executor checkpoint");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== VERSION) throw bad(`version ${version}, expected ${VERSION}`);
  const hl = dv.getUint32(12, true);
  if (16 + hl > bytes.length) throw bad("truncated header");
  let header: { shape: ModelShape; step: number; total: number };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hl)));
  } catch {
    throw bad("corrupt header");
  }
  for (const k of ["layers", "hidden", "heads", "vocab", "maxSeq"] as const) {
    if (header.shape?.[k] !== expect[k]) throw bad(`model ${k} is ${header.shape?.[k]}, this run has ${expect[k]}`);
  }
  const start = 16 + hl + ((4 - ((16 + hl) % 4)) % 4), total = header.total;
  if (bytes.length !== start + 3 * total * 4) {
    throw bad(`size ${bytes.length} bytes, expected ${start + 3 * total * 4}`);
  }
  const arr = (i: number) => new Float32Array(bytes.slice(start + i * total * 4, start + (i + 1) * total * 4).buffer);
  return { shape: header.shape, step: header.step, params: arr(0), m: arr(1), v: arr(2) };
}

/** Writes a state file atomically (creating its folder); returns what a `saved` event reports. */
export async function writeStateFile(path: string, bytes: Uint8Array): Promise<{ sha256: string; bytes: number }> {
  await writeAtomic(path, bytes, {
    mkdir: true,
    error: (message) => new Error(`checkpoint: writing ${path} failed: ${message}`),
  });
  return { sha256: sha256Hex(bytes), bytes: bytes.length };
}

/** Reads a state file, refusing one whose sha256 is not `sha256` (when given). */
export async function readStateFile(path: string, sha256?: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`load: cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (sha256 !== undefined && sha256Hex(bytes) !== sha256) {
    throw new Error(`load: ${path}: sha256 ${sha256Hex(bytes).slice(0, 12)}… is not ${sha256.slice(0, 12)}…`);
  }
  return bytes;
}
