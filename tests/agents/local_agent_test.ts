// The agent as a local subprocess (transport: local): hello and inventory, pings, bad input, executor supervision
// (spawn, forward, crash reports with log tails, tree kill), stdin close, orphan watchdog, heartbeat loss.

import type { AgentEvent, ExecutorInit } from "../../core/protocol.ts";
import { encodeMessage, PROTOCOL_VERSION } from "../../core/protocol.ts";
import { descendants, isAlive } from "../../agents/process_tree.ts";
import { AgentSession } from "../../orchestrator/cluster/agent_session.ts";
import { spawnLocalAgent } from "../../orchestrator/cluster/local_transport.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import { assert, assertEquals, assertIncludes, eventually } from "../assert.ts";
import { autoCpuSets, formatCpuList, ownCpus, processCpus } from "../../core/cpu_list.ts";

/** The kernel's CPU affinity of a running process, as a CPU list. */
const affinity = (pid: number) => formatCpuList(processCpus(pid) ?? []);

const FAKE = `${REPO_ROOT}/tests/agents/fixtures/fake_executor.ts`;
const REAL = `${REPO_ROOT}/kernels/executor_main.ts`;

function init(rank: number): ExecutorInit {
  return {
    rank,
    worldSize: 2,
    model: { layers: 2, hidden: 64, heads: 4, vocab: 256, maxSeq: 1024 },
    seed: 1,
    optimizer: { lr: 1e-3, weightDecay: 0, gradClip: 1, beta1: 0.9, beta2: 0.95, eps: 1e-8 },
    secret: "test-secret",
    bindHost: "127.0.0.1",
  };
}

async function startAgent(
  opts: { heartbeatTimeoutMs?: number; entry?: string; cpuPinning?: "auto" | string[] } = {},
) {
  const runDir = await Deno.makeTempDir({ prefix: "fxlocal-" });
  const events: AgentEvent[] = [];
  const protocolErrors: string[] = [];
  const session = new AgentSession(spawnLocalAgent(), {
    name: "node 0 (localhost)",
    host: "localhost",
    heartbeatMs: 100,
    heartbeatTimeoutMs: opts.heartbeatTimeoutMs ?? 5000,
    onProtocolError: (source, message) => protocolErrors.push(`${source}: ${message}`),
  });
  session.on((ev) => events.push(ev));
  const inventory = await session.start({
    runId: "test",
    runDir,
    node: "local-test",
    executorEntry: opts.entry ?? FAKE,
    executorDenoFlags: ["--config", `${REPO_ROOT}/deno.json`],
    probeWebgpu: false,
    orphanTimeoutMs: 10000,
    ...(opts.cpuPinning ? { cpuPinning: opts.cpuPinning } : {}),
  }, 30000);
  const waitEvent = <E extends AgentEvent>(pred: (ev: AgentEvent) => ev is E, ms = 20000, what = "event") =>
    session.waitFor(pred, ms, what);
  const cleanup = async () => {
    if (!session.lostInfo) await session.shutdown("test over", 5000);
    else session.channel.kill();
    await session.closed;
    await Deno.remove(runDir, { recursive: true }).catch(() => {});
  };
  return { session, inventory, events, protocolErrors, runDir, waitEvent, cleanup };
}

const isType = <T extends AgentEvent["type"]>(t: T) => (ev: AgentEvent): ev is Extract<AgentEvent, { type: T }> =>
  ev.type === t;

