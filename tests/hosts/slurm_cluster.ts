// A real Slurm cluster on this machine for tests: munged and slurmctld in the root namespace, one slurmd per node in
// its own network namespace (veth on a private bridge, NodeAddr = the namespace's address), fake GPUs as GRES on
// character devices (so Slurm sets CUDA_VISIBLE_DEVICES per step). Everything is private to this run (munge socket and
// key, ports, state, spool, logs), wiped at the end and stopped by PID. See platform-notes.md §7 for the recipe.

import $ from "dax";
import { cleanupStaleTestHosts, linkNames, NAME_PREFIX, namespaceName } from "./names.ts";

/** Options of `startSlurmCluster`. */
export interface SlurmClusterOptions {
  /** Fake GPUs per node, e.g. `[2, 4]` for a heterogeneous pair (2-8 nodes). */
  gpus: number[];
  /** CPUs each node advertises (default 4: enough tasks for an agent and its executors per node). */
  cpus?: number;
}

/** One Slurm node: a network namespace running slurmd. */
export interface SlurmNode {
  name: string;
  netns: string;
  addr: string;
  gpus: number;
  slurmdPid: number;
}

/** A running Slurm test cluster. */
export interface SlurmCluster {
  nodes: SlurmNode[];
  /** Per-run directory (config, state, spool, logs). */
  dir: string;
  /** Path of slurm.conf; clients need `SLURM_CONF` set to it (see `env`). */
  conf: string;
  /** Environment for Slurm clients (sbatch, srun, squeue, scontrol) talking to this cluster. */
  env: Record<string, string>;
  /** Runs a Slurm client command against this cluster (30 s limit); returns its stdout, throws with stderr. */
  client(args: string[]): Promise<string>;
  /** Waits until job `id` has left the queue (or `ms` passed); returns its last state from scontrol. */
  waitJob(id: string, ms: number, until?: (state: string) => boolean): Promise<string>;
  /** Stops slurmd of one node (by PID, SIGKILL) so that slurmctld marks it down. */
  killNode(node: SlurmNode): Promise<void>;
  /** Stops every daemon by PID, removes namespaces, links and files. Safe to call twice. */
  close(): Promise<void>;
}

/** Whether a Slurm cluster can be started here; tests skip with the reason otherwise. */
export function canStartSlurm(): { ok: true } | { ok: false; reason: string } {
  if (Deno.build.os !== "linux") return { ok: false, reason: "the Slurm test cluster needs Linux network namespaces" };
  if (Deno.uid() !== 0) return { ok: false, reason: "the Slurm test cluster needs root (namespaces, slurmd)" };
  for (const bin of ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/sbin/munged"]) {
    try {
      Deno.statSync(bin);
    } catch {
      return {
        ok: false,
        reason: `${bin} missing: apt-get install -y --no-install-recommends slurmd slurmctld slurm-client munge`,
      };
    }
  }
  return { ok: true };
}

let sequence = 0;

function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

function kill(pid: number, sig: Deno.Signal = "SIGKILL"): void {
  try {
    Deno.kill(pid, sig);
  } catch { /* gone */ }
}

