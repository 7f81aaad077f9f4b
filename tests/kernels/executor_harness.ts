// Test harness that plays the orchestrator/agent for real executor processes: spawns them, speaks the protocol
// on their stdin/stdout, acts as the rendezvous (collects `ready` endpoints, sends `peers`), and waits for events
// with timeouts so a broken executor fails the test instead of hanging it.

import {
  encodeMessage,
  type ExecutorCommand,
  type ExecutorEvent,
  type ExecutorInit,
  type ExecutorStepPlan,
  type GroupAssignment,
  readMessages,
  type SequenceRef,
  type TsExecutorKind,
} from "../../core/protocol.ts";
import type { ModelShape } from "../../kernels/model.ts";

const MAIN = new URL("../../kernels/executor_main.ts", import.meta.url).pathname;

/** One spawned executor process. */
export class ExecutorProc {
  readonly events: ExecutorEvent[] = [];
  readonly stderr: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #waiters: (() => void)[] = [];
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  /** `command` replaces the default `deno run -A kernels/executor_main.ts --kind K --device RANK` (e.g. Python). */
  constructor(
    readonly rank: number,
    env: Record<string, string> = {},
    kind: TsExecutorKind = "cpu",
    command?: string[],
  ) {
    const [exe, ...args] = command ?? [Deno.execPath(), "run", "-A", MAIN, "--kind", kind, "--device", String(rank)];
    const child = new Deno.Command(exe, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env,
    }).spawn();
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.status = child.status.then((s) => {
      this.exited = true;
      this.#wake();
      return s;
    });
    (async () => {
      for await (
        const ev of readMessages<ExecutorEvent>(
          child.stdout,
          `executor ${rank}`,
          (e) => this.stderr.push(e),
          "executor_event",
        )
      ) {
        this.events.push(ev);
        this.#wake();
      }
    })();
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.stderr.push(dec.decode(chunk));
    })();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Sends one command line. */
  async send(cmd: ExecutorCommand): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(encodeMessage(cmd)));
  }

  /** Waits for the first not-yet-consumed event satisfying `pred`; throws after `ms` or if the process exits. */
  async next<T extends ExecutorEvent>(pred: (e: ExecutorEvent) => e is T, ms: number, what: string): Promise<T>;
  async next(pred: (e: ExecutorEvent) => boolean, ms: number, what: string): Promise<ExecutorEvent>;
  async next(pred: (e: ExecutorEvent) => boolean, ms: number, what: string): Promise<ExecutorEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.events.findIndex(pred);
      if (i >= 0) return this.events.splice(i, 1)[0];
      if (this.exited) await new Promise((r) => setTimeout(r, 50)); // let stdout drain
      if (this.exited && this.events.findIndex(pred) < 0) {
        throw new Error(
          `executor ${this.rank} exited while waiting for ${what}; events ${JSON.stringify(this.events)}; ` +
            `stderr ${this.stderr.join("").slice(-2000)}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `executor ${this.rank}: timed out waiting for ${what}; events ${JSON.stringify(this.events)}; ` +
            `stderr ${this.stderr.join("").slice(-2000)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Kills the process (SIGKILL). */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* gone */ }
  }

  /** Closes stdin and waits for exit (killing it after `ms`). */
  async close(ms = 5000): Promise<Deno.CommandStatus> {
    try {
      await this.#writer.close();
    } catch { /* closed */ }
    const t = setTimeout(() => this.kill(), ms);
    const s = await this.status;
    clearTimeout(t);
    return s;
  }
}

/** Default init fields for a test run. */
export function testInit(
  rank: number,
  worldSize: number,
  model: ModelShape,
  over: Partial<ExecutorInit> = {},
): ExecutorInit {
  return {
    rank,
    worldSize,
    model,
    seed: 1234,
    optimizer: { lr: 1e-3, weightDecay: 0.1, gradClip: 1.0, beta1: 0.9, beta2: 0.95, eps: 1e-8 },
    secret: "test-secret-0123456789",
    bindHost: "127.0.0.1",
    ...over,
  };
}

