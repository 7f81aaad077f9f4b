// Agents over real SSH on test hosts (network namespaces with their own sshd): bootstrap of missing and old Deno,
// warm launches that upload nothing, the nodes preflight, every connection fault (unreachable, refused, wrong key,
// host key mismatch, unknown host), malformed lines, a SIGKILLed agent, a killed orchestrator and Ctrl-C.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { ClusterSession } from "../../orchestrator/cluster/cluster_session.ts";
import type { LostInfo } from "../../orchestrator/cluster/agent_session.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import type { AgentEvent } from "../../core/protocol.ts";
import { assert, assertEquals, assertIncludes, eventually } from "../assert.ts";
import { nodesCli } from "../run/launch_harness.ts";

const FAKE = `${REPO_ROOT}/tests/agents/fixtures/fake_executor.ts`;
const realExecutor = (() => {
  try {
    return Deno.statSync(`${REPO_ROOT}/kernels/executor_main.ts`).isFile;
  } catch {
    return false;
  }
})();
/** Whether this checkout has the PyTorch executor (SSH nodes then get its package too). */
const torchPackage = (() => {
  try {
    return Deno.statSync(`${REPO_ROOT}/kernels/torch/executor_main.py`).isFile;
  } catch {
    return false;
  }
})();
const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the SSH test-host tests: ${can.reason}`);

/** Starts the nodes CLI in the background, reading its stderr as it comes. */
function nodesCliBackground(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/orchestrator/cli/nodes.ts`, ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let err = "";
  const pump = (async () => {
    const d = new TextDecoder();
    for await (const c of child.stderr) err += d.decode(c, { stream: true });
  })();
  const out = new Response(child.stdout).text();
  return {
    child,
    stderr: () => err,
    waitFor: (text: string, ms: number) => eventually(() => err.includes(text), ms),
    finish: async () => ({ status: await child.status, out: await out, err: (await pump, err) }),
  };
}

async function fingerprintOf(pubKeyPath: string): Promise<string> {
  const out = await new Deno.Command("ssh-keygen", { args: ["-l", "-E", "sha256", "-f", pubKeyPath] }).output();
  return new TextDecoder().decode(out.stdout).split(" ")[1];
}

function oneLineError(text: string): void {
  assert(!/^\s+at .*:\d+:\d+/m.test(text), `a stack trace leaked:\n${text}`);
}

