// The test-host harness itself: hosts come up with their own hostname and sshd, tc shaping is applied when asked,
// close() leaves nothing behind, and leftovers of a crashed run (namespaces, bridge, temp dir) are cleaned up.

import $ from "dax";
import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { cleanupStaleTestHosts, linkNames, namespaceName } from "../hosts/names.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";

const can = canCreateTestHosts();
if (!can.ok) console.log(`skipping the test-host harness tests: ${can.reason}`);

Deno.test({
  name: "test hosts: shaped links, own hostnames, and nothing left after close()",
  ignore: !can.ok,
  fn: async () => {
    const th = await startTestHosts({ count: 2, shaping: { rateMbit: 100 } });
    let closed = false;
    try {
      const [h1, h2] = th.hosts;
      assertEquals(
        (await $`ip netns exec ${h1.netns} ssh -i ${th.identity} -o UserKnownHostsFile=${th.knownHosts} -o BatchMode=yes root@${h2.ip} hostname`
          .text()).trim(),
        h2.name,
        "ssh from host 1 to host 2 over the bridge",
      );
      const qdisc = await $`ip netns exec ${h1.netns} tc qdisc show dev eth0`.text();
      assertIncludes(qdisc, "tbf", "rate 100Mbit");
      await th.close();
      closed = true;
      const ns = await $`ip netns list`.text();
      assert(!ns.includes(h1.netns) && !ns.includes(h2.netns), "namespaces removed");
      assert(!(await $`ip -o link show`.text()).includes(linkNames(Deno.pid, 0).bridge.slice(0, 6) + "_"), "links");
      let dirGone = false;
      try {
        await Deno.stat(th.dir);
      } catch {
        dirGone = true;
      }
      assert(dirGone, "temp dir removed");
    } finally {
      if (!closed) await th.close();
    }
  },
});

Deno.test({
  name: "test hosts: leftovers of a run whose process is gone are removed",
  ignore: !can.ok,
  fn: async () => {
    // A process id that is not running: a short-lived child that has exited.
    const child = new Deno.Command("true").spawn();
    const dead = child.pid;
    await child.status;
    const ns = namespaceName(dead, 0, 1);
    const { bridge } = linkNames(dead, 0);
    const dir = await Deno.makeTempDir({ prefix: `fxag-${dead}-0-` });
    try {
      await $`ip netns add ${ns}`;
      await $`ip link add ${bridge} type bridge`;
      const removed = await cleanupStaleTestHosts();
      assert(removed.includes(ns) && removed.includes(bridge) && removed.includes(dir), `removed ${removed}`);
      assert(!(await $`ip netns list`.text()).includes(ns));
    } finally {
      await $`ip netns del ${ns}`.noThrow().quiet();
      await $`ip link del ${bridge}`.noThrow().quiet();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
