// ExecutorPool's own logic (orchestrator/cluster/executor_pool.ts) over fake agents: the agent interface the pool
// talks to (send, sendRaw, on, lost), driven by the test event by event. Collecting (a phase resolves once every rank
// it waits for has answered, and only with the answer it asked for), refusals, faults, timeouts, and `settled()`
// (waits for the faults that follow the first, longer while the cause is only a peer's echo). Real agents and
// executors run the same pool in tests/cluster/node_dispatch_test.ts and tests/run/.

import type { AgentEvent, ExecutorEvent, ExecutorStepPlan } from "../../core/protocol.ts";
import type { AgentSession, LostInfo } from "../../orchestrator/cluster/agent_session.ts";
import type { ClusterSession, NodeLaunch } from "../../orchestrator/cluster/cluster_session.ts";
import { ExecutorPool, FaultError, RefusedError } from "../../orchestrator/cluster/executor_pool.ts";
import { parseConfig } from "../../orchestrator/config/load.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";

/** The agent end of one node, as the pool sees it: records what the pool writes, emits what the test says. */
class FakeAgent {
  /** Every line the pool wrote, parsed. */
  readonly sent: Record<string, unknown>[] = [];
  lostInfo?: LostInfo;
  readonly lost: Promise<LostInfo>;
  #lose!: (l: LostInfo) => void;
  #listeners = new Set<(ev: AgentEvent) => void>();

