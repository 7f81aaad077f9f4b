// Test hosts: K network namespaces on a private bridge, each with its own sshd, hostname, home directory and keys
// generated per run, optional tc link shaping; torn down by PID and name, also after a crashed earlier run.

import $ from "dax";
import type { ExecutorKindChoice } from "../../core/protocol.ts";
import { cleanupStaleTestHosts, linkNames, NAME_PREFIX, namespaceName } from "./names.ts";

/** How `deno` looks on a test host: present (the machine's own), missing, or too old to use. */
export type DenoOnHost = "present" | "missing" | "old";

/** Whether this kernel has the netem qdisc (tc latency); checked once on a dummy link in a namespace of its own. */
export async function netemAvailable(): Promise<boolean> {
  const ns = `${NAME_PREFIX}-netem-${Deno.pid}`;
  try {
    await $`ip netns add ${ns}`.quiet();
    return (await $`ip netns exec ${ns} tc qdisc add dev lo root netem delay 1ms`.noThrow().quiet()).code === 0;
  } catch {
    return false;
  } finally {
    await $`ip netns del ${ns}`.noThrow().quiet();
  }
}

/** Options of `startTestHosts`. */
export interface TestHostOptions {
  /** Number of hosts (1-32). */
  count: number;
  /**
   * `flat` (default): every host on one bridge this machine reaches. `bastion`: host 1 is on that bridge and on a
   * second, private one; hosts 2..count are on the private bridge only, which this machine has no route to (an
   * `unreachable` route for its subnet), so host 1 is the only way to them.
   */
  topology?: "flat" | "bastion";
  /** Per host index: how `deno` looks there (default: present everywhere). */
  deno?: Record<number, DenoOnHost>;
  /**
   * Shape links with tc, e.g. `{ rateMbit: 1000 }` for 1 Gbit/s (`TWO_TIER_NETWORK` in two_tier.ts: a cluster's
   * two tiers). `rateMbit`: every host's link to the others (between nodes), each direction (token bucket);
   * `delayMs`: one-way latency added where a packet leaves its host (netem); `intraRateMbit`: each host's loopback, the
   * link between executors of one node (they talk over the host's own address), unshaped when absent.
   */
  shaping?: { rateMbit: number; delayMs?: number; intraRateMbit?: number };
  /** Per host index: false for an sshd without `Subsystem sftp` (a hardened host); default true. */
  sftp?: Record<number, boolean>;
  /**
   * Directories under /root that every host shows, read-only, at the same path through its own home (e.g. the
   * prefix of a Python with torch, which the host's home would hide); nothing else of this machine's /root is seen.
   */
  share?: string[];
}

/** One test host: a namespace with sshd on `ip:22`, user root, a private home directory. */
export interface TestHost {
  index: number;
  /** Hostname inside the namespace (its UTS namespace). */
  name: string;
  netns: string;
  ip: string;
  port: number;
  user: string;
  /** The directory mounted over /root inside the namespace (empty .bashrc, its own ~/.cache). */
  home: string;
  sshdPid: number;
}

/** A running set of test hosts. */
export interface TestHosts {
  hosts: TestHost[];
  /** Per-run directory holding keys, configs, logs and homes. */
  dir: string;
  /** Private key authorised on every host. */
  identity: string;
  /** A private key no host accepts. */
  wrongIdentity: string;
  /** known_hosts listing every host's real key. */
  knownHosts: string;
  /** An address on the bridge's subnet where nothing answers. */
  unreachableIp: string;
  /** Process ids living in a host's namespace (sshd, sessions, agents, executors), zombies excluded. */
  pids(host: TestHost): Promise<number[]>;
  /** Process ids in the namespace other than sshd's listener. */
  strayPids(host: TestHost): Promise<number[]>;
  /** Waits up to `ms` for every host to have no stray process; returns what is left ("" when none). */
  waitNoStrays(ms: number): Promise<string>;
  /** Writes a cluster config for these hosts and returns its path. */
  writeConfig(opts?: ConfigOptions): Promise<string>;
  /** Kills everything in the namespaces and removes namespaces, links and files. Safe to call twice. */
  close(): Promise<void>;
}