Deno.test("local agent: hello with inventory, pings, and a malformed line is reported and dropped", async () => {
  const a = await startAgent();
  try {
    assertEquals(a.inventory.hostname, Deno.hostname());
    assertEquals(a.inventory.deno, Deno.version.deno);
    assert(a.inventory.cpus >= 1 && a.inventory.memoryGb > 0, "cpus and memory reported");
    assert(a.session.agentPid && isAlive(a.session.agentPid), "agent pid reported");
    const rtt = await a.session.ping();
    assert(rtt >= 0 && rtt < 1000, `round trip ${rtt} ms`);

    a.session.sendRaw("this is { not json");
    a.session.sendRaw('{"type":"heartbeat","t":1,"executors":[]}');
    const err = await a.waitEvent(isType("protocol_error"), 5000, "protocol_error");
    assertEquals(err.source, "orchestrator");
    assertIncludes(err.message, "not JSON");
    await eventually(() => a.protocolErrors.length >= 2, 2000);
    assertIncludes(a.protocolErrors.join("\n"), "does not belong on the agent command channel");
    // Still alive and answering.
    assert((await a.session.ping()) >= 0);
    const exit = await a.session.shutdown("done");
    assertEquals(exit.code, 0);
  } finally {
    await a.cleanup();
  }
});

Deno.test("executors: spawned per device, commands forwarded, logs written, whole tree killed at shutdown", async () => {
  const a = await startAgent();
  try {
    a.session.send({
      type: "spawn",
      executors: [0, 1].map((d) => ({ rank: d, device: d, kind: "cpu", env: { FAKE_EXECUTOR: "grandchild" } })),
    });
    const spawned = await a.waitEvent(isType("spawned"), 10000, "spawned");
    assertEquals(spawned.executors.map((e) => e.rank), [0, 1]);
    for (const r of [0, 1]) a.session.send({ type: "to_executor", rank: r, msg: { type: "init", init: init(r) } });
    const ready = new Set<number>();
    await eventually(() => {
      for (const ev of a.events) if (ev.type === "from_executor" && ev.msg.type === "ready") ready.add(ev.rank);
      return ready.size === 2;
    }, 20000);
    assertEquals([...ready].sort(), [0, 1]);
    a.session.send({
      type: "to_executor",
      rank: 1,
      msg: { type: "step", plan: { step: 7, microBatches: [{ groups: [] }], globalTokens: 0, lr: 1e-3 } },
    });
    const done = await a.waitEvent(
      (ev): ev is Extract<AgentEvent, { type: "from_executor" }> =>
        ev.type === "from_executor" && ev.msg.type === "step_done",
      10000,
      "step_done",
    );
    assertEquals(done.rank, 1);
    // A command for a rank that does not exist is reported, not fatal.
    a.session.send({ type: "to_executor", rank: 9, msg: { type: "shutdown" } });
    const log = await a.waitEvent(isType("log"), 5000, "log");
    assertIncludes(log.text, "rank 9", "no such executor");

    const hb = await a.waitEvent(
      (ev): ev is Extract<AgentEvent, { type: "heartbeat" }> => ev.type === "heartbeat" && ev.executors.length === 2,
      5000,
      "heartbeat",
    );
    assert(hb.executors.every((e) => e.alive), "heartbeat lists live executors");
    // Executors, their children and the detached grandchildren.
    const tree = descendants(a.session.agentPid!);
    assert(tree.length >= 6, `expected >= 6 descendants, got ${tree.length}`);
    const logText = await Deno.readTextFile(spawned.executors[0].logPath);
    assertIncludes(logText, "fake executor: pid", "[stdout]");

    const exit = await a.session.shutdown("done", 8000, 1000);
    assertEquals(exit.code, 0);
    assert(await eventually(() => !tree.some(isAlive), 3000), `left alive: ${tree.filter(isAlive)}`);
  } finally {
    await a.cleanup();
  }
});

