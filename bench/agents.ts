// Benchmark of the agent tier on 3 SSH test hosts: cold launch (Deno and bundles uploaded), cold launch with only
// the bundles uploaded, warm launch (nothing uploaded), control round trip p50/p99, and step-plan dispatch throughput
// to all agents (through each agent to a test executor and back). Needs root (network namespaces); run alone with
// `deno run -A bench/agents.ts`.

import { canCreateTestHosts, startTestHosts } from "../tests/hosts/test_hosts.ts";
import { loadConfig } from "../orchestrator/config/load.ts";
import { ClusterSession } from "../orchestrator/cluster/cluster_session.ts";
import { bundle, REPO_ROOT } from "../orchestrator/cluster/bootstrap.ts";
import type { AgentEvent, ExecutorStepPlan } from "../core/protocol.ts";

const FAKE = `${REPO_ROOT}/tests/agents/fixtures/fake_executor.ts`;
const TITLE = "agents: 3 SSH test hosts (network namespaces, real sshd)";

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** A plan shaped like a real step: 4 micro-batches of 8 groups, 256 sequences in all. */
function makePlan(step: number): ExecutorStepPlan {
  let id = 0;
  return {
    step,
    microBatches: Array.from({ length: 4 }, () => ({
      groups: Array.from({ length: 8 }, (_, g) => ({
        degree: 1,
        ranks: [g],
        sequences: Array.from({ length: 8 }, () => ({ id: id++, offset: id * 4096, length: 512 + (id * 37) % 3000 })),
      })),
    })),
    globalTokens: 500_000,
    lr: 3e-4,
  };
}

