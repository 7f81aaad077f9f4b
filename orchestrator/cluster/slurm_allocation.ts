// `cluster.scheduler: slurm`: the nodes of the Slurm allocation this process runs in (SLURM_JOB_NODELIST expanded by
// `scontrol show hostnames`), each node's address as Slurm knows it (NodeAddr: all nodes may share one hostname, so
// the data plane rendezvouses by address), and its devices (cluster.devices_per_node, else the GPUs Slurm gave it:
// SLURM_GPUS_ON_NODE or CUDA_VISIBLE_DEVICES of a probe step on every node, so heterogeneous allocations work).

import type { Config, NodeConfig } from "../config/types.ts";
import { UserError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";

/** One node of the allocation. */
export interface SlurmNode {
  /** Slurm's node name (`-w NAME`). */
  name: string;
  /** NodeAddr: where the node's agent and executors listen. */
  addr: string;
  /** GPUs Slurm gave this job on the node (0 when none). */
  gpus: number;
  /** Their ids as a step on the node sees them (CUDA_VISIBLE_DEVICES), "" when none or not probed. */
  visible: string;
}

/** Runs a Slurm client; throws a UserError naming the command and its stderr. */
export async function slurmCommand(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, {
      args,
      env: opts.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(`${cmd} not found: cluster.scheduler: slurm needs the Slurm client commands on PATH`);
    }
    throw new UserError(`${cmd} ${args.join(" ")}: ${(e as Error).message}`);
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join("; ");
    throw new UserError(`${cmd} ${args.join(" ")} failed (exit ${out.code}): ${err || "no message"}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Parses `scontrol -o show node` output into name -> NodeAddr. */
export function parseNodeAddrs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const name = line.match(/(?:^|\s)NodeName=(\S+)/)?.[1];
    const addr = line.match(/(?:^|\s)NodeAddr=(\S+)/)?.[1];
    if (name) out.set(name, addr ?? name);
  }
  return out;
}

/** GPUs of a node from one probe line's SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES (either may be empty). */
export function gpusOf(gpusOnNode: string, cudaVisible: string): number {
  const n = Number(gpusOnNode);
  if (gpusOnNode && Number.isInteger(n) && n >= 0) return n;
  const ids = cudaVisible.split(",").filter((s) => s.trim() !== "" && s.trim() !== "NoDevFiles");
  return ids.length;
}

/**
 * Per-node GPU counts of a job from `scontrol -d -o show job ID` (`Nodes=fxn[1-2] ... GRES=gpu:2(IDX:0-1)` or
 * `gpu:a100:4(...)`): node list expression -> GPUs on each node of it.
 */
export function parseJobGres(text: string): { nodes: string; gpus: number }[] {
  const out: { nodes: string; gpus: number }[] = [];
  for (const m of text.matchAll(/Nodes=(\S+) CPU_IDs=\S+ Mem=\S+ GRES=(\S*)/g)) {
    let gpus = 0;
    for (const g of m[2].matchAll(/gpu(?::[^:(,\s]+)?:(\d+)/g)) gpus += Number(g[1]);
    out.push({ nodes: m[1], gpus });
  }
  return out;
}

/**
 * Reads the allocation from the environment: node names, addresses and (unless `probeGpus` is false) the GPUs of every
 * node, from one probe step (`srun --overlap`, one task per node).
 */
export async function readAllocation(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  opts: { probeGpus?: boolean; source?: string } = {},
): Promise<SlurmNode[]> {
  const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  if (!list) {
    const src = opts.source ?? "the config";
    throw new UserError(
      `${src}: cluster.scheduler is slurm, but this process is not inside a Slurm allocation ` +
        `(SLURM_JOB_NODELIST is not set); submit it with \`deno task submit ${src}\`, or run it under salloc or sbatch`,
    );
  }
  const names = (await slurmCommand("scontrol", ["show", "hostnames", list])).split("\n").map((s) => s.trim())
    .filter(Boolean);
  const addrs = parseNodeAddrs(await slurmCommand("scontrol", ["-o", "show", "node", list]));
  const gpus = new Map<string, { n: number; visible: string }>();
  if (opts.probeGpus !== false) {
    const probe = await slurmCommand("srun", [
      "--overlap",
      `--nodes=${names.length}`,
      `--ntasks=${names.length}`,
      "--ntasks-per-node=1",
      `--nodelist=${list}`,
      "--kill-on-bad-exit=1",
      "sh",
      "-c",
      'echo "flexsp-gpus ${SLURMD_NODENAME:-?} ${SLURM_GPUS_ON_NODE:--} ${CUDA_VISIBLE_DEVICES:--}"',
    ]);
    for (const m of probe.matchAll(/^flexsp-gpus (\S+) (\S+) (\S+)$/gm)) {
      const visible = m[3] === "-" ? "" : m[3];
      gpus.set(m[1], { n: gpusOf(m[2] === "-" ? "" : m[2], visible), visible });
    }
  }
  // What the job holds per node (authoritative when the job asked for GPUs job-wide: a step spreads them itself).
  const jobId = env.SLURM_JOB_ID;
  if (opts.probeGpus !== false && jobId) {
    const detail = await slurmCommand("scontrol", ["-d", "-o", "show", "job", jobId]).catch(() => "");
    for (const g of parseJobGres(detail)) {
      const expanded = (await slurmCommand("scontrol", ["show", "hostnames", g.nodes])).split("\n").filter(Boolean);
      for (const name of expanded) gpus.set(name.trim(), { n: g.gpus, visible: gpus.get(name.trim())?.visible ?? "" });
    }
  }
  return names.map((name) => ({
    name,
    addr: addrs.get(name) ?? name,
    gpus: gpus.get(name)?.n ?? 0,
    visible: gpus.get(name)?.visible ?? "",
  }));
}