Deno.test("an executor that crashes is reported with its exit code and the tail of its log", async () => {
  const a = await startAgent();
  try {
    a.session.send({
      type: "spawn",
      executors: [{ rank: 0, device: 0, kind: "cpu", env: { FAKE_EXECUTOR: "crash_on_init,garbage" } }],
    });
    await a.waitEvent(isType("spawned"), 10000, "spawned");
    a.session.send({ type: "to_executor", rank: 0, msg: { type: "init", init: init(0) } });
    const exit = await a.waitEvent(isType("executor_exit"), 20000, "executor_exit");
    assertEquals(exit.code, 3);
    assertIncludes(exit.logTail, "simulated crash during init");
    // Its malformed stdout was reported with the executor as the source, and dropped.
    const errs = a.events.filter(isType("protocol_error"));
    assert(errs.length >= 2, "two bad executor lines reported");
    assertIncludes(errs[0].source, "executor rank 0");
    assertIncludes(errs[0].message, "not JSON");
    // A command that cannot start is an exit too, with the reason.
    a.session.send({
      type: "spawn",
      executors: [{ rank: 1, device: 0, kind: "cpu", command: ["/nonexistent/executor"] }],
    });
    const bad = await a.waitEvent(
      (ev): ev is Extract<AgentEvent, { type: "executor_exit" }> => ev.type === "executor_exit" && ev.rank === 1,
      10000,
      "executor_exit of rank 1",
    );
    assertIncludes(bad.logTail, "cannot start /nonexistent/executor");
  } finally {
    await a.cleanup();
  }
});

Deno.test("stdin closed: the agent kills even executors that ignore SIGTERM, then exits", async () => {
  const a = await startAgent();
  try {
    a.session.send({
      type: "spawn",
      executors: [{ rank: 0, device: 0, kind: "cpu", env: { FAKE_EXECUTOR: "stubborn,grandchild" } }],
    });
    await a.waitEvent(isType("spawned"), 10000, "spawned");
    assert(await eventually(() => descendants(a.session.agentPid!).length >= 3, 10000), "executor tree up");
    const tree = descendants(a.session.agentPid!);
    const t0 = performance.now();
    a.session.channel.closeInput();
    const exit = await a.session.closed;
    const took = performance.now() - t0;
    assertEquals(exit.code, 0);
    assert(took < 6000, `agent took ${took} ms to exit`);
    assert(await eventually(() => !tree.some(isAlive), 3000), `left alive: ${tree.filter(isAlive)}`);
  } finally {
    await a.cleanup();
  }
});

Deno.test("an agent whose orchestrator falls silent shuts itself down", async () => {
  const runDir = await Deno.makeTempDir({ prefix: "fxlocal-" });
  const ch = spawnLocalAgent();
  try {
    // Hello without the session's periodic pings: the agent hears nothing more.
    ch.write(encodeMessage({
      type: "hello",
      version: PROTOCOL_VERSION,
      runId: "t",
      runDir,
      heartbeatMs: 100,
      probeWebgpu: false,
      orphanTimeoutMs: 800,
    }));
    const t0 = performance.now();
    const exit = await ch.closed;
    const took = performance.now() - t0;
    assertEquals(exit.code, 0);
    assert(took > 700 && took < 8000, `exited after ${took} ms`);
    const err = new TextDecoder().decode(await new Response(ch.stderr).arrayBuffer());
    assertIncludes(err, "no word from the orchestrator");
  } finally {
    ch.kill();
    await ch.closed;
    await Deno.remove(runDir, { recursive: true });
  }
});

Deno.test("a stopped agent is declared lost within the heartbeat timeout", async () => {
  const a = await startAgent({ heartbeatTimeoutMs: 1000 });
  try {
    const t0 = performance.now();
    Deno.kill(a.session.agentPid!, "SIGSTOP");
    const lost = await Promise.race([
      a.session.lost,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 6000)),
    ]);
    assert(lost, "declared lost");
    const took = performance.now() - t0;
    assert(took >= 900 && took < 4000, `lost after ${took} ms`);
    assertIncludes(lost.reason, "no heartbeat for", "timeout 1 s");
    assertEquals(lost.host, "localhost");
  } finally {
    try {
      Deno.kill(a.session.agentPid!, "SIGKILL");
    } catch { /* gone */ }
    await a.cleanup();
  }
});

const realExists = (() => {
  try {
    Deno.statSync(REAL);
    return true;
  } catch {
    return false;
  }
})();
if (!realExists) console.log(`skipping the real-executor test: ${REAL} does not exist yet`);