  constructor(readonly name: string) {
    this.lost = new Promise((resolve) => this.#lose = resolve);
  }
  on(listener: (ev: AgentEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  send(cmd: object): boolean {
    this.sent.push(JSON.parse(JSON.stringify(cmd)));
    return true;
  }
  sendRaw(line: string): boolean {
    this.sent.push(JSON.parse(line));
    return true;
  }
  emit(ev: AgentEvent): void {
    for (const l of [...this.#listeners]) l(ev);
  }
  /** An executor event of `rank`, as the agent forwards it. */
  executor(rank: number, msg: ExecutorEvent): void {
    this.emit({ type: "from_executor", rank, msg });
  }
  loseNode(reason: string): void {
    this.lostInfo = { node: this.name, host: "h", reason, stderrTail: "" };
    this.#lose(this.lostInfo);
  }
}

/** A pool of `nodes` nodes of 2 simulated devices each over fake agents (ranks 0-1 on node 0, 2-3 on node 1, ...). */
function fakePool(nodes = 2): { pool: ExecutorPool; agents: FakeAgent[] } {
  const node = "    - host: localhost\n      transport: local\n      devices: 2\n      executor: sim\n";
  const config = parseConfig(
    `cluster:\n  heartbeat_timeout_s: 60\n  nodes:\n${node.repeat(nodes)}model:\n  preset: gpt-tiny\n` +
      "training:\n  simulate: true\n",
    "fake.yaml",
  );
  const agents = config.cluster.nodes.map((_, i) => new FakeAgent(`node ${i} (h)`));
  const ready: NodeLaunch[] = config.cluster.nodes.map((c, i) => ({
    config: c,
    name: agents[i].name,
    session: agents[i] as unknown as AgentSession,
    executorKind: "sim",
    timings: {},
  }));
  const pool = ExecutorPool.create({ ready } as unknown as ClusterSession, { config });
  return { pool, agents };
}

const plan = (step: number): ExecutorStepPlan => ({
  step,
  lr: 1e-3,
  globalTokens: 0,
  microBatches: [{ groups: [0, 1, 2, 3].map((r) => ({ degree: 1, ranks: [r], sequences: [] })) }],
});
const done = (rank: number, step: number): ExecutorEvent => ({
  type: "step_done",
  rank,
  step,
  microBatches: [],
  ms: 1,
});
const error = (rank: number, message: string, fatal: boolean, echo: boolean): ExecutorEvent => ({
  type: "error",
  rank,
  message,
  fatal,
  echo,
});
/** Whether `p` has settled after the events queued so far (and `ms` more) have run. */
async function settledWithin<T>(p: Promise<T>, ms = 0): Promise<boolean> {
  let over = false;
  p.then(() => over = true, () => over = true);
  await new Promise((r) => setTimeout(r, ms));
  return over;
}
/** The rejection of `p` (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(() => undefined, (e) => e);
  assert(e instanceof Error, "the phase was rejected");
  return e;
}

Deno.test("executor pool: a step sends one line per node and resolves once every rank's step_done for it came", async () => {
  const { pool, agents } = fakePool();
  const step = pool.step(plan(7));
  assertEquals(agents.map((a) => a.sent.map((m) => m.type)), [["step"], ["step"]]);
  agents[0].executor(0, done(0, 7));
  agents[1].executor(3, done(3, 7));
  agents[1].executor(2, done(2, 6)); // another step's answer is not this one's
  agents[0].executor(1, done(1, 7));
  assertEquals(await settledWithin(step, 20), false, "rank 2 has not answered step 7");
  agents[1].executor(2, done(2, 7));
  const { done: all } = await step;
  assertEquals(all.map((d) => [d.rank, d.step]), [[0, 7], [1, 7], [2, 7], [3, 7]]);
  assertEquals(pool.faults, []);
  pool.stop();
});

Deno.test("executor pool: request waits only for the ranks given a command; a refusal rejects and the pool goes on", async () => {
  const { pool, agents } = fakePool();
  const save = { type: "save" as const, path: "/x" };
  const req = pool.request((r) => (r % 2 === 0 ? save : undefined), "saved", 10_000, "save");
  // Ranks given the same command share one to_executors line per node.
  assertEquals(agents.map((a) => a.sent.map((m) => [m.type, m.ranks])), [[["to_executors", [0]]], [[
    "to_executors",
    [2],
  ]]]);
  for (const r of [0, 2]) {
    agents[r >> 1].executor(r, { type: "saved", rank: r, path: "/x", sha256: `s${r}`, bytes: r });
  }
  assertEquals([...(await req).keys()], [0, 2]);

  const load = pool.load([0, 1, 2, 3].map((r) => ({ path: `/p${r}`, sha256: "x" })));
  agents[0].executor(1, error(1, "load: sha256 differs", false, false));
  const e = await rejection(load);
  assert(e instanceof RefusedError, `a refusal, not ${e}`);
  assertEquals([e.name, e.rank, e.phase, e.message], ["RefusedError", 1, "load", "load: rank 1: load: sha256 differs"]);
  assertEquals(pool.faults, [], "a refusal is no fault");
  const step = pool.step(plan(1));
  for (const r of [0, 1, 2, 3]) agents[r >> 1].executor(r, done(r, 1));
  assertEquals((await step).done.length, 4, "usable after a refusal");
  pool.stop();
});

Deno.test("executor pool: a rank's own fatal error fails the step; settled() waits for the peers' echoes, not for maxMs", async () => {
  const { pool, agents } = fakePool();
  const step = pool.step(plan(1));
  agents[0].executor(0, done(0, 1));
  // A peer's echo arrives before the error that caused it.
  agents[1].executor(2, error(2, "data plane: rank 1 aborted: rank 1 failed: boom", true, true));
  const e = await rejection(step);
  assert(e instanceof FaultError, `a fault, not ${e}`);
  assertEquals([e.name, e.phase, e.fault.rank, e.fault.echo], ["FaultError", "step 1", 2, true]);
  const settled = pool.settled({ maxMs: 60_000 });
  agents[0].executor(1, error(1, "boom", true, false));
  assertEquals(await settledWithin(settled, 20), false, "rank 3 is still to answer or fail");
  agents[1].executor(3, error(3, "data plane: rank 1 disconnected (during a2a)", true, true));
  assertEquals(await settledWithin(settled), true, "every rank the step waited for answered or failed");
  assertEquals(pool.cause?.rank, 1, "the rank whose error is no echo, not the first to report");
  assertEquals(pool.faults.map((f) => [f.rank, f.echo]), [[2, true], [1, false], [3, true]]);
  pool.stop();
});

Deno.test("executor pool: an event without echo (an older executor) is not an echo: settled() stops at maxMs", async () => {
  const { pool, agents } = fakePool();
  const step = pool.step(plan(1));
  // The words of an echo, but no echo field: the field decides.
  agents[0].executor(
    0,
    { type: "error", rank: 0, message: "data plane: rank 2 aborted", fatal: true } as ExecutorEvent,
  );
  await rejection(step);
  assertEquals(pool.faults.map((f) => f.echo), [false]);
  assertEquals(await settledWithin(pool.settled({ maxMs: 30 }), 500), true, "no node loss is awaited");
  assertEquals(pool.cause?.rank, 0);
  pool.stop();
});

Deno.test("executor pool: while the cause is only an echo, settled() waits past maxMs for the node loss behind it", async () => {
  const { pool, agents } = fakePool();
  const step = pool.step(plan(1));
  agents[0].executor(0, error(0, "data plane: rank 2 disconnected", true, true));
  agents[0].executor(1, error(1, "data plane: rank 0 aborted: rank 0 failed", true, true));
  await rejection(step);
  const settled = pool.settled({ maxMs: 30 });
  assertEquals(await settledWithin(settled, 300), false, "ranks 2-3 silent and the cause only an echo: waiting");
  agents[1].loseNode("control channel dropped: SSH connection closed");
  assertEquals(await settledWithin(settled, 20), true, "the node loss arrived");
  assertEquals(pool.cause?.kind, "node_lost");
  assertEquals(pool.cause?.node.name, "node 1 (h)");
  pool.stop();
});

Deno.test("executor pool: a silent rank times out, a stopped one named first; an exit after stop() is no fault", async () => {
  const { pool, agents } = fakePool();
  agents[1].emit({
    type: "heartbeat",
    t: 0,
    executors: [{ rank: 2, pid: 1, alive: true }, { rank: 3, pid: 2, alive: true, stopped: true }],
  });
  const step = pool.step(plan(1), 50);
  agents[0].executor(0, done(0, 1));
  agents[0].executor(1, done(1, 1));
  const e = await rejection(step);
  assert(e instanceof FaultError, `a fault, not ${e}`);
  assertEquals([e.fault.kind, e.fault.rank, e.fault.silent], ["timeout", 3, [3, 2]]);
  assertIncludes(e.message, "step 1: rank 3 on node 1 (h): no answer to step 1 within 0 s", "rank 3 is stopped");
  // A later phase fails at once with the first fault.
  assertIncludes((await rejection(pool.step(plan(2)))).message, "step 2: rank 3 on node 1 (h): no answer to step 1");
  pool.stop();
  agents[1].emit({ type: "executor_exit", rank: 2, code: 0, signal: null, logTail: "" });
  assertEquals(pool.faults.length, 1, "exits after stop() are expected");
});
