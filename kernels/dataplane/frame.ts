// Length-prefixed binary frames of the data plane, and exact-length reads/writes on a TCP connection.
// Frame: u32 LE body length | u8 kind | u8 0 | u16 LE tag length | tag (UTF-8) | payload. The payload is read
// into its own fresh buffer so float32 data can be viewed without copying.

/** Frame kinds. */
export const FRAME_DATA = 1;
/** The sender hit an error and aborts the run; the payload is its UTF-8 message. */
export const FRAME_ABORT = 2;

/** Largest frame body accepted (guards against garbage lengths). */
export const MAX_FRAME_BYTES = 1 << 30;

/** A decoded frame. */
export interface Frame {
  kind: number;
  tag: string;
  payload: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Reads exactly `buf.length` bytes; returns false on EOF before the first byte, throws on EOF mid-buffer. */
export async function readExact(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let got = 0;
  while (got < buf.length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) {
      if (got === 0) return false;
      throw new Error(`connection closed mid-message (${got} of ${buf.length} bytes)`);
    }
    got += n;
  }
  return true;
}

/** Writes all of `data`. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads the next frame, or null on a clean EOF between frames. */
export async function readFrame(conn: Deno.Conn): Promise<Frame | null> {
  const head = new Uint8Array(8);
  if (!(await readExact(conn, head))) return null;
  const dv = new DataView(head.buffer);
  const body = dv.getUint32(0, true), kind = dv.getUint8(4), tagLen = dv.getUint16(6, true);
  if (body > MAX_FRAME_BYTES || tagLen + 4 > body) {
    throw new Error(`malformed frame header (body ${body}, tag ${tagLen})`);
  }
  const tagBuf = new Uint8Array(tagLen);
  if (tagLen > 0 && !(await readExact(conn, tagBuf))) throw new Error("connection closed mid-frame");
  const payload = new Uint8Array(body - 4 - tagLen);
  if (payload.length > 0 && !(await readExact(conn, payload))) throw new Error("connection closed mid-frame");
  return { kind, tag: dec.decode(tagBuf), payload };
}

/** Writes one frame (header and tag in one write, then the payload). */
export async function writeFrame(conn: Deno.Conn, kind: number, tag: string, payload: Uint8Array): Promise<void> {
  const t = enc.encode(tag);
  if (t.length > 0xffff) throw new Error("frame tag too long");
  const head = new Uint8Array(8 + t.length);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, 4 + t.length + payload.length, true);
  dv.setUint8(4, kind);
  dv.setUint16(6, t.length, true);
  head.set(t, 8);
  if (payload.length < 65536) {
    const all = new Uint8Array(head.length + payload.length);
    all.set(head);
    all.set(payload, head.length);
    await writeAll(conn, all);
  } else {
    await writeAll(conn, head);
    await writeAll(conn, payload);
  }
}

/** The bytes of a float32 array (a view, no copy). */
export function f32Bytes(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** A float32 view of a payload read by {@link readFrame} (fresh, aligned buffer); throws on a bad size. */
export function bytesF32(b: Uint8Array): Float32Array {
  if (b.byteLength % 4 !== 0) throw new Error(`payload of ${b.byteLength} bytes is not float32 data`);
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(b.slice().buffer);
}
