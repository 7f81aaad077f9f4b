// Brings test hosts up by hand for trying things out: writes a cluster config for them, waits for Ctrl-C, tears
// everything down. Usage (root): deno run -A tests/hosts/main.ts [COUNT] [--missing-deno I] [--rate-mbit R]
//   [--two-tier]   links between hosts (nodes) shaped like InfiniBand, each host's loopback 10x faster (two_tier.ts)
//   deno run -A tests/hosts/main.ts --cleanup    removes leftovers of crashed runs
//   deno run -A tests/hosts/main.ts --slurm 2,4  a Slurm cluster instead: one slurmd per node, that many fake GPUs

import { parseArgs } from "node:util";
import { cleanupStaleTestHosts } from "./names.ts";
import { type DenoOnHost, startTestHosts } from "./test_hosts.ts";
import { startSlurmCluster } from "./slurm_cluster.ts";
import { twoTierNetwork } from "./two_tier.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    "missing-deno": { type: "string", multiple: true, default: [] },
    "rate-mbit": { type: "string" },
    "two-tier": { type: "boolean", default: false },
    cleanup: { type: "boolean", default: false },
    slurm: { type: "string" },
  },
});
if (values.cleanup) {
  const removed = await cleanupStaleTestHosts();
  console.log(removed.length ? `removed:\n${removed.join("\n")}` : "nothing to remove");
  Deno.exit(0);
}
const stop = Promise.withResolvers<void>();
Deno.addSignalListener("SIGINT", () => stop.resolve());
Deno.addSignalListener("SIGTERM", () => stop.resolve());
if (values.slurm) {
  const sc = await startSlurmCluster({ gpus: values.slurm.split(",").map(Number) });
  console.log(
    sc.nodes.map((n) => `${n.name}  ${n.addr}  netns ${n.netns}  ${n.gpus} GPU(s)  slurmd pid ${n.slurmdPid}`).join(
      "\n",
    ),
  );
  console.log(
    `export SLURM_CONF=${sc.conf}   # then sinfo, sbatch, deno task submit ...\nCtrl-C tears everything down`,
  );
  await stop.promise;
  await sc.close();
  console.log("torn down");
  Deno.exit(0);
}
const count = Number(positionals[0] ?? 3);
const deno: Record<number, DenoOnHost> = {};
for (const i of values["missing-deno"]) deno[Number(i)] = "missing";
const rate = values["rate-mbit"] ? Number(values["rate-mbit"]) : undefined;
const net = values["two-tier"] ? await twoTierNetwork() : undefined;
if (net?.note) console.log(net.note);
const th = await startTestHosts({ count, deno, shaping: net?.shaping ?? (rate ? { rateMbit: rate } : undefined) });
const config = await th.writeConfig();
console.log(th.hosts.map((h) => `${h.name}  ${h.ip}  netns ${h.netns}  sshd pid ${h.sshdPid}`).join("\n"));
console.log(
  `config: ${config}\nssh: ssh -i ${th.identity} -o UserKnownHostsFile=${th.knownHosts} root@${th.hosts[0].ip}`,
);
console.log("Ctrl-C tears everything down");
await stop.promise;
await th.close();
console.log("torn down");
Deno.exit(0);
