// Mutual authentication of one data-plane connection with the per-run secret: an HMAC-SHA256 challenge-
// response over both sides' random nonces and ranks. The secret never crosses the wire.
//
//   listener -> dialer : "FXDP" | u8 version | u32 listener rank | 32-byte nonce L
//   dialer -> listener : "FXDP" | u32 dialer rank | 32-byte nonce D | HMAC(secret, "dial" L D ranks)
//   listener -> dialer : u8 ok (1) | HMAC(secret, "listen" L D ranks)    or    u8 0 | u16 len | reason

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readExact, writeAll } from "./frame.ts";

const MAGIC = [0x46, 0x58, 0x44, 0x50]; // "FXDP"
const VERSION = 1;
const NONCE = 32;
const MAC = 32;

function mac(secret: string, role: string, nl: Uint8Array, nd: Uint8Array, dialer: number, listener: number) {
  const h = createHmac("sha256", secret);
  h.update(`flexsp-dataplane-v${VERSION}|${role}|${dialer}|${listener}|`);
  h.update(nl);
  h.update(nd);
  return new Uint8Array(h.digest());
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

async function need(conn: Deno.Conn, n: number, what: string): Promise<Uint8Array> {
  const b = new Uint8Array(n);
  if (!(await readExact(conn, b))) throw new Error(`connection closed during the handshake (${what})`);
  return b;
}

function checkMagic(b: Uint8Array): void {
  if (MAGIC.some((m, i) => b[i] !== m)) throw new Error("peer is not a flexsp data-plane endpoint (bad magic)");
}

/**
 * The listener's side. Resolves with the dialer's rank once it proved the secret; rejects (after telling the
 * dialer why) when it did not.
 */
export async function acceptHandshake(conn: Deno.Conn, secret: string, myRank: number): Promise<number> {
  const nl = new Uint8Array(randomBytes(NONCE));
  await writeAll(conn, concat(Uint8Array.from(MAGIC), Uint8Array.of(VERSION), u32(myRank), nl));
  const msg = await need(conn, 4 + 4 + NONCE + MAC, "dialer proof");
  checkMagic(msg);
  const dialer = new DataView(msg.buffer).getUint32(4, true);
  const nd = msg.slice(8, 8 + NONCE), proof = msg.slice(8 + NONCE);
  const want = mac(secret, "dial", nl, nd, dialer, myRank);
  if (!timingSafeEqual(proof, want)) {
    const reason = new TextEncoder().encode("authentication failed: wrong data-plane secret");
    const b = new Uint8Array(3 + reason.length);
    new DataView(b.buffer).setUint16(1, reason.length, true);
    b.set(reason, 3);
    await writeAll(conn, b).catch(() => {});
    throw new Error(`connection claiming rank ${dialer} failed authentication (wrong secret)`);
  }
  await writeAll(conn, concat(Uint8Array.of(1), mac(secret, "listen", nl, nd, dialer, myRank)));
  return dialer;
}

/** The dialer's side: proves the secret and checks the listener's proof and rank. */
export async function dialHandshake(conn: Deno.Conn, secret: string, myRank: number, peerRank: number): Promise<void> {
  const hello = await need(conn, 4 + 1 + 4 + NONCE, "listener hello");
  checkMagic(hello);
  const dv = new DataView(hello.buffer);
  if (hello[4] !== VERSION) throw new Error(`data-plane version ${hello[4]}, expected ${VERSION}`);
  const listener = dv.getUint32(5, true);
  if (listener !== peerRank) throw new Error(`endpoint belongs to rank ${listener}, expected rank ${peerRank}`);
  const nl = hello.slice(9);
  const nd = new Uint8Array(randomBytes(NONCE));
  await writeAll(conn, concat(Uint8Array.from(MAGIC), u32(myRank), nd, mac(secret, "dial", nl, nd, myRank, listener)));
  const status = await need(conn, 1, "listener verdict");
  if (status[0] !== 1) {
    const len = await need(conn, 2, "rejection").then((b) => new DataView(b.buffer).getUint16(0, true)).catch(() => 0);
    const reason = len > 0 ? new TextDecoder().decode(await need(conn, len, "rejection")) : "rejected";
    throw new Error(`rank ${peerRank} rejected this rank: ${reason}`);
  }
  const proof = await need(conn, MAC, "listener proof");
  if (!timingSafeEqual(proof, mac(secret, "listen", nl, nd, myRank, listener))) {
    throw new Error(`rank ${peerRank} failed authentication (wrong secret)`);
  }
}