/** What `writeConfig` puts into the cluster config. */
export interface ConfigOptions {
  name?: string;
  /** Host indices to include (default all). */
  only?: number[];
  devices?: number;
  executor?: ExecutorKindChoice;
  identity?: string;
  knownHosts?: string;
  hostKeyPolicy?: "strict" | "accept-new";
  connectTimeoutS?: number;
  heartbeatTimeoutS?: number;
  /** Replace a host's address (e.g. with `unreachableIp`). */
  hostOverride?: Record<number, string>;
  /** `cpu_pinning` of every node: `auto`, `off`, or one CPU list per device (see README "Cores"). */
  cpuPinning?: "auto" | "off" | string[];
  /** Extra YAML lines appended to each node entry (indented by the caller's choice of 6 spaces). */
  nodeExtra?: string;
}

let sequence = 0;

/** Whether this process may create namespaces (root); tests use it to skip with a reason. */
export function canCreateTestHosts(): { ok: true } | { ok: false; reason: string } {
  if (Deno.build.os !== "linux") return { ok: false, reason: "test hosts need Linux network namespaces" };
  if (Deno.uid() !== 0) return { ok: false, reason: "test hosts need root (network namespaces, sshd)" };
  for (const bin of ["/usr/sbin/sshd", "/usr/bin/ssh-keygen"]) {
    try {
      Deno.statSync(bin);
    } catch {
      return { ok: false, reason: `${bin} missing: apt-get install -y openssh-server` };
    }
  }
  return { ok: true };
}

async function pickSubnet(avoid: number[] = []): Promise<number> {
  const used = await $`ip -4 -o addr show`.text() + (await $`ip -4 route show`.text()) +
    avoid.map((o) => ` 10.213.${o}.`).join("");
  const start = 20 + (Deno.pid * 7 + sequence * 13) % 200;
  for (let k = 0; k < 230; k++) {
    const octet = 20 + (start - 20 + k) % 230;
    if (!used.includes(`10.213.${octet}.`)) return octet;
  }
  throw new Error("no free 10.213.x.0/24 subnet for test hosts");
}

async function keygen(path: string, comment: string): Promise<void> {
  await $`ssh-keygen -q -t ed25519 -N ${""} -C ${comment} -f ${path}`.quiet();
}

/** Lists live (non-zombie) processes of a namespace. */
async function namespacePids(netns: string): Promise<number[]> {
  const out = await $`ip netns pids ${netns}`.noThrow().quiet().text();
  const pids: number[] = [];
  for (const tok of out.split(/\s+/)) {
    const pid = Number(tok);
    if (!tok || !Number.isInteger(pid)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (state !== "Z" && state !== "X") pids.push(pid);
    } catch { /* gone */ }
  }
  return pids;
}

// The kernel's ARP table is one table for every network namespace, limited by net.ipv4.neigh.default.gc_thresh1-3
// (128/512/1024 by default). K hosts that all talk to each other hold about K² entries, so 32 hosts (992) pass
// gc_thresh2 and reach gc_thresh3: "neighbor table overflow", dropped packets and TCP retransmits that stretched a
// 32-host step from about 0.5 s to 30 s. While hosts run, the thresholds are raised to fit them (never lowered),
// and the values found are put back when the last set of hosts in this process closes.
const NEIGH = ["gc_thresh1", "gc_thresh2", "gc_thresh3"].map((k) => `/proc/sys/net/ipv4/neigh/default/${k}`);
let neighbourUsers = 0;
let neighbourSaved: string[] | undefined;
const neighbourNeed: number[] = [];

async function reserveNeighbourRoom(count: number): Promise<void> {
  neighbourUsers++;
  neighbourNeed.push(count);
  const total = neighbourNeed.reduce((a, k) => a + k, 0);
  const want = [total * total, 2 * total * total, 4 * total * total].map((v) => Math.max(v, 256));
  try {
    const now = await Promise.all(NEIGH.map((f) => Deno.readTextFile(f).then((t) => t.trim())));
    neighbourSaved ??= now;
    for (const [i, f] of NEIGH.entries()) {
      if (Number(now[i]) < want[i]) await Deno.writeTextFile(f, String(want[i]));
    }
  } catch { /* not writable here (no root, or a container): the defaults stay, and large sets may be slow */ }
}

async function releaseNeighbourRoom(): Promise<void> {
  neighbourUsers--;
  neighbourNeed.pop();
  if (neighbourUsers > 0 || !neighbourSaved) return;
  const saved = neighbourSaved;
  neighbourSaved = undefined;
  // gc_thresh1 <= gc_thresh2 <= gc_thresh3 at every moment: lower the smallest first.
  for (const [i, f] of NEIGH.entries()) await Deno.writeTextFile(f, saved[i]).catch(() => {});
}