/** The NodeConfigs of the allocation: the cluster-level node keys on every node, devices per node as Slurm gave. */
export async function slurmNodes(config: Config, source: string): Promise<NodeConfig[]> {
  return nodesOfAllocation(config, await readAllocation(Deno.env.toObject(), { source }), source);
}

/** The NodeConfigs of the allocation's nodes `alloc` (see slurmNodes). */
export function nodesOfAllocation(config: Config, alloc: SlurmNode[], source: string): NodeConfig[] {
  // deno-lint-ignore no-explicit-any
  const c = (config.document.cluster ?? {}) as Record<string, any>;
  const fixed = c.devices_per_node as number | undefined;
  return alloc.map((n, index) => {
    const devices = fixed ?? n.gpus;
    if (!devices) {
      throw new UserError(
        `${source}: cluster.scheduler: slurm: node ${n.name} has no GPUs in this allocation; request them ` +
          `(sbatch --gpus-per-node=N) or set cluster.devices_per_node`,
      );
    }
    return {
      index,
      host: n.addr,
      transport: "local" as const,
      port: 22,
      hostKeyPolicy: "strict" as const,
      devices,
      executor: c.executor ?? "auto",
      deviceMemoryGb: c.device_memory_gb,
      speed: c.speed ?? 1,
      deno: c.deno,
      python: c.python ?? "python3",
      workdir: c.workdir,
      srun: n.name,
      slurmGpus: n.visible,
    };
  });
}

/**
 * `loadConfig`, and under `cluster.scheduler: slurm` the nodes of the allocation this process runs in (the commands
 * that talk to nodes or plan for them load their config with this; `submit`, which runs outside the allocation, does
 * not).
 */
export async function loadClusterConfig(path: string, overrides: string[] = []): Promise<Config> {
  const config = await loadConfig(path, overrides);
  if (config.cluster.scheduler === "slurm") config.cluster.nodes = await slurmNodes(config, path);
  return config;
}
