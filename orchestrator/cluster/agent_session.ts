// The orchestrator's side of one agent: hello and inventory, pings with round-trip times, heartbeat watchdog, lost
// detection (silence or a dropped channel, with the reason), validated receipt, and a clean shutdown.

import {
  type AgentCommand,
  type AgentEvent,
  encodeMessage,
  type Inventory,
  PROTOCOL_VERSION,
  readMessages,
} from "../../core/protocol.ts";
import type { AgentChannel, ChannelExit } from "./agent_channel.ts";

/** Why a node was declared lost. */
export interface LostInfo {
  /** Node name for messages (`node 1 (10.0.0.2)`). */
  node: string;
  host: string;
  reason: string;
  /** Last lines the agent wrote on stderr. */
  stderrTail: string;
}

/** Settings of a session. */
export interface AgentSessionOptions {
  /** Node name for messages, e.g. `node 0 (10.0.0.1)`. */
  name: string;
  host: string;
  /** Agent heartbeat period; the orchestrator pings at the same period. */
  heartbeatMs: number;
  /** Silence after which the node is lost. */
  heartbeatTimeoutMs: number;
  /** Called for every protocol problem (bad lines from the agent, protocol_error events). */
  onProtocolError?: (source: string, message: string) => void;
  /** Called with each line of the agent's stderr. */
  onStderr?: (line: string) => void;
}

type Hello = Extract<AgentCommand, { type: "hello" }>;
type Listener = (ev: AgentEvent) => void;

function describeExit(e: ChannelExit): string {
  if (e.signal) return `the agent was killed by signal ${e.signal.replace(/^SIG/, "")}`;
  if (e.code !== null && e.code !== undefined) {
    return e.code === 0 ? "the agent exited" : `the agent exited with code ${e.code}`;
  }
  return e.error ? `control channel dropped: ${e.error}` : "control channel closed";
}

/** One live agent. */
export class AgentSession {
  readonly channel: AgentChannel;
  readonly opts: AgentSessionOptions;
  inventory?: Inventory;
  /** The agent's process id on its node. */
  agentPid?: number;
  /** Set once the node is lost. */
  lostInfo?: LostInfo;
  /** Resolves when the node is lost (never, if it is shut down on purpose). */
  readonly lost: Promise<LostInfo>;
  /** Resolves once the channel is closed, for any reason. */
  readonly closed: Promise<ChannelExit>;
  /** Round-trip times (ms) of every answered ping, in order. */
  readonly rtts: number[] = [];
  lastHeard = performance.now();

  #listeners = new Set<Listener>();
  #lostListeners = new Set<(l: LostInfo) => void>();
  #resolveLost!: (l: LostInfo) => void;
  #stderr: string[] = [];
  #pingId = 0;
  #pings = new Map<number, (rtt: number) => void>();
  #timers: ReturnType<typeof setInterval>[] = [];
  #shuttingDown = false;
  #pump: Promise<void>;