Deno.test({
  name: "the real executor (kernels/executor_main.ts) starts under the agent: init -> ready",
  ignore: !realExists,
  fn: async () => {
    const a = await startAgent({ entry: REAL });
    try {
      a.session.send({ type: "spawn", executors: [{ rank: 0, device: 0, kind: "cpu" }] });
      await a.waitEvent(isType("spawned"), 10000, "spawned");
      a.session.send({ type: "to_executor", rank: 0, msg: { type: "init", init: { ...init(0), worldSize: 1 } } });
      const ev = await a.waitEvent(
        (ev): ev is Extract<AgentEvent, { type: "from_executor" | "executor_exit" }> =>
          (ev.type === "from_executor" && (ev.msg.type === "ready" || ev.msg.type === "error")) ||
          ev.type === "executor_exit",
        90000,
        "ready from the real executor",
      );
      assert(
        ev.type === "from_executor" && ev.msg.type === "ready",
        `expected ready, got ${JSON.stringify(ev).slice(0, 2000)}`,
      );
      assertEquals(ev.msg.kind, "cpu");
    } finally {
      await a.cleanup();
    }
  },
});

const cpus = ownCpus();
const linux = Deno.build.os === "linux";

Deno.test({
  name: "cpu_pinning: each executor runs on the CPUs its list names (the kernel's affinity of the running process)",
  ignore: !linux,
  fn: async () => {
    // Two devices on the last CPU and the first, in that order, so that the sets differ from any default.
    const lists = [String(cpus.at(-1)), String(cpus[0])];
    const a = await startAgent({ cpuPinning: lists });
    try {
      a.session.send({ type: "spawn", executors: [0, 1].map((d) => ({ rank: d, device: d, kind: "cpu" })) });
      const spawned = await a.waitEvent(isType("spawned"), 10000, "spawned");
      assertEquals(spawned.executors.map((e) => [e.cpus, e.pinned]), [[lists[0], true], [lists[1], true]]);
      for (const e of spawned.executors) {
        // taskset sets the affinity, then execs the executor in the same process.
        const ok = await eventually(() => affinity(e.pid) === lists[e.device], 5000);
        assert(ok, `rank ${e.rank} (pid ${e.pid}) runs on ${affinity(e.pid)}, expected ${lists[e.device]}`);
      }
    } finally {
      await a.cleanup();
    }
  },
});

Deno.test({
  name: "cpu_pinning auto: the node's CPUs in one block per device; unpinned executors keep all of them",
  ignore: !linux,
  fn: async () => {
    const want = autoCpuSets(cpus, 2).map(formatCpuList);
    const a = await startAgent({ cpuPinning: "auto" });
    try {
      a.session.send({ type: "spawn", executors: [0, 1].map((d) => ({ rank: d, device: d, kind: "cpu" })) });
      const spawned = await a.waitEvent(isType("spawned"), 10000, "spawned");
      for (const e of spawned.executors) {
        assert(await eventually(() => affinity(e.pid) === want[e.device], 5000), `rank ${e.rank} on ${want}`);
      }
    } finally {
      await a.cleanup();
    }
    const b = await startAgent();
    try {
      b.session.send({ type: "spawn", executors: [{ rank: 0, device: 0, kind: "cpu" }] });
      const spawned = await b.waitEvent(isType("spawned"), 10000, "spawned");
      assertEquals([spawned.executors[0].cpus, spawned.executors[0].pinned], [formatCpuList(cpus), false]);
      assertEquals(affinity(spawned.executors[0].pid), formatCpuList(cpus));
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test("cpu_pinning naming a CPU the node lacks: the executor does not start, and the reason names it", async () => {
  const a = await startAgent({ cpuPinning: ["4095"] });
  try {
    a.session.send({ type: "spawn", executors: [{ rank: 0, device: 0, kind: "cpu" }] });
    const exit = await a.waitEvent(isType("executor_exit"), 10000, "executor_exit");
    assertIncludes(
      exit.logTail,
      'cpu_pinning "4095" of device 0: CPU 4095 not usable on local-test',
      "use cpu_pinning",
    );
  } finally {
    await a.cleanup();
  }
});
