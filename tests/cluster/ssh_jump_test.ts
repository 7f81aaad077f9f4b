// SSH as users have it, on test hosts in the bastion topology (host 1 is the only route to hosts 2 and 3; this
// machine has no route to their subnet): direct connections fail, `cluster.nodes[].jump` reaches them over ssh2
// forwarding and their agents come up; a Host alias from an ssh config file (HostName, User, IdentityFile,
// UserKnownHostsFile, ProxyJump to another alias) does the same; the ssh config parser's OpenSSH rules.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { ClusterSession } from "../../orchestrator/cluster/cluster_session.ts";
import { SshConnection } from "../../orchestrator/cluster/ssh_transport.ts";
import { sshTargetFor } from "../../orchestrator/cluster/ssh_route.ts";
import { hostMatches, parseJumpSpec, resolveSshHost } from "../../orchestrator/cluster/ssh_config.ts";
import { assertEquals, assertIncludes, assertThrows } from "../assert.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the SSH jump-host tests: ${can.reason}`);

Deno.test("ssh config: first value wins, wildcards and negation, %h, ProxyJump lists and none", () => {
  const text = [
    "# global",
    "User everyone",
    "Host gpu* !gpu9",
    "  HostName %h.cluster.example",
    "  Port 2222",
    "  ProxyJump me@gate:22,inner",
    "Host gpu9",
    "  ProxyJump none",
    "Host *",
    "  User late",
    "  IdentityFile ~/.ssh/id_test",
    "Match host foo",
    "  User never",
  ].join("\n");
  const home = Deno.env.get("HOME") ?? "/root";
  assertEquals(resolveSshHost("gpu3", text), {
    user: "everyone",
    hostName: "gpu3.cluster.example",
    port: 2222,
    proxyJump: ["me@gate:22", "inner"],
    identityFile: `${home}/.ssh/id_test`,
  });
  assertEquals(resolveSshHost("gpu9", text).proxyJump, []);
  assertEquals(hostMatches("GPU1", ["gpu?"]), true);
  assertEquals(parseJumpSpec("ssh://a@[fe80::1]:2200"), { user: "a", host: "fe80::1", port: 2200 });
});

Deno.test({
  name: "jump hosts: the bastion is the only route; cluster.nodes[].jump and an ssh config Host alias reach the rest",
  ignore: !can.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const th = await startTestHosts({ count: 3, topology: "bastion" });
    try {
      const [gate, h2, h3] = th.hosts;
      await t.step("no direct route to the hosts behind the bastion", async () => {
        const cfg = await loadConfig(await th.writeConfig({ only: [1], connectTimeoutS: 2 }));
        const msg = await assertThrows(() => SshConnection.connect(sshTargetFor(cfg.cluster.nodes[0], 2)));
        assertIncludes(msg, `cannot connect to ${h2.ip}:22`);
      });

      await t.step("cluster.nodes[].jump: agents on both hidden hosts come up through the bastion", async () => {
        const path = await th.writeConfig({ only: [1, 2], nodeExtra: `jump: root@${gate.ip}` });
        const config = await loadConfig(path);
        const cluster = await ClusterSession.launch(config, {
          runId: "jump",
          runDir: `${th.dir}/run`,
          executorEntry: null,
        });
        try {
          assertEquals(cluster.failures.map((n) => n.error), []);
          assertEquals(cluster.nodes.map((n) => n.inventory?.hostname), [h2.name, h3.name]);
          const ping = await cluster.pingAll();
          assertEquals(ping.size, 2);
        } finally {
          await cluster.shutdown("test done");
        }
      });

      await t.step("a Host alias from an ssh config file, with ProxyJump to another alias", async () => {
        const sshConfig = `${th.dir}/ssh_config`;
        await Deno.writeTextFile(
          sshConfig,
          [
            "Host gate",
            `  HostName ${gate.ip}`,
            "Host inner3",
            `  HostName ${h3.ip}`,
            "  ProxyJump gate",
            "Host *",
            "  User root",
            `  IdentityFile ${th.identity}`,
            `  UserKnownHostsFile ${th.knownHosts}`,
            "",
          ].join("\n"),
        );
        const path = `${th.dir}/alias.yaml`;
        await Deno.writeTextFile(
          path,
          [
            "cluster:",
            "  connect_timeout_s: 5",
            "  nodes:",
            "    - host: inner3",
            `      ssh_config: ${sshConfig}`,
            "      devices: 1",
            "      executor: cpu",
            "model: { preset: gpt-tiny }",
            "",
          ].join("\n"),
        );
        const config = await loadConfig(path);
        const cluster = await ClusterSession.launch(config, {
          runId: "alias",
          runDir: `${th.dir}/run2`,
          executorEntry: null,
        });
        try {
          assertEquals(cluster.failures.map((n) => n.error), []);
          assertEquals(cluster.nodes[0].inventory?.hostname, h3.name);
          assertEquals(cluster.nodes[0].conn?.label, `root@${h3.ip}:22`);
        } finally {
          await cluster.shutdown("test done");
        }
      });
      assertEquals(await th.waitNoStrays(10_000), "");
    } finally {
      await th.close();
    }
  },
});