/** Kills the root-namespace daemons (munged, slurmctld) of earlier runs whose creating process is gone. */
async function cleanupStaleDaemons(): Promise<void> {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  for await (const e of Deno.readDir(tmp)) {
    const m = e.name.match(new RegExp(`^${NAME_PREFIX}-(\\d+)-\\d+-slurm`));
    if (!e.isDirectory || !m || alive(Number(m[1]))) continue;
    const pids = await Deno.readTextFile(`${tmp}/${e.name}/daemons.pids`).catch(() => "");
    for (const p of pids.split(/\s+/).filter(Boolean)) kill(Number(p));
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function pickSubnet(): Promise<number> {
  const used = await $`ip -4 -o addr show`.text();
  const start = 20 + (Deno.pid * 11 + sequence * 17 + 101) % 200;
  for (let k = 0; k < 230; k++) {
    const octet = 20 + (start - 20 + k) % 230;
    if (!used.includes(`10.213.${octet}.`)) return octet;
  }
  throw new Error("no free 10.213.x.0/24 subnet for the Slurm test cluster");
}

/** Starts munged, slurmctld and one slurmd per entry of `gpus`, and waits until every node is idle. */
export async function startSlurmCluster(opts: SlurmClusterOptions): Promise<SlurmCluster> {
  const can = canStartSlurm();
  if (!can.ok) throw new Error(can.reason);
  if (opts.gpus.length < 1 || opts.gpus.length > 8) throw new Error("1-8 Slurm nodes");
  await cleanupStaleDaemons();
  await cleanupStaleTestHosts();
  // Sequence numbers from 500 on keep names apart from test_hosts.ts's runs in the same process.
  const seq = 500 + sequence++;
  const links = linkNames(Deno.pid, seq);
  const dir = await Deno.makeTempDir({ prefix: `${NAME_PREFIX}-${Deno.pid}-${seq}-slurm` });
  const octet = await pickSubnet();
  const daemons: number[] = [];
  const namespaces: string[] = [];
  const nodes: SlurmNode[] = [];
  let bridgeUp = false;
  let closed = false;
  const cpus = opts.cpus ?? 4;

  const close = async () => {
    if (closed) return;
    closed = true;
    for (const n of nodes) kill(n.slurmdPid);
    // Job steps (slurmstepd and their tasks) live in the node namespaces.
    for (const ns of namespaces) {
      const out = await $`ip netns pids ${ns}`.noThrow().quiet().text();
      for (const p of out.split(/\s+/).filter(Boolean)) kill(Number(p));
    }
    for (const p of daemons.toReversed()) kill(p);
    for (const p of [...daemons, ...nodes.map((n) => n.slurmdPid)]) {
      for (let k = 0; k < 100 && alive(p); k++) await new Promise((r) => setTimeout(r, 20));
    }
    for (const ns of namespaces) await $`ip netns del ${ns}`.noThrow().quiet();
    if (bridgeUp) await $`ip link del ${links.bridge}`.noThrow().quiet();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    // munge: a key and socket of this run's own.
    const munge = `${dir}/munge`;
    await Deno.mkdir(munge, { mode: 0o700 });
    const key = crypto.getRandomValues(new Uint8Array(1024));
    await Deno.writeFile(`${munge}/munge.key`, key, { mode: 0o400 });
    const socket = `${munge}/munge.socket`;
    const mungedCmd = new Deno.Command("/usr/sbin/munged", {
      args: [
        "-F",
        "--force",
        `--socket=${socket}`,
        `--key-file=${munge}/munge.key`,
        `--pid-file=${munge}/munged.pid`,
        `--log-file=${munge}/munged.log`,
        `--seed-file=${munge}/munged.seed`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    daemons.push(mungedCmd.pid);
    await Deno.writeTextFile(`${dir}/daemons.pids`, daemons.join(" "));
    for (let k = 0; k < 200; k++) {
      if (await Deno.stat(socket).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 10));
    }

    await $`ip link add ${links.bridge} type bridge`.quiet();
    bridgeUp = true;
    await $`ip addr add 10.213.${octet}.1/24 dev ${links.bridge}`.quiet();
    await $`ip link set ${links.bridge} up`.quiet();

    const ctlPort = freePort();
    const slurmdPort = 6818;
    const host = (await $`hostname -s`.text()).trim();
    const names = opts.gpus.map((_, i) => `fxn${i + 1}`);
    const addrs = opts.gpus.map((_, i) => `10.213.${octet}.${10 + i + 1}`);
    const gres: string[] = [];
    for (let i = 0; i < names.length; i++) {
      if (opts.gpus[i] === 0) continue;
      const devDir = `${dir}/dev/${names[i]}`;
      await Deno.mkdir(devDir, { recursive: true });
      for (let g = 0; g < opts.gpus[i]; g++) await $`mknod ${devDir}/gpu${g} c 1 3`.quiet();
      gres.push(`NodeName=${names[i]} Name=gpu File=${devDir}/gpu[0-${opts.gpus[i] - 1}]`);
    }
    await Deno.writeTextFile(`${dir}/gres.conf`, gres.join("\n") + "\n");
    const conf = `${dir}/slurm.conf`;
    await Deno.writeTextFile(
      conf,
      [
        `ClusterName=fx${Deno.pid}s${seq}`,
        `SlurmctldHost=${host}(10.213.${octet}.1)`,
        `SlurmctldPort=${ctlPort}`,
        `SlurmdPort=${slurmdPort}`,
        "SlurmUser=root",
        "SlurmdUser=root",
        `AuthInfo=socket=${socket}`,
        `StateSaveLocation=${dir}/state`,
        `SlurmdSpoolDir=${dir}/spool/%n`,
        `SlurmctldPidFile=${dir}/slurmctld.pid`,
        `SlurmdPidFile=${dir}/slurmd-%n.pid`,
        `SlurmctldLogFile=${dir}/slurmctld.log`,
        `SlurmdLogFile=${dir}/slurmd-%n.log`,
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "GresTypes=gpu",
        // Down nodes are noticed within seconds (the node-failure test), and requeued jobs start at once.
        "SlurmdTimeout=5",
        "MessageTimeout=5",
        "InactiveLimit=0",
        "KillWait=10",
        "MinJobAge=60",
        "SchedulerParameters=defer_batch=0",
        "JobRequeue=1",
        ...names.map((n, i) =>
          `NodeName=${n} NodeAddr=${addrs[i]} CPUs=${cpus} RealMemory=4000` +
          (opts.gpus[i] ? ` Gres=gpu:${opts.gpus[i]}` : "")
        ),
        `PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO`,
        "",
      ].join("\n"),
    );
    await Deno.mkdir(`${dir}/state`);
    const env = { SLURM_CONF: conf };
    const ctl = new Deno.Command("/usr/sbin/slurmctld", {
      args: ["-D", "-i", "-f", conf],
      env,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    daemons.push(ctl.pid);
    await Deno.writeTextFile(`${dir}/daemons.pids`, daemons.join(" "));

    for (let i = 0; i < names.length; i++) {
      const ns = namespaceName(Deno.pid, seq, i + 1);
      await $`ip netns add ${ns}`.quiet();
      namespaces.push(ns);
      const veth = links.veth(i + 1);
      await $`ip link add ${veth} type veth peer name eth0 netns ${ns}`.quiet();
      await $`ip link set ${veth} master ${links.bridge} up`.quiet();
      await $`ip -n ${ns} addr add ${addrs[i]}/24 dev eth0`.quiet();
      await $`ip -n ${ns} link set eth0 up`.quiet();
      await $`ip -n ${ns} link set lo up`.quiet();
      await Deno.mkdir(`${dir}/spool/${names[i]}`, { recursive: true });
      // nsenter, not `ip netns exec`: the latter remounts /sys and slurmd then dies on cgroup init.
      const d = new Deno.Command("nsenter", {
        args: [`--net=/run/netns/${ns}`, "/usr/sbin/slurmd", "-D", "-N", names[i], "-f", conf],
        env,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      nodes.push({ name: names[i], netns: ns, addr: addrs[i], gpus: opts.gpus[i], slurmdPid: d.pid });
    }

    const client = async (args: string[]): Promise<string> => {
      const out = await new Deno.Command("timeout", {
        args: ["30", ...args],
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      if (!out.success) {
        throw new Error(`${args.join(" ")} failed (${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`);
      }
      return text;
    };

    // Every node idle (registered, GRES known).
    const t0 = performance.now();
    for (;;) {
      const out = await client(["sinfo", "-h", "-N", "-o", "%N %t"]).catch(() => "");
      const idle = out.split("\n").filter((l) => / idle$/.test(l.trim())).length;
      if (idle === names.length) break;
      if (performance.now() - t0 > 30_000) {
        const log = await Deno.readTextFile(`${dir}/slurmctld.log`).catch(() => "");
        throw new Error(`Slurm nodes not idle after 30 s (sinfo: ${out.trim()}); slurmctld.log:\n${log.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }

    const jobState = async (id: string) => {
      const out = await client(["scontrol", "-o", "show", "job", id]).catch(() => "");
      return out.match(/JobState=(\S+)/)?.[1] ?? "GONE";
    };
    return {
      nodes,
      dir,
      conf,
      env,
      client,
      waitJob: async (id, ms, until = (s) => !/^(PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED)/.test(s)) => {
        const end = performance.now() + ms;
        let state = await jobState(id);
        while (!until(state) && performance.now() < end) {
          await new Promise((r) => setTimeout(r, 250));
          state = await jobState(id);
        }
        return state;
      },
      killNode: async (node) => {
        kill(node.slurmdPid);
        for (let k = 0; k < 100 && alive(node.slurmdPid); k++) await new Promise((r) => setTimeout(r, 20));
        // Its job steps go with it, as they would when a machine dies.
        const out = await $`ip netns pids ${node.netns}`.noThrow().quiet().text();
        for (const p of out.split(/\s+/).filter(Boolean)) kill(Number(p));
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