/** Runs the benchmark. */
export async function bench(): Promise<{ title: string; rows: Record<string, string | number>[]; json: unknown }> {
  const can = canCreateTestHosts();
  if (!can.ok) {
    return {
      title: TITLE,
      rows: [{ metric: "skipped", value: can.reason, target: "" }],
      json: { skipped: can.reason },
    };
  }
  // Bundles are built once per source version on this machine; measure launches, not esbuild.
  const tb = performance.now();
  await Promise.all([bundle("agent", `${REPO_ROOT}/agents/agent.ts`), bundle("executor", FAKE)]);
  const bundleMs = performance.now() - tb;

  const th = await startTestHosts({ count: 3, deno: { 0: "missing", 1: "missing", 2: "missing" } });
  try {
    const config = await loadConfig(await th.writeConfig({ devices: 1, executor: "cpu", heartbeatTimeoutS: 10 }));
    const autoConfig = await loadConfig(await th.writeConfig({ devices: 1, executor: "auto", heartbeatTimeoutS: 10 }));
    const launch = async (runId: string, cfg = config) => {
      const c = await ClusterSession.launch(cfg, { runId, runDir: `${th.dir}/run`, executorEntry: FAKE });
      if (c.failures.length) {
        await c.shutdown("bench failed");
        throw new Error(c.failures.map((f) => f.error).join("\n"));
      }
      return c;
    };
    const uploaded = (c: ClusterSession) =>
      c.nodes.reduce((s, n) => s + n.boot!.uploads.reduce((a, u) => a + u.bytes, 0), 0);

    // Cold: no Deno, no bundles on any host.
    const cold = await launch("cold");
    const coldMs = cold.launchMs;
    const coldBytes = uploaded(cold);
    await cold.shutdown("bench");
    // Cold bundles only: Deno cached, bundles removed.
    for (const h of th.hosts) await Deno.remove(`${h.home}/.cache/flexsp/bundles`, { recursive: true });
    const cb = await launch("cold-bundles");
    const coldBundlesMs = cb.launchMs;
    const coldBundlesBytes = uploaded(cb);
    await cb.shutdown("bench");
    // Warm: everything cached.
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await launch(`warm${i}`);
      warm.push(c.launchMs);
      if (uploaded(c) !== 0) throw new Error("a warm launch uploaded something");
      await c.shutdown("bench");
    }
    warm.sort((a, b) => a - b);
    // Warm with executor: auto, where each agent also asks for a WebGPU adapter.
    const warmAuto: number[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await launch(`warm-auto${i}`, autoConfig);
      warmAuto.push(c.launchMs);
      await c.shutdown("bench");
    }
    warmAuto.sort((a, b) => a - b);

    const c = await launch("steady");
    try {
      // Control round trips, one at a time, over all three agents in turn.
      for (let i = 0; i < 50; i++) await c.sessions[i % 3].ping();
      const rtts: number[] = [];
      for (let i = 0; i < 1500; i++) rtts.push(await c.sessions[i % 3].ping());
      rtts.sort((a, b) => a - b);

      // Plan dispatch: one executor per agent, every plan to every agent, until every step_done is back.
      const sessions = c.sessions;
      const ready = sessions.map((s, rank) =>
        s.waitFor(
          (ev): ev is Extract<AgentEvent, { type: "from_executor" }> =>
            ev.type === "from_executor" && ev.msg.type === "ready",
          30000,
          "executor ready",
        ).then(() => rank)
      );
      sessions.forEach((s, rank) => {
        s.send({ type: "spawn", executors: [{ rank, device: 0, kind: "cpu" }] });
        s.send({
          type: "to_executor",
          rank,
          msg: {
            type: "init",
            init: {
              rank,
              worldSize: 3,
              model: config.model,
              seed: 1,
              optimizer: { lr: 1e-3, weightDecay: 0, gradClip: 1, beta1: 0.9, beta2: 0.95, eps: 1e-8 },
              secret: "bench",
              bindHost: "127.0.0.1",
            },
          },
        });
      });
      await Promise.all(ready);
      const plans = 1000;
      const planBytes = JSON.stringify(makePlan(0)).length;
      const done = sessions.map(() => 0);
      const all = Promise.withResolvers<void>();
      const offs = sessions.map((s, i) =>
        s.on((ev) => {
          if (ev.type === "from_executor" && ev.msg.type === "step_done" && ++done[i] === plans) {
            if (done.every((d) => d === plans)) all.resolve();
          }
        })
      );
      const t0 = performance.now();
      for (let step = 0; step < plans; step++) {
        const plan = makePlan(step);
        sessions.forEach((s, rank) => s.send({ type: "to_executor", rank, msg: { type: "step", plan } }));
      }
      const timeout = setTimeout(() => all.reject(new Error(`dispatch stalled at ${done.join("/")}`)), 60000);
      await all.promise;
      clearTimeout(timeout);
      const dispatchMs = performance.now() - t0;
      offs.forEach((off) => off());
      const perS = plans / (dispatchMs / 1000);

      const json = {
        hosts: 3,
        localBundleMs: r2(bundleMs),
        coldLaunchMs: r2(coldMs),
        coldUploadBytes: coldBytes,
        coldBundlesOnlyMs: r2(coldBundlesMs),
        coldBundlesOnlyBytes: coldBundlesBytes,
        warmLaunchMs: { median: r2(pct(warm, 0.5)), min: r2(warm[0]), max: r2(warm[warm.length - 1]) },
        warmLaunchWebgpuProbeMs: { median: r2(pct(warmAuto, 0.5)), min: r2(warmAuto[0]), max: r2(warmAuto.at(-1)!) },
        rttMs: { p50: r3(pct(rtts, 0.5)), p99: r3(pct(rtts, 0.99)), n: rtts.length },
        dispatch: {
          plans,
          agents: sessions.length,
          bytesPerPlan: planBytes,
          plansPerSPerAgent: Math.round(perS),
          mbPerSTotal: r2((perS * planBytes * sessions.length) / 1e6),
        },
      };
      const rows = [
        {
          metric: "launch 3 hosts, cold (Deno + bundles uploaded)",
          value: `${Math.round(coldMs)} ms`,
          target: "",
          note: `${(coldBytes / 1e6).toFixed(1)} MB uploaded`,
        },
        {
          metric: "launch 3 hosts, cold (bundles uploaded)",
          value: `${Math.round(coldBundlesMs)} ms`,
          target: "",
          note: `${(coldBundlesBytes / 1e3).toFixed(0)} kB uploaded`,
        },
        {
          metric: "launch 3 hosts, warm (median of 5)",
          value: `${Math.round(pct(warm, 0.5))} ms`,
          target: "< 1000 ms",
          note: `executor: cpu; min ${Math.round(warm[0])}, max ${Math.round(warm[warm.length - 1])}`,
        },
        {
          metric: "launch 3 hosts, warm, with WebGPU probe (median of 3)",
          value: `${Math.round(pct(warmAuto, 0.5))} ms`,
          target: "< 1000 ms",
          note: `executor: auto; min ${Math.round(warmAuto[0])}, max ${Math.round(warmAuto.at(-1)!)}`,
        },
        {
          metric: "control round trip p50",
          value: `${json.rttMs.p50} ms`,
          target: "< 2 ms",
          note: `${rtts.length} pings`,
        },
        { metric: "control round trip p99", value: `${json.rttMs.p99} ms`, target: "", note: "" },
        {
          metric: "plan dispatch, each plan to all 3 agents",
          value: `${Math.round(perS)} plans/s`,
          target: "",
          note: `${(planBytes / 1024).toFixed(1)} KiB/plan, ${json.dispatch.mbPerSTotal} MB/s total, through executors`,
        },
      ];
      return { title: TITLE, rows, json };
    } finally {
      await c.shutdown("bench done");
    }
  } finally {
    await th.close();
  }
}

if (import.meta.main) {
  const r = await bench();
  console.log(r.title);
  console.table(r.rows);
  console.log(JSON.stringify(r.json, null, 2));
}