Deno.test({
  name: "agents over SSH on test hosts",
  ignore: !can.ok,
  // ssh2 keeps internal timers between a socket's close and its final callbacks.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const th = await startTestHosts({ count: 3, deno: { 1: "missing", 2: "old" } });
    try {
      const cfg = await th.writeConfig({ devices: 1, executor: "cpu", heartbeatTimeoutS: 3 });
      const config = await loadConfig(cfg);

      await t.step(
        "cold launch uploads Deno where it is missing or too old; a warm launch uploads nothing",
        async () => {
          const c1 = await ClusterSession.launch(config, { runId: "t1", runDir: `${th.dir}/run`, executorEntry: FAKE });
          try {
            assertEquals(c1.failures.map((f) => f.error), []);
            assertEquals(c1.nodes.map((n) => n.inventory!.hostname), ["fxh1", "fxh2", "fxh3"]);
            assertEquals(c1.nodes.map((n) => n.boot!.denoUploaded), [false, true, true]);
            for (const n of c1.nodes) {
              assertEquals(n.boot!.uploads.map((u) => u.what).filter((w) => w !== "deno").sort(), [
                "agent",
                "executor",
                ...(torchPackage ? ["torch"] : []),
              ]);
            }
            const deno = c1.nodes[1].boot!.uploads.find((u) => u.what === "deno")!;
            assert(deno.bytes > 10_000_000, "the Deno binary was uploaded");
          } finally {
            const exits = await c1.shutdown("step done");
            assertEquals(exits.map((e) => e.code), [0, 0, 0]);
          }
          const c2 = await ClusterSession.launch(config, { runId: "t2", runDir: `${th.dir}/run`, executorEntry: FAKE });
          try {
            assertEquals(c2.failures.map((f) => f.error), []);
            assertEquals(c2.nodes.map((n) => n.boot!.uploads.length), [0, 0, 0]);
            assert(c2.launchMs < 5000, `warm launch took ${c2.launchMs} ms`);
            const rtts = [];
            for (let i = 0; i < 5; i++) rtts.push(await c2.sessions[0].ping());
            assert(Math.min(...rtts) < 200, `round trips ${rtts} ms`);
          } finally {
            await c2.shutdown("step done");
          }
          assertEquals(await th.waitNoStrays(5000), "");
        },
      );

      await t.step("deno task nodes: inventory table, exit 0; a config the node cannot meet: exit 1", async () => {
        const ok = await nodesCli([cfg]);
        assertEquals(ok.code, 0, ok.out + ok.err);
        assertIncludes(ok.out, "fxh1", "fxh2", "fxh3", "all nodes match the config", "2.9.6");
        assertIncludes(ok.err, "ready");
        const bad = await nodesCli([
          cfg,
          "--set",
          "cluster.nodes[0].executor=cuda",
          "--set",
          "cluster.nodes[2].devices=64",
        ]);
        assertEquals(bad.code, 1, bad.out + bad.err);
        assertIncludes(
          bad.out,
          `problem: node 0 (${th.hosts[0].ip}): executor: cuda, but nvidia-smi lists no NVIDIA GPU`,
        );
        assertIncludes(bad.out, `warning: node 2 (${th.hosts[2].ip}): 64 cpu executors`);
        const json = await nodesCli([cfg, "--json", "--pings", "3"]);
        const report = JSON.parse(json.out);
        assertEquals(report.nodes.map((n: { ok: boolean }) => n.ok), [true, true, true]);
        assert(report.nodes.every((n: { rttMs: { p50: number } }) => n.rttMs.p50 > 0), "round trips measured");
      });

      await t.step({
        name: "the real executor, bundled and uploaded, starts on an SSH node: init -> ready",
        ignore: !realExecutor,
        fn: async () => {
          const only0 = await th.writeConfig({ only: [0], executor: "cpu" });
          const r = await nodesCli([only0, "--executors"]);
          assertEquals(r.code, 0, r.out + r.err);
          assertIncludes(r.err, "every executor is ready");
        },
      });

      await t.step("unreachable host: a clear error within the connect timeout", async () => {
        const r = await nodesCli([
          cfg,
          "--set",
          `cluster.nodes[0].host=${th.unreachableIp}`,
          "--set",
          "cluster.connect_timeout_s=1.5",
        ]);
        assertEquals(r.code, 1);
        assertIncludes(
          r.out,
          `problem: node 0 (${th.unreachableIp}): cannot connect to ${th.unreachableIp}:22: no answer within 1.5 s`,
        );
        // Nodes 1 and 2 were fine and are reported as such.
        assertIncludes(r.out, "fxh2", "fxh3");
        assert(r.ms < 1500 + 8000, `took ${r.ms} ms`);
        oneLineError(r.out + r.err);
      });

      await t.step("connection refused, wrong key, host key mismatch: one clear message each", async () => {
        const refused = await nodesCli([cfg, "--set", "cluster.nodes[0].port=2222"]);
        assertEquals(refused.code, 1);
        assertIncludes(refused.out, `cannot connect to ${th.hosts[0].ip}:2222: connection refused`);

        const wrong = await nodesCli([cfg, "--set", `cluster.nodes[1].identity=${th.wrongIdentity}`]);
        assertEquals(wrong.code, 1);
        assertIncludes(wrong.out, `node 1 (${th.hosts[1].ip}): authentication as root failed`, th.wrongIdentity);

        // known_hosts claims h1's address has h2's key.
        const lines = (await Deno.readTextFile(th.knownHosts)).trim().split("\n");
        const forged = `${th.dir}/known_hosts_forged`;
        await Deno.writeTextFile(forged, `${th.hosts[0].ip} ${lines[1].split(" ").slice(1).join(" ")}\n`);
        const mism = await nodesCli([cfg, "--set", `cluster.nodes[0].known_hosts=${forged}`]);
        assertEquals(mism.code, 1);
        const offered = await fingerprintOf(`${th.dir}/h1/host_ed25519.pub`);
        const listed = await fingerprintOf(`${th.dir}/h2/host_ed25519.pub`);
        assertIncludes(mism.out, "HOST KEY MISMATCH", offered, listed, `${forged}:1`);
        for (const r of [refused, wrong, mism]) oneLineError(r.out + r.err);
      });

      await t.step("unknown host: strict refuses with the fingerprint, accept-new records the key", async () => {
        const empty = `${th.dir}/known_hosts_empty`;
        await Deno.writeTextFile(empty, "");
        const only0 = await th.writeConfig({ only: [0], knownHosts: empty });
        const strict = await nodesCli([only0]);
        assertEquals(strict.code, 1);
        const fp = await fingerprintOf(`${th.dir}/h1/host_ed25519.pub`);
        assertIncludes(strict.out, "is not in", fp, "host_key_policy: accept-new");
        const accept = await nodesCli([only0, "--set", "cluster.nodes[0].host_key_policy=accept-new"]);
        assertEquals(accept.code, 0, accept.out + accept.err);
        assertIncludes(await Deno.readTextFile(empty), `${th.hosts[0].ip} ssh-ed25519 `);
        const again = await nodesCli([only0]);
        assertEquals(again.code, 0, "strict now finds the recorded key");
      });

      await t.step("ssh-agent: with no identity configured, the key in SSH_AUTH_SOCK is used", async () => {
        const sock = `${th.dir}/agent.sock`;
        const agent = new Deno.Command("ssh-agent", { args: ["-D", "-a", sock], stdout: "null", stderr: "null" })
          .spawn();
        const saved = Deno.env.get("SSH_AUTH_SOCK");
        try {
          assert(await eventually(async () => (await Deno.stat(sock).catch(() => null)) !== null, 5000), "agent up");
          const add = await new Deno.Command("ssh-add", { args: [th.identity], env: { SSH_AUTH_SOCK: sock } })
            .output();
          assert(add.success, "ssh-add");
          Deno.env.set("SSH_AUTH_SOCK", sock);
          const text = (await Deno.readTextFile(await th.writeConfig({ only: [0] })))
            .replace(/^\s*identity: .*\n/m, "");
          const path = `${th.dir}/cluster_agent.yaml`;
          await Deno.writeTextFile(path, text);
          const c = await ClusterSession.launch(await loadConfig(path), {
            runId: "t-agent",
            runDir: `${th.dir}/run`,
            executorEntry: null,
          });
          try {
            assertEquals(c.failures.map((f) => f.error), []);
            assertEquals(c.nodes[0].inventory!.hostname, "fxh1");
          } finally {
            await c.shutdown("step done");
          }
        } finally {
          if (saved === undefined) Deno.env.delete("SSH_AUTH_SOCK");
          else Deno.env.set("SSH_AUTH_SOCK", saved);
          agent.kill("SIGTERM");
          await agent.status;
        }
      });

      await t.step("a malformed line over SSH is reported by the agent, which keeps working", async () => {
        const c = await ClusterSession.launch(await loadConfig(await th.writeConfig({ only: [0] })), {
          runId: "t3",
          runDir: `${th.dir}/run`,
          executorEntry: null,
        });
        try {
          const s = c.sessions[0];
          const got: AgentEvent[] = [];
          s.on((ev) => got.push(ev));
          s.sendRaw('{"type":"spawn","executors":"all of them"}');
          const err = await s.waitFor(
            (ev): ev is Extract<AgentEvent, { type: "protocol_error" }> => ev.type === "protocol_error",
            5000,
            "protocol_error",
          );
          assertEquals(err.source, "orchestrator");
          assertIncludes(err.message, '"spawn" needs executors: array');
          assert((await s.ping()) >= 0, "still answers");
        } finally {
          await c.shutdown("step done");
        }
      });

      await t.step("agent killed with SIGKILL: its node is lost, the others shut down cleanly", async () => {
        const lost: LostInfo[] = [];
        const c = await ClusterSession.launch(config, {
          runId: "t4",
          runDir: `${th.dir}/run`,
          executorEntry: FAKE,
          onLost: (info) => lost.push(info),
        });
        try {
          assertEquals(c.failures.length, 0);
          for (const [i, n] of c.ready.entries()) {
            n.session!.send({ type: "spawn", executors: [{ rank: i, device: 0, kind: "cpu" }] });
          }
          assert(
            await eventually(
              async () => (await Promise.all(th.hosts.map((h) => th.strayPids(h)))).every((p) => p.length >= 3),
              15000,
            ),
            "agents and executors running",
          );
          const victim = c.nodes[1];
          const t0 = performance.now();
          Deno.kill(victim.session!.agentPid!, "SIGKILL");
          assert(await eventually(() => lost.length > 0, 3000 + 2000), "node declared lost");
          const took = performance.now() - t0;
          assertEquals(lost.length, 1);
          assertEquals(lost[0].host, th.hosts[1].ip);
          assertIncludes(lost[0].node, "node 1");
          assertIncludes(lost[0].reason, "killed by signal KILL");
          assert(took < 3000, `lost after ${took} ms (heartbeat timeout 3 s)`);
        } finally {
          const exits = await c.shutdown("a node was lost");
          assertEquals([exits[0].code, exits[2].code], [0, 0], "the other agents exited cleanly");
        }
        assertEquals(await th.waitNoStrays(5000), "", "no process left on any host");
      });

      await t.step("orchestrator killed: agents and executors exit by themselves", async () => {
        const bg = nodesCliBackground([cfg, "--executors", "--executor-entry", FAKE, "--hold", "0"]);
        let killed = false;
        try {
          assert(await bg.waitFor("holding the agents", 30000), `never held:\n${bg.stderr()}`);
          assertIncludes(bg.stderr(), "every executor is ready");
          const before = await Promise.all(th.hosts.map((h) => th.strayPids(h)));
          assert(before.every((p) => p.length >= 3), `agents and executors running: ${JSON.stringify(before)}`);
          const t0 = performance.now();
          bg.child.kill("SIGKILL");
          killed = true;
          await bg.finish();
          const left = await th.waitNoStrays(8000);
          assertEquals(left, "", "agents and executors gone");
          const took = performance.now() - t0;
          assert(took < 8000, `took ${took} ms`);
        } finally {
          if (!killed) bg.child.kill("SIGKILL");
        }
      });

      await t.step("Ctrl-C: everything shuts down cleanly, exit 130", async () => {
        const bg = nodesCliBackground([cfg, "--executors", "--executor-entry", FAKE, "--hold", "0"]);
        try {
          assert(await bg.waitFor("holding the agents", 30000), `never held:\n${bg.stderr()}`);
          bg.child.kill("SIGINT");
          const r = await bg.finish();
          assertEquals(r.status.code, 130, r.err);
          assertIncludes(r.err, "interrupted: stopping 3 agent(s)");
          assertEquals(await th.waitNoStrays(3000), "");
        } finally {
          try {
            bg.child.kill("SIGKILL");
          } catch { /* exited */ }
        }
      });
    } finally {
      await th.close();
    }
  },
});
