// The TCP mesh between the executors of a run: every rank listens on an ephemeral port, higher ranks dial lower
// ranks, every connection is mutually authenticated with the per-run secret (auth.ts), and frames carry tagged
// payloads (frame.ts). On top: `allToAll` inside an SP group, `allReduce` over all ranks, `barrier`.
//
// Failure model: fail-stop. Every wait has a timeout; a peer that disconnects, aborts or sends an unexpected tag
// fails the pending and every later operation with a clear error naming the peer and the collective, and the
// mesh then closes all its connections so the other ranks fail fast too instead of waiting for their timeouts.
//
// allReduce order (bit-identical on every rank): the buffer is cut into `worldSize` contiguous shards; rank r
// receives shard r from every rank, sums the contributions in rank order 0, 1, ..., N-1 in float64, rounds once
// to float32, and sends the reduced shard back to everyone (reduce-scatter + all-gather). Each element is thus
// reduced by exactly one rank in a fixed order, and every rank ends with the same bytes.

import type { Endpoint } from "../../core/protocol.ts";
import type { GroupComm } from "../group_comm.ts";
import { acceptHandshake, dialHandshake } from "./auth.ts";
import { bytesF32, f32Bytes, type Frame, FRAME_ABORT, FRAME_DATA, readFrame, writeFrame } from "./frame.ts";

/**
 * A data-plane failure. `echo` (default true): it repeats another rank's failure, noticed over the wire (a peer
 * disconnected, aborted, timed out, fell out of step or could not be reached); false for this rank's own misuse
 * (bad arguments, a closed mesh) or a local error a collective wrapped (`cause`). Executors report it in the `echo`
 * field of their `error` event, which the orchestrator's root-cause policy reads (orchestrator/cluster/fault.ts).
 */
export class DataPlaneError extends Error {
  override name = "DataPlaneError";
  readonly echo: boolean;
  /** For a timeout: the rank this one waited for (the pool blames it when its process is stopped). */
  readonly waitingFor?: number;
  constructor(message: string, options: ErrorOptions & { echo?: boolean; waitingFor?: number } = {}) {
    super(message, options);
    this.echo = options.echo ?? true;
    this.waitingFor = options.waitingFor;
  }
}

/** The rank a timed-out collective waited for, read from a DataPlaneError itself or as the `cause` of a wrapper. */
export function waitedRank(e: unknown): number | undefined {
  if (e instanceof DataPlaneError && e.waitingFor !== undefined) return e.waitingFor;
  return e instanceof Error && e.cause !== undefined ? waitedRank(e.cause) : undefined;
}

/**
 * Whether an error only repeats another rank's failure: a DataPlaneError that says so, itself or as the `cause` of
 * an error that wraps it (the executor's FatalError). Decided by class, never by the message.
 */
export function isPeerEcho(e: unknown): boolean {
  if (e instanceof DataPlaneError) return e.echo;
  return e instanceof Error && e.cause !== undefined && isPeerEcho(e.cause);
}

/** The options of a DataPlaneError this rank caused itself (not an echo of a peer's failure). */
const LOCAL = { echo: false };

/** Options of {@link Mesh.listen}. */
export interface MeshOptions {
  rank: number;
  worldSize: number;
  /** Per-run secret authenticating every connection. */
  secret: string;
  /** Address to bind and advertise (e.g. 127.0.0.1 or the node's cluster IP). */
  bindHost: string;
  /** How long `connect` waits for every peer (default 30 s). */
  connectTimeoutMs?: number;
  /** How long one collective waits for a peer's data (default 120 s). */
  opTimeoutMs?: number;
  /** Diagnostics (rejected connections etc.); default: none. */
  log?: (line: string) => void;
}

interface Waiter {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
}

class Peer {
  conn: Deno.Conn | undefined;
  queue: Frame[] = [];
  waiters: Waiter[] = [];
  closed: string | undefined;
  writing: Promise<void> = Promise.resolve();
  constructor(readonly rank: number) {}
}

function timeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** One rank's end of the mesh. */
export class Mesh {
  readonly rank: number;
  readonly worldSize: number;
  /** The endpoint to advertise to the other ranks. */
  readonly endpoint: Endpoint;
  readonly #secret: string;
  readonly #listener: Deno.TcpListener;
  readonly #peers: Peer[];
  readonly #connectTimeoutMs: number;
  readonly #opTimeoutMs: number;
  readonly #log: (line: string) => void;
  readonly #rejections: string[] = [];
  #accepted: (() => void)[] = [];
  #failed: Error | undefined;
  #closed = false;

  private constructor(o: MeshOptions, listener: Deno.TcpListener) {
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.#secret = o.secret;
    this.#listener = listener;
    this.#connectTimeoutMs = o.connectTimeoutMs ?? 30_000;
    this.#opTimeoutMs = o.opTimeoutMs ?? 120_000;
    this.#log = o.log ?? (() => {});
    this.#peers = Array.from({ length: o.worldSize }, (_, r) => new Peer(r));
    const addr = listener.addr as Deno.NetAddr;
    this.endpoint = { rank: o.rank, host: o.bindHost, port: addr.port };
  }

  /** Binds an ephemeral port on `bindHost` and starts accepting (authenticated) connections from higher ranks. */
  static listen(o: MeshOptions): Promise<Mesh> {
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1) {
      throw new DataPlaneError(`bad world size ${o.worldSize}`, LOCAL);
    }
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) {
      throw new DataPlaneError(`rank ${o.rank} outside [0, ${o.worldSize})`, LOCAL);
    }
    if (!o.secret) throw new DataPlaneError("the data-plane secret is empty", LOCAL);
    const listener = Deno.listen({ hostname: o.bindHost, port: 0, transport: "tcp" });
    const mesh = new Mesh(o, listener);
    mesh.#acceptLoop();
    return Promise.resolve(mesh);
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) this.#onIncoming(conn);
    } catch {
      // listener closed
    }
  }

  async #onIncoming(conn: Deno.TcpConn): Promise<void> {
    try {
      conn.setNoDelay(true);
      const from = await timeout(
        acceptHandshake(conn, this.#secret, this.rank),
        10_000,
        () => new DataPlaneError("handshake timed out"),
      );
      if (!(from > this.rank && from < this.worldSize)) throw new DataPlaneError(`unexpected dialer rank ${from}`);
      const p = this.#peers[from];
      if (p.conn) throw new DataPlaneError(`rank ${from} is already connected`);
      this.#attach(p, conn);
      const w = this.#accepted;
      this.#accepted = [];
      for (const f of w) f();
    } catch (e) {
      const why = `rejected an incoming connection: ${(e as Error).message}`;
      this.#rejections.push(why);
      this.#log(`data plane rank ${this.rank}: ${why}`);
      try {
        conn.close();
      } catch { /* already closed */ }
      const w = this.#accepted;
      this.#accepted = [];
      for (const f of w) f();
    }
  }

  #attach(p: Peer, conn: Deno.Conn): void {
    p.conn = conn;
    (async () => {
      try {
        for (;;) {
          const f = await readFrame(conn);
          if (f === null) return this.#peerClosed(p, "disconnected");
          if (f.kind === FRAME_ABORT) return this.#peerClosed(p, `aborted: ${new TextDecoder().decode(f.payload)}`);
          if (f.kind !== FRAME_DATA) return this.#peerClosed(p, `sent an unknown frame kind ${f.kind}`);
          const w = p.waiters.shift();
          if (w) w.resolve(f);
          else p.queue.push(f);
        }
      } catch (e) {
        this.#peerClosed(p, this.#closed ? "closed locally" : `connection failed (${(e as Error).message})`);
      }
    })();
  }

  #peerClosed(p: Peer, reason: string): void {
    if (p.closed) return;
    p.closed = reason;
    const err = new DataPlaneError(`data plane: rank ${p.rank} ${reason}`);
    for (const w of p.waiters.splice(0)) w.reject(err);
  }

  /**
   * Connects to every rank of `endpoints` (all ranks 0..worldSize-1, once each): dials the lower ranks (retrying
   * until they listen) and waits for the higher ranks to dial in. Rejects with a clear error on a wrong secret,
   * a bad endpoint list, or a rank that does not connect within the connect timeout.
   */
  async connect(endpoints: Endpoint[]): Promise<void> {
    const byRank = new Map<number, Endpoint>();
    for (const e of endpoints) {
      if (byRank.has(e.rank)) throw new DataPlaneError(`peers: rank ${e.rank} listed twice`, LOCAL);
      byRank.set(e.rank, e);
    }
    for (let r = 0; r < this.worldSize; r++) {
      if (!byRank.has(r)) {
        throw new DataPlaneError(`peers: no endpoint for rank ${r} (world size ${this.worldSize})`, LOCAL);
      }
    }
    if (byRank.size !== this.worldSize) {
      throw new DataPlaneError(`peers: ${byRank.size} endpoints for world size ${this.worldSize}`, LOCAL);
    }
    const deadline = Date.now() + this.#connectTimeoutMs;
    const dials: Promise<void>[] = [];
    for (let r = 0; r < this.rank; r++) dials.push(this.#dial(byRank.get(r)!, deadline));
    const incoming = this.#waitIncoming(deadline);
    try {
      await Promise.all([...dials, incoming]);
    } catch (e) {
      this.#fail(e as Error);
      throw this.#failed;
    }
  }

  async #dial(ep: Endpoint, deadline: number): Promise<void> {
    const p = this.#peers[ep.rank];
    let lastErr = "";
    while (Date.now() < deadline && !this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await timeout(
          Deno.connect({ hostname: ep.host, port: ep.port, transport: "tcp" }),
          Math.max(1, deadline - Date.now()),
          () => new Error("connect timed out"),
        );
      } catch (e) {
        lastErr = (e as Error).message;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      try {
        conn.setNoDelay(true);
        await timeout(
          dialHandshake(conn, this.#secret, this.rank, ep.rank),
          Math.max(1, Math.min(10_000, deadline - Date.now())),
          () => new Error("handshake timed out"),
        );
      } catch (e) {
        try {
          conn.close();
        } catch { /* closed */ }
        throw new DataPlaneError(
          `data plane: connecting to rank ${ep.rank} at ${ep.host}:${ep.port} failed: ${(e as Error).message}`,
        );
      }
      this.#attach(p, conn);
      return;
    }
    throw new DataPlaneError(
      `data plane: could not reach rank ${ep.rank} at ${ep.host}:${ep.port} within ${this.#connectTimeoutMs} ms` +
        (lastErr ? ` (${lastErr})` : ""),
    );
  }

  async #waitIncoming(deadline: number): Promise<void> {
    for (;;) {
      const missing = this.#peers.filter((p) => p.rank > this.rank && !p.conn).map((p) => p.rank);
      if (missing.length === 0) return;
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed) {
        const rej = this.#rejections.length ? `; ${this.#rejections.join("; ")}` : "";
        throw new DataPlaneError(
          `data plane: rank(s) ${missing.join(", ")} did not connect to rank ${this.rank} within ` +
            `${this.#connectTimeoutMs} ms${rej}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.#accepted = this.#accepted.filter((f) => f !== done);
          resolve();
        }, left);
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        this.#accepted.push(done);
      });
    }
  }

  #check(): void {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new DataPlaneError("data plane: mesh is closed", LOCAL);
  }

  #fail(e: Error): void {
    if (this.#failed) return;
    this.#failed = e instanceof DataPlaneError ? e : new DataPlaneError(e.message, { echo: false, cause: e });
    // Tell the peers why (so their errors name the root cause), then drop every connection.
    this.#abortPeers(`rank ${this.rank} failed: ${this.#failed.message}`).finally(() => this.#closeAll());
  }

  /** Best effort: queues an ABORT frame behind each open connection's pending writes (1 s at most). */
  async #abortPeers(message: string): Promise<void> {
    const payload = new TextEncoder().encode(message);
    await Promise.all(this.#peers.map(async (p) => {
      const conn = p.conn;
      if (!conn || p.closed) return;
      const w = p.writing.then(() => writeFrame(conn, FRAME_ABORT, "abort", payload));
      p.writing = w.catch(() => {});
      await timeout(w, 1000, () => new Error("abort timed out")).catch(() => {});
    }));
  }

  #peer(r: number, what: string): Peer {
    if (!(r >= 0 && r < this.worldSize) || r === this.rank) {
      throw new DataPlaneError(`${what}: bad peer rank ${r}`, LOCAL);
    }
    const p = this.#peers[r];
    if (!p.conn && !p.closed) {
      throw new DataPlaneError(`${what}: rank ${r} is not connected (call connect first)`, LOCAL);
    }
    return p;
  }

  #send(r: number, tag: string, payload: Uint8Array): Promise<void> {
    const p = this.#peer(r, tag);
    const conn = p.conn!;
    const w = p.writing.then(() => {
      if (p.closed) throw new DataPlaneError(`data plane: rank ${r} ${p.closed} (sending ${tag})`);
      return writeFrame(conn, FRAME_DATA, tag, payload);
    });
    p.writing = w.catch(() => {});
    return w.catch((e) => {
      if (e instanceof DataPlaneError) throw e;
      // A failed write means the peer (or its connection) is gone.
      this.#peerClosed(p, `disconnected (${e instanceof Error ? e.message : e})`);
      throw new DataPlaneError(`data plane: rank ${r} ${p.closed} (sending ${tag})`);
    });
  }

  #recv(r: number, tag: string): Promise<Uint8Array> {
    const p = this.#peer(r, tag);
    const check = (f: Frame): Uint8Array => {
      if (f.tag !== tag) {
        throw new DataPlaneError(`data plane: out of step with rank ${r}: expected "${tag}", received "${f.tag}"`);
      }
      return f.payload;
    };
    const queued = p.queue.shift();
    if (queued) return Promise.resolve().then(() => check(queued));
    if (p.closed) return Promise.reject(new DataPlaneError(`data plane: rank ${r} ${p.closed} (during ${tag})`));
    return new Promise<Uint8Array>((resolve, reject) => {
      const w: Waiter = {
        resolve: (f) => {
          clearTimeout(timer);
          try {
            resolve(check(f));
          } catch (e) {
            reject(e);
          }
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(new DataPlaneError(`${e.message} (during ${tag})`, { cause: e }));
        },
      };
      const timer = setTimeout(() => {
        p.waiters = p.waiters.filter((x) => x !== w);
        reject(
          new DataPlaneError(`data plane: timed out after ${this.#opTimeoutMs} ms waiting for rank ${r} (${tag})`, {
            waitingFor: r,
          }),
        );
      }, this.#opTimeoutMs);
      p.waiters.push(w);
    });
  }

  async #collective<T>(body: () => Promise<T>): Promise<T> {
    this.#check();
    try {
      return await body();
    } catch (e) {
      this.#fail(e as Error);
      throw this.#failed ?? e;
    }
  }

  /**
   * All-to-all among `ranks` (global ranks, this rank among them): `chunks[i]` goes to `ranks[i]`; resolves with
   * `received[i]` from `ranks[i]` (`received[own index]` is `chunks[own index]`). Sizes may differ per pair.
   */
  allToAll(ranks: number[], chunks: Float32Array[], tag: string): Promise<Float32Array[]> {
    return this.#collective(async () => {
      const me = ranks.indexOf(this.rank);
      if (me < 0) throw new DataPlaneError(`allToAll ${tag}: rank ${this.rank} is not in group [${ranks}]`, LOCAL);
      if (chunks.length !== ranks.length) {
        throw new DataPlaneError(`allToAll ${tag}: ${chunks.length} chunks for ${ranks.length} ranks`, LOCAL);
      }
      const out: Float32Array[] = new Array(ranks.length);
      out[me] = chunks[me];
      const ops: Promise<unknown>[] = [];
      ranks.forEach((r, i) => {
        if (i === me) return;
        ops.push(this.#send(r, tag, f32Bytes(chunks[i])));
        ops.push(this.#recv(r, tag).then((b) => (out[i] = bytesF32(b))));
      });
      await Promise.all(ops);
      return out;
    });
  }

  /** Sums `data` over all ranks in place (fixed order, bit-identical everywhere; see the file header). */
  allReduce(data: Float32Array, tag: string): Promise<Float32Array> {
    return this.#collective(async () => {
      const N = this.worldSize, me = this.rank, n = data.length;
      if (N === 1) return data;
      const lo = (r: number) => Math.floor((r * n) / N);
      const shard = (r: number) => data.subarray(lo(r), lo(r + 1));
      const parts: Float32Array[] = new Array(N);
      parts[me] = shard(me);
      const ops: Promise<unknown>[] = [];
      for (let r = 0; r < N; r++) {
        if (r === me) continue;
        ops.push(this.#send(r, `${tag}/rs`, f32Bytes(shard(r))));
        ops.push(this.#recv(r, `${tag}/rs`).then((b) => (parts[r] = bytesF32(b))));
      }
      await Promise.all(ops);
      const len = lo(me + 1) - lo(me);
      const acc = new Float64Array(len);
      for (let r = 0; r < N; r++) {
        const p = parts[r];
        if (p.length !== len) {
          throw new DataPlaneError(`allReduce ${tag}: rank ${r} sent ${p.length} values, expected ${len}`);
        }
        for (let i = 0; i < len; i++) acc[i] += p[i];
      }
      const reduced = Float32Array.from(acc);
      const ops2: Promise<unknown>[] = [];
      for (let r = 0; r < N; r++) {
        if (r === me) continue;
        ops2.push(this.#send(r, `${tag}/ag`, f32Bytes(reduced)));
        ops2.push(
          this.#recv(r, `${tag}/ag`).then((b) => {
            const x = bytesF32(b);
            if (x.length !== lo(r + 1) - lo(r)) {
              throw new DataPlaneError(`allReduce ${tag}: bad shard size from rank ${r}`);
            }
            parts[r] = x;
          }),
        );
      }
      await Promise.all(ops2);
      for (let r = 0; r < N; r++) if (r !== me) data.set(parts[r], lo(r));
      data.set(reduced, lo(me));
      return data;
    });
  }

  /** Resolves once every rank has entered the barrier with the same tag. */
  barrier(tag: string): Promise<void> {
    return this.#collective(async () => {
      const ops: Promise<unknown>[] = [];
      for (let r = 0; r < this.worldSize; r++) {
        if (r === this.rank) continue;
        ops.push(this.#send(r, tag, new Uint8Array(0)));
        ops.push(this.#recv(r, tag));
      }
      await Promise.all(ops);
    });
  }

  /** The `GroupComm` of the SP group `ranks` (an all-to-all whose tags are prefixed with `prefix`). */
  group(ranks: number[], prefix = ""): GroupComm {
    const me = ranks.indexOf(this.rank);
    if (me < 0) throw new DataPlaneError(`rank ${this.rank} is not in group [${ranks}]`, LOCAL);
    return {
      size: ranks.length,
      rank: me,
      allToAll: (chunks, tag) => this.allToAll(ranks, chunks, prefix + tag),
    };
  }

  /** Tells every connected peer this rank gives up (they fail fast with `message`), then closes. */
  async abort(message: string): Promise<void> {
    if (!this.#closed) await this.#abortPeers(message);
    this.close();
  }

  #closeAll(): void {
    for (const p of this.#peers) {
      if (p.conn) {
        try {
          p.conn.close();
        } catch { /* already closed */ }
      }
      this.#peerClosed(p, "closed");
    }
  }

  /** Closes the listener and every connection; pending operations fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* closed */ }
    this.#closeAll();
    for (const f of this.#accepted.splice(0)) f();
  }
}