/** Spawns `n` executors, inits them, runs the rendezvous and waits until all are connected. */
export async function startRun(
  n: number,
  model: ModelShape,
  opts: {
    env?: Record<string, string>;
    init?: (rank: number) => Partial<ExecutorInit>;
    /** The executor command of each rank (default: the TypeScript executor, --kind cpu). */
    command?: (rank: number) => string[];
    /** How long to wait for `ready` and for `connected` (default 30 s). */
    timeoutMs?: number;
  } = {},
): Promise<ExecutorProc[]> {
  const procs = Array.from({ length: n }, (_, r) => new ExecutorProc(r, opts.env, "cpu", opts.command?.(r)));
  try {
    await Promise.all(
      procs.map((p) => p.send({ type: "init", init: testInit(p.rank, n, model, opts.init?.(p.rank)) })),
    );
    const ms = opts.timeoutMs ?? 30_000;
    const ready = await Promise.all(procs.map((p) => p.next((e) => e.type === "ready", ms, "ready")));
    const endpoints = ready.map((e) => (e as Extract<ExecutorEvent, { type: "ready" }>).endpoint);
    await Promise.all(procs.map((p) => p.send({ type: "peers", endpoints })));
    await Promise.all(procs.map((p) => p.next((e) => e.type === "connected", ms, "connected")));
    return procs;
  } catch (e) {
    await stopAll(procs);
    throw e;
  }
}

/** Shuts every executor down (shutdown, then close stdin, kill if needed). */
export async function stopAll(procs: ExecutorProc[]): Promise<void> {
  await Promise.all(procs.map(async (p) => {
    if (!p.exited) await p.send({ type: "shutdown" }).catch(() => {});
    await p.close();
  }));
}

/** Type guard helper for `next`. */
export const isType =
  <K extends ExecutorEvent["type"]>(type: K) => (e: ExecutorEvent): e is Extract<ExecutorEvent, { type: K }> =>
    e.type === type;

/**
 * A maker of consecutive sequences: each call lays `lengths` end to end from `offset`, with ids counting up from 0
 * over the maker's life (one maker per test file, so ids do not depend on which other files run).
 */
export function sequenceMaker(): (lengths: number[], offset?: number) => SequenceRef[] {
  let nextId = 0;
  return (lengths, offset = 0) => {
    let o = offset;
    return lengths.map((length) => {
      const s = { id: nextId++, offset: o, length };
      o += length;
      return s;
    });
  };
}

/** An SP group of degree `ranks.length` over `ranks` holding `sequences`. */
export const group = (ranks: number[], sequences: SequenceRef[]): GroupAssignment => ({
  degree: ranks.length,
  ranks,
  sequences,
});

/** A step plan whose `globalTokens` is the number of predicted tokens (length - 1 per sequence). */
export function plan(step: number, microBatches: { groups: GroupAssignment[] }[], lr = 1e-3): ExecutorStepPlan {
  const globalTokens = microBatches.flatMap((m) => m.groups.flatMap((g) => g.sequences))
    .reduce((a, s) => a + s.length - 1, 0);
  return { step, microBatches, lr, globalTokens };
}

/** Sends `p` to every executor and waits for each `step_done`. */
export async function stepAll(procs: ExecutorProc[], p: ExecutorStepPlan, ms = 60_000) {
  await Promise.all(procs.map((x) => x.send({ type: "step", plan: p })));
  return await Promise.all(procs.map((x) => x.next(isType("step_done"), ms, `step_done ${p.step}`)));
}

/** Sends `p` to every executor and waits for each one's `error` (a plan they refuse). */
export async function errorsOf(procs: ExecutorProc[], p: ExecutorStepPlan, ms = 10_000) {
  await Promise.all(procs.map((x) => x.send({ type: "step", plan: p })));
  return await Promise.all(procs.map((x) => x.next(isType("error"), ms, "error")));
}

/** Saves every executor's state to `DIR/TAG-rankR.ckpt` and waits for each `saved`. */
export async function saveAll(procs: ExecutorProc[], dir: string, tag: string) {
  await Promise.all(procs.map((x) => x.send({ type: "save", path: `${dir}/${tag}-rank${x.rank}.ckpt` })));
  return await Promise.all(procs.map((x) => x.next(isType("saved"), 30_000, "saved")));
}

/** Loads `path` into every executor and waits for each `loaded`. */
export async function loadAll(procs: ExecutorProc[], path: string): Promise<void> {
  await Promise.all(procs.map((x) => x.send({ type: "load", path })));
  await Promise.all(procs.map((x) => x.next(isType("loaded"), 30_000, "loaded")));
}