/** Starts `count` hosts. Always pair with `close()` in a finally block. */
export async function startTestHosts(opts: TestHostOptions): Promise<TestHosts> {
  const can = canCreateTestHosts();
  if (!can.ok) throw new Error(can.reason);
  if (opts.count < 1 || opts.count > 128) throw new Error("count must be 1-128");
  await cleanupStaleTestHosts();
  const seq = sequence++;
  const octet = await pickSubnet();
  const bastion = opts.topology === "bastion";
  // The private subnet of the bastion topology: the next free one.
  sequence++;
  const innerOctet = bastion ? await pickSubnet([octet]) : octet;
  const links = linkNames(Deno.pid, seq);
  const dir = await Deno.makeTempDir({ prefix: `${NAME_PREFIX}-${Deno.pid}-${seq}-` });
  const hosts: TestHost[] = [];
  const namespaces: string[] = [];
  let bridgeUp = false;
  let innerUp = false;
  let routeUp = false;
  let closed = false;

  const close = async () => {
    if (closed) return;
    closed = true;
    for (const ns of namespaces) {
      for (const pid of await namespacePids(ns)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* already gone */ }
      }
    }
    for (const ns of namespaces) await $`ip netns del ${ns}`.noThrow().quiet();
    if (bridgeUp) await $`ip link del ${links.bridge}`.noThrow().quiet();
    if (innerUp) await $`ip link del ${links.inner}`.noThrow().quiet();
    if (routeUp) await $`ip route del unreachable 10.213.${innerOctet}.0/24`.noThrow().quiet();
    await releaseNeighbourRoom();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    await reserveNeighbourRoom(opts.count);
    await Deno.mkdir("/run/sshd", { recursive: true });
    const identity = `${dir}/id_ed25519`;
    const wrongIdentity = `${dir}/wrong_ed25519`;
    await Promise.all([keygen(identity, "flexsp-test"), keygen(wrongIdentity, "flexsp-wrong")]);
    await Deno.writeTextFile(`${dir}/authorized_keys`, await Deno.readTextFile(`${identity}.pub`));
    // A file that is not executable stands for "no deno here"; a script printing an old version for "too old".
    await Deno.writeTextFile(`${dir}/deno_missing`, "");
    await Deno.writeTextFile(`${dir}/deno_old`, "#!/bin/sh\necho 'deno 1.40.0 (release, x86_64-unknown-linux-gnu)'\n", {
      mode: 0o755,
    });

    // This process's Deno binary inside the run directory (a hard link where the file system allows, else a copy):
    // the hosts' "present" Deno links to it, made on first use.
    let ownDenoPath: Promise<string> | undefined;
    const ownDeno = () =>
      ownDenoPath ??= (async () => {
        const src = await Deno.realPath(Deno.execPath());
        const dst = `${dir}/deno`;
        try {
          await Deno.link(src, dst);
        } catch {
          await Deno.copyFile(src, dst);
          await Deno.chmod(dst, 0o755);
        }
        return dst;
      })();

    await $`ip link add ${links.bridge} type bridge`.quiet();
    bridgeUp = true;
    await $`ip addr add 10.213.${octet}.1/24 dev ${links.bridge}`.quiet();
    await $`ip link set ${links.bridge} up`.quiet();
    if (bastion) {
      await $`ip link add ${links.inner} type bridge`.quiet();
      innerUp = true;
      await $`ip link set ${links.inner} up`.quiet();
      // No address here on the private bridge, and its subnet unreachable: nothing leaves this machine for it.
      await $`ip route add unreachable 10.213.${innerOctet}.0/24`.quiet();
      routeUp = true;
    }

    let knownHosts = "";
    for (let i = 1; i <= opts.count; i++) {
      const ns = namespaceName(Deno.pid, seq, i);
      const name = `fxh${i}`;
      const hidden = bastion && i > 1;
      const ip = `10.213.${hidden ? innerOctet : octet}.${10 + i}`;
      const hdir = `${dir}/h${i}`;
      const home = `${hdir}/home`;
      await Deno.mkdir(home, { recursive: true });
      await Deno.writeTextFile(`${home}/.bashrc`, "");
      await Deno.writeTextFile(`${home}/.profile`, "");
      await keygen(`${hdir}/host_ed25519`, name);
      knownHosts += `${ip} ${
        (await Deno.readTextFile(`${hdir}/host_ed25519.pub`)).trim().split(" ").slice(0, 2).join(" ")
      }\n`;
      await Deno.writeTextFile(
        `${hdir}/sshd.conf`,
        [
          `ListenAddress ${ip}`,
          "Port 22",
          `HostKey ${hdir}/host_ed25519`,
          `PidFile ${hdir}/sshd.pid`,
          `AuthorizedKeysFile ${dir}/authorized_keys`,
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "PubkeyAuthentication yes",
          "PermitRootLogin prohibit-password",
          "UsePAM no",
          "StrictModes no",
          "AllowTcpForwarding yes",
          "PrintMotd no",
          "MaxSessions 64",
          "MaxStartups 64",
          "UseDNS no",
          ...(opts.sftp?.[i - 1] === false ? [] : ["Subsystem sftp internal-sftp"]),
          "",
        ].join("\n"),
      );
      await $`ip netns add ${ns}`.quiet();
      namespaces.push(ns);
      const veth = links.veth(i);
      await $`ip link add ${veth} type veth peer name eth0 netns ${ns}`.quiet();
      await $`ip link set ${veth} master ${hidden ? links.inner : links.bridge} up`.quiet();
      await $`ip -n ${ns} addr add ${ip}/24 dev eth0`.quiet();
      if (bastion && i === 1) {
        // The bastion's second leg, on the private bridge.
        const leg = links.veth(99);
        await $`ip link add ${leg} type veth peer name eth1 netns ${ns}`.quiet();
        await $`ip link set ${leg} master ${links.inner} up`.quiet();
        await $`ip -n ${ns} addr add 10.213.${innerOctet}.${10 + i}/24 dev eth1`.quiet();
        await $`ip -n ${ns} link set eth1 up`.quiet();
      }
      await $`ip -n ${ns} link set eth0 up`.quiet();
      await $`ip -n ${ns} link set lo up`.quiet();
      if (opts.shaping) {
        const { rateMbit, delayMs, intraRateMbit } = opts.shaping;
        // A token bucket whose burst is one millisecond of its rate (at least `packet` bytes, the largest packet it
        // must pass whole): a link carries every message at its rate, as a cluster's link does. A larger burst lets
        // whatever fits in it through at memory speed after each idle moment: with 256 KiB on the 200 Mbit/s link
        // (10 ms of it) the all-to-alls of short sequences, a few hundred KiB per call with compute between calls,
        // crossed the "slow" link almost free (issue 20).
        const tbf = (rate: number, packet: number) =>
          `tbf rate ${rate}mbit burst ${Math.max(packet, Math.round(rate * 125))} latency 50ms`;
        // Towards the host (the bridge's side of its veth): a token bucket. Leaving it (its eth0): the same, or netem
        // with the latency and the rate, so that a packet between two hosts is delayed once. The veths' packets
        // larger than the burst (GSO, up to 64 KiB) are split by tbf into MTU-sized ones.
        await $`sh -c ${`tc qdisc add dev ${veth} root ${tbf(rateMbit, 16384)}`}`.quiet();
        const out = delayMs ? `netem delay ${delayMs}ms rate ${rateMbit}mbit limit 100000` : tbf(rateMbit, 16384);
        const added = await $`ip netns exec ${ns} sh -c ${`tc qdisc add dev eth0 root ${out}`}`.noThrow().quiet();
        if (added.code !== 0) {
          const why = added.stderr.trim();
          throw new Error(
            delayMs && /unknown/i.test(why)
              ? `shaping.delayMs needs the netem qdisc, which this kernel lacks (${why}): load sch_netem ` +
                "(modprobe sch_netem) or leave delayMs out"
              : `tc on ${name}'s eth0: ${why}`,
          );
        }
        // The loopback's packets are up to 64 KiB and not split: the bucket holds two.
        if (intraRateMbit) {
          await $`ip netns exec ${ns} sh -c ${`tc qdisc add dev lo root ${tbf(intraRateMbit, 2 * 65536)}`}`.quiet();
        }
      }
      // Inside the namespace, /usr/local/bin (on root's PATH) is a directory of this host's own: with this
      // process's Deno in it ("present": a hard link to a copy in the run directory, so it does not matter where
      // Deno lives here; under npx it is in the npm cache below /root, which the host's home hides), an old one, or
      // none; for the last two, this machine's Deno binary is hidden too, in case it sits on PATH as well.
      const denoMode = opts.deno?.[i - 1] ?? "present";
      const realDeno = await Deno.realPath(Deno.execPath());
      const bin = `${hdir}/bin`;
      await Deno.mkdir(bin);
      if (denoMode === "present") await Deno.link(await ownDeno(), `${bin}/deno`);
      if (denoMode === "old") await Deno.copyFile(`${dir}/deno_old`, `${bin}/deno`);
      const visible = new Set([realDeno]);
      for (const d of ["/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
        if (await Deno.stat(`${d}/deno`).then(() => true, () => false)) visible.add(`${d}/deno`);
      }
      const hideDeno = denoMode === "present"
        ? ""
        : [...visible].map((p) => `mount --bind ${dir}/deno_missing ${p};`).join(" ");
      // A shared directory is bound read-only onto the same path inside the home first; --rbind carries it along.
      const shares = (opts.share ?? []).map((d) => {
        if (!d.startsWith("/root/")) throw new Error(`share: ${d} is not under /root (it is seen as it is)`);
        return `mkdir -p ${home}${d.slice(5)}; mount --bind -o ro ${d} ${home}${d.slice(5)};`;
      }).join(" ");
      const inner = `hostname ${name}; ${shares} mount --rbind ${home} /root; mount --bind ${bin} /usr/local/bin; ` +
        `${hideDeno} ` +
        `exec /usr/sbin/sshd -f ${hdir}/sshd.conf -E ${hdir}/sshd.log`;
      await $`ip netns exec ${ns} unshare --uts --mount --propagation private sh -c ${inner}`.quiet();
      // The daemon writes its pid file after the starting process has returned.
      let sshdPid = 0;
      for (let k = 0; k < 200 && !sshdPid; k++) {
        sshdPid = Number((await Deno.readTextFile(`${hdir}/sshd.pid`).catch(() => "")).trim());
        if (!sshdPid) await new Promise((r) => setTimeout(r, 10));
      }
      if (!sshdPid) throw new Error(`sshd of ${name} did not start: ${await Deno.readTextFile(`${hdir}/sshd.log`)}`);
      hosts.push({ index: i - 1, name, netns: ns, ip, port: 22, user: "root", home, sshdPid });
    }
    const knownHostsPath = `${dir}/known_hosts`;
    await Deno.writeTextFile(knownHostsPath, knownHosts);

    let configs = 0;
    const result: TestHosts = {
      hosts,
      dir,
      identity,
      wrongIdentity,
      knownHosts: knownHostsPath,
      unreachableIp: `10.213.${octet}.99`,
      pids: (h) => namespacePids(h.netns),
      strayPids: async (h) => (await namespacePids(h.netns)).filter((p) => p !== h.sshdPid),
      waitNoStrays: async (ms: number) => {
        let left = "";
        const end = performance.now() + ms;
        for (;;) {
          const per = await Promise.all(hosts.map(async (h) => [h.name, await result.strayPids(h)] as const));
          left = per.filter(([, p]) => p.length).map(([n, p]) => `${n}: ${p.join(",")}`).join("; ");
          if (left === "" || performance.now() >= end) return left;
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      writeConfig: async (c: ConfigOptions = {}) => {
        const only = c.only ?? hosts.map((h) => h.index);
        const nodes = only.map((i) => {
          const h = hosts[i];
          return [
            `    - host: ${c.hostOverride?.[i] ?? h.ip}`,
            `      user: root`,
            `      identity: ${c.identity ?? identity}`,
            `      known_hosts: ${c.knownHosts ?? knownHostsPath}`,
            `      host_key_policy: ${c.hostKeyPolicy ?? "strict"}`,
            `      devices: ${c.devices ?? 1}`,
            `      executor: ${c.executor ?? "cpu"}`,
            ...(c.cpuPinning ? [`      cpu_pinning: ${JSON.stringify(c.cpuPinning)}`] : []),
            ...(c.nodeExtra ? [c.nodeExtra.replace(/^/gm, "      ")] : []),
          ].join("\n");
        });
        const text = [
          `name: ${c.name ?? "testhosts"}`,
          "cluster:",
          `  connect_timeout_s: ${c.connectTimeoutS ?? 5}`,
          `  heartbeat_timeout_s: ${c.heartbeatTimeoutS ?? 3}`,
          "  nodes:",
          ...nodes,
          "model:",
          "  preset: gpt-tiny",
          "",
        ].join("\n");
        const path = `${dir}/cluster_${configs++}.yaml`;
        await Deno.writeTextFile(path, text);
        return path;
      },
      close,
    };
    return result;
  } catch (e) {
    await close();
    throw e;
  }
}