  constructor(channel: AgentChannel, opts: AgentSessionOptions) {
    this.channel = channel;
    this.opts = opts;
    this.lost = new Promise((r) => this.#resolveLost = r);
    this.closed = channel.closed;
    this.#pump = this.#read();
    void this.#readStderr();
    channel.closed.then(async (exit) => {
      // Let the last lines (e.g. a protocol error) arrive before judging.
      await Promise.race([this.#pump, new Promise((r) => setTimeout(r, 200))]);
      if (!this.#shuttingDown) this.#declareLost(describeExit(exit));
      this.#stopTimers();
      for (const [, resolve] of this.#pings) resolve(NaN);
      this.#pings.clear();
    });
  }

  get name(): string {
    return this.opts.name;
  }

  /** The agent's last stderr lines. */
  stderrTail(lines = 20): string {
    return this.#stderr.slice(-lines).join("\n");
  }

  async #readStderr(): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of this.channel.stderr) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.#stderr.push(line);
          if (this.#stderr.length > 200) this.#stderr.splice(0, 100);
          this.opts.onStderr?.(line);
        }
      }
    } catch { /* channel gone */ }
    if (buf) this.#stderr.push(buf);
  }

  async #read(): Promise<void> {
    const source = `agent on ${this.opts.name}`;
    const messages = readMessages<AgentEvent>(this.channel.stdout, source, (error) => {
      this.lastHeard = performance.now();
      this.opts.onProtocolError?.(source, error);
    }, "agent_event");
    try {
      for await (const ev of messages) {
        this.lastHeard = performance.now();
        if (ev.type === "pong") {
          const resolve = this.#pings.get(ev.id);
          if (resolve) {
            this.#pings.delete(ev.id);
            resolve(performance.now() - ev.t);
          }
        } else if (ev.type === "protocol_error") {
          this.opts.onProtocolError?.(`${ev.source} (reported by the agent on ${this.opts.name})`, ev.message);
        }
        // A node's batch of executor events reaches listeners as one `from_executor` each.
        const evs: AgentEvent[] = ev.type === "from_executors"
          ? ev.msgs.map((m) => ({ type: "from_executor", rank: m.rank, msg: m.msg }))
          : [ev];
        for (const e of evs) {
          for (const l of this.#listeners) {
            try {
              l(e);
            } catch (err) {
              console.error(`listener failed on ${e.type} from ${this.opts.name}: ${(err as Error).message}`);
            }
          }
        }
      }
    } catch { /* channel gone; the close handler reports it */ }
  }

  #declareLost(reason: string): void {
    if (this.lostInfo || this.#shuttingDown) return;
    this.lostInfo = { node: this.opts.name, host: this.opts.host, reason, stderrTail: this.stderrTail() };
    this.#stopTimers();
    this.#resolveLost(this.lostInfo);
    for (const l of this.#lostListeners) l(this.lostInfo);
    this.#lostListeners.clear();
  }

  #stopTimers(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /** Subscribes to every event; returns the unsubscribe function. */
  on(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the first event that satisfies `pred`, or rejects after `timeoutMs` or when the node is lost. */
  waitFor<E extends AgentEvent>(pred: (ev: AgentEvent) => ev is E, timeoutMs: number, what: string): Promise<E> {
    return new Promise((resolve, reject) => {
      const off = this.on((ev) => {
        if (pred(ev)) {
          cleanup();
          resolve(ev);
        }
      });
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.opts.name}: no ${what} within ${(timeoutMs / 1000).toFixed(1)} s`));
      }, timeoutMs);
      const onLost = (l: LostInfo) => {
        cleanup();
        reject(new Error(`${this.opts.name}: ${l.reason} while waiting for ${what}`));
      };
      const cleanup = () => {
        off();
        clearTimeout(timer);
        this.#lostListeners.delete(onLost);
      };
      if (this.lostInfo) return onLost(this.lostInfo);
      this.#lostListeners.add(onLost);
    });
  }

  /** Bytes (UTF-16 code units, i.e. bytes for the ASCII JSON the protocol writes) sent to the agent so far. */
  bytesSent = 0;
  /** The same over every session of this process (the benchmarks' orchestrator bytes per step). */
  static bytesSentTotal = 0;

  /** Sends one command; false when the channel is already closed. */
  send(cmd: AgentCommand): boolean {
    return this.sendRaw(encodeMessage(cmd));
  }

  /** Writes a raw line (an already serialised command, or, in tests, malformed input). */
  sendRaw(line: string): boolean {
    const l = line.endsWith("\n") ? line : line + "\n";
    this.bytesSent += l.length;
    AgentSession.bytesSentTotal += l.length;
    return this.channel.write(l);
  }

  /**
   * Says hello and waits for the inventory. Starts the heartbeat watchdog and the periodic ping the agent uses to
   * know the orchestrator is alive.
   */
  async start(hello: Omit<Hello, "type" | "version" | "heartbeatMs">, timeoutMs: number): Promise<Inventory> {
    const problems: string[] = [];
    const offErr = this.on((ev) => {
      if (ev.type === "protocol_error") problems.push(ev.message);
    });
    this.send({ type: "hello", version: PROTOCOL_VERSION, heartbeatMs: this.opts.heartbeatMs, ...hello });
    let ev: Extract<AgentEvent, { type: "hello" }>;
    try {
      ev = await this.waitFor(
        (e): e is Extract<AgentEvent, { type: "hello" }> => e.type === "hello",
        timeoutMs,
        "hello from the agent",
      );
    } catch (e) {
      const tail = this.stderrTail(8);
      const extra = [problems.length ? `agent said: ${problems.join("; ")}` : "", tail ? `agent stderr:\n${tail}` : ""]
        .filter(Boolean).join("\n");
      throw new Error((e as Error).message + (extra ? `\n${extra}` : ""));
    } finally {
      offErr();
    }
    if (ev.version !== PROTOCOL_VERSION) {
      throw new Error(`${this.opts.name}: agent speaks protocol version ${ev.version}, expected ${PROTOCOL_VERSION}`);
    }
    this.inventory = ev.inventory;
    this.agentPid = ev.pid;
    this.lastHeard = performance.now();
    this.#timers.push(setInterval(() => {
      const silent = performance.now() - this.lastHeard;
      if (silent > this.opts.heartbeatTimeoutMs) {
        this.#declareLost(
          `no heartbeat for ${(silent / 1000).toFixed(1)} s (timeout ${this.opts.heartbeatTimeoutMs / 1000} s)`,
        );
      }
    }, Math.max(20, Math.min(500, this.opts.heartbeatTimeoutMs / 10))));
    this.#timers.push(setInterval(() => {
      this.send({ type: "ping", id: -1, t: performance.now() });
    }, this.opts.heartbeatMs));
    return ev.inventory;
  }

  /** Measures one control round trip (ms); NaN if the channel closes first. */
  ping(timeoutMs = 5000): Promise<number> {
    const id = ++this.#pingId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id);
        reject(new Error(`${this.opts.name}: no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pings.set(id, (rtt) => {
        clearTimeout(timer);
        if (!Number.isNaN(rtt)) this.rtts.push(rtt);
        resolve(rtt);
      });
      if (!this.send({ type: "ping", id, t: performance.now() })) {
        clearTimeout(timer);
        this.#pings.delete(id);
        resolve(NaN);
      }
    });
  }

  /** Whether shutdown was asked for. */
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /**
   * Asks the agent to stop its executors and exit, then waits for the channel to close; after `timeoutMs` the
   * channel is torn down. Returns how the channel ended.
   */
  async shutdown(reason: string, timeoutMs = 5000, graceMs = 2000): Promise<ChannelExit> {
    this.#shuttingDown = true;
    this.#stopTimers();
    this.send({ type: "shutdown", reason, graceMs });
    this.channel.closeInput();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      this.channel.closed,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), timeoutMs)),
    ]);
    clearTimeout(timer);
    if (exit) return exit;
    return await this.abort(`no exit within ${timeoutMs / 1000} s after shutdown`);
  }

  /** Tears the channel down without asking (a lost or hung agent); waits at most 3 s for it to close. */
  async abort(why = "aborted"): Promise<ChannelExit> {
    this.#shuttingDown = true;
    this.#stopTimers();
    this.channel.kill();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      this.channel.closed,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), 3000)),
    ]);
    clearTimeout(timer);
    return exit ?? { code: null, signal: null, error: why };
  }
}
