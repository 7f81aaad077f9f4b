// `deno task nodes <config.yaml>`: preflight of a cluster. Connects to every node, bootstraps and starts the agents,
// prints an inventory table, checks the inventory against the config and exits non-zero with one line per problem.
// --executors also starts one executor per device (init -> ready); --hold keeps the agents up and watches them.

import { parseArgs } from "node:util";
import { runCli, UserError } from "../errors.ts";
import { loadClusterConfig } from "../cluster/slurm_allocation.ts";
import type { Config } from "../config/types.ts";
import { ClusterSession, type NodeLaunch, type ProgressEvent } from "../cluster/cluster_session.ts";
import { attentionLines, ExecutorPool, FaultError } from "../cluster/executor_pool.ts";
import type { PythonInfo } from "../../core/protocol.ts";
import { torchProblem } from "../cluster/torch_requirement.ts";

const USAGE = `usage: deno task nodes <config.yaml> [options]

Connects to every node of the cluster, starts its agent (uploading Deno and the agent when needed), prints the
inventory and checks it against the config. Exits 1 when any node fails or does not match.

options:
  --set PATH=VALUE       override a config value (repeatable), e.g. --set cluster.connect_timeout_s=3
  --executors            also start one executor per device and wait until each is ready
  --hold SECONDS         keep the agents up this long (0: until Ctrl-C), reporting lost nodes
  --pings N              control round trips measured per node (default 20)
  --json                 print the report as JSON instead of a table
  --executor-entry PATH  executor entry to ship instead of kernels/executor_main.ts
  -h, --help             show this help`;

/** One row of the preflight report. */
export interface NodeReport {
  index: number;
  host: string;
  transport: "local" | "ssh";
  ok: boolean;
  error?: string;
  hostname?: string;
  devices: number;
  executor?: string;
  gpus?: { index: number; name: string; memoryMb: number }[];
  webgpu?: string;
  /** The node's Python and torch (the PyTorch executors' runtime). */
  python?: PythonInfo;
  cpus?: number;
  memoryGb?: number;
  deno?: string;
  denoUploaded?: boolean;
  uploads?: { what: string; bytes: number }[];
  rttMs?: { p50: number; max: number };
  launchMs?: number;
  agentPid?: number;
}

/** Checks an inventory against the node's config: problems (fatal) and warnings. */
export function checkNode(n: NodeLaunch, config: Config): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  const c = n.config;
  const inv = n.inventory!;
  const kind = n.executorKind!;
  if (c.executor === "cuda") {
    if (inv.gpus.length === 0) {
      problems.push(
        `${n.name}: executor: cuda, but nvidia-smi lists no NVIDIA GPU there; fix the driver or set executor`,
      );
    } else if (inv.gpus.length < c.devices) {
      problems.push(
        `${n.name}: devices: ${c.devices} with executor: cuda, but nvidia-smi lists ${inv.gpus.length} GPU(s); ` +
          `set devices: ${inv.gpus.length}`,
      );
    }
    if (c.deviceMemoryGb !== undefined) {
      for (const g of inv.gpus.slice(0, c.devices)) {
        if (g.memoryMb / 1024 < c.deviceMemoryGb) {
          problems.push(
            `${n.name}: device_memory_gb: ${c.deviceMemoryGb}, but GPU ${g.index} (${g.name}) has ` +
              `${(g.memoryMb / 1024).toFixed(1)} GiB`,
          );
        }
      }
    }
  }
  // One problem per cause: with no GPU at all, nvidia-smi's is the root one.
  const torch = torchProblem(n);
  if (torch && problems.length === 0) problems.push(torch);
  if (c.executor === "auto" && inv.gpus.length && kind !== "cuda") {
    const py = inv.python;
    warnings.push(
      `${n.name}: ${inv.gpus.length} NVIDIA GPU(s), but executor: auto picked ${kind}: ` +
        (py?.torch ? `torch ${py.torch} there ${py.cuda ? "sees no GPU" : "is a CPU-only build"}` : "no torch there") +
        ` (${py?.executable ?? c.python}); install a CUDA build of torch to train on the GPUs`,
    );
  }
  if (c.executor === "webgpu" && !inv.webgpu) {
    problems.push(`${n.name}: executor: webgpu, but Deno finds no WebGPU adapter there; set executor: cpu or auto`);
  }
  if (kind !== "cuda" && c.deviceMemoryGb !== undefined && c.devices * c.deviceMemoryGb > inv.memoryGb) {
    problems.push(
      `${n.name}: ${c.devices} devices x device_memory_gb ${c.deviceMemoryGb} = ${c.devices * c.deviceMemoryGb} GiB, ` +
        `but the node has ${inv.memoryGb.toFixed(1)} GiB of memory`,
    );
  }
  if (kind === "cpu" && c.devices > inv.cpus) {
    warnings.push(`${n.name}: ${c.devices} cpu executors on ${inv.cpus} CPU cores will share cores`);
  }
  void config;
  return { problems, warnings };
}

/** `torch 2.13.0+cpu, py 3.11.7` / `cu 12.4, nccl 2.21.5` / `no torch (py 3.11.2)` / `-` (not probed). */
function torchCell(py: PythonInfo | undefined): string {
  if (!py) return "-";
  if (!py.python) return "no python";
  if (!py.torch) return `no torch (py ${py.python})`;
  const cuda = py.cuda
    ? `, cuda ${py.cuda}${py.cudaAvailable ? "" : " (no GPU)"}${py.nccl ? `, nccl ${py.nccl}` : ""}`
    : "";
  return `torch ${py.torch}${cuda}, py ${py.python}`;
}

function fmtMs(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return "-";
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function progressLine(e: ProgressEvent): string | undefined {
  const t = `${(e.ms / 1000).toFixed(2)}s`.padStart(7);
  const what: Record<string, string> = {
    connecting: `connecting to ${e.detail}`,
    connected: `connected (${e.detail})`,
    probing: "checking Deno and cached files",
    uploading: `uploading ${e.detail}`,
    starting: "starting the agent",
    ready: `ready (${e.detail})`,
    failed: `FAILED: ${e.detail}`,
    lost: `LOST: ${e.detail}`,
  };
  const prefix = `${e.node.name}: `;
  if (e.phase === "failed" && e.detail.startsWith(prefix)) what.failed = `FAILED: ${e.detail.slice(prefix.length)}`;
  const text = what[e.phase];
  return text ? `${t}  ${e.node.name}: ${text.split("\n")[0]}` : undefined;
}

async function startExecutors(
  cluster: ClusterSession,
  config: Config,
  problems: string[],
  say: (l: string) => void,
): Promise<void> {
  let pool: ExecutorPool;
  try {
    pool = ExecutorPool.create(cluster, { config, connect: false, startTimeoutMs: 120_000 });
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    problems.push(e.message);
    return;
  }
  try {
    await pool.start();
    for (const l of attentionLines(pool.places)) say(l);
  } catch (e) {
    if (!(e instanceof FaultError)) throw e;
    // Every rank that failed, in the order they failed (a lost node is reported by the node check).
    for (const f of await pool.settled()) {
      if (f.kind === "timeout") {
        for (const r of f.silent ?? []) problems.push(`${f.node.name}: executor rank ${r} not ready within 120 s`);
      } else if (f.kind === "executor_error") {
        problems.push(`${f.node.name}: executor rank ${f.rank} failed: ${f.detail}`);
      } else if (f.kind === "executor_exit" && !pool.faults.some((g) => g.kind !== f.kind && g.rank === f.rank)) {
        const how = f.reason.replace(/^executor (exited with |killed by )/, "");
        problems.push(
          `${f.node.name}: executor rank ${f.rank} exited (${how}) before it was ready; last log lines:\n` +
            (f.logTail ?? "").split("\n").slice(-10).map((l) => `    ${l}`).join("\n"),
        );
      }
    }
  } finally {
    pool.stop();
  }
}

/** The command line of `deno task nodes`, checked. */
interface NodesOptions {
  configPath: string;
  sets: string[];
  executors: boolean;
  hold?: number;
  pings: number;
  json: boolean;
  executorEntry?: string;
}

/** Parses the command line; undefined after printing the help. */
function parseOptions(args: string[]): NodesOptions | undefined {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      set: { type: "string", multiple: true, default: [] },
      executors: { type: "boolean", default: false },
      hold: { type: "string" },
      pings: { type: "string", default: "20" },
      json: { type: "boolean", default: false },
      "executor-entry": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  if (positionals.length !== 1) throw new UserError(`expected one config file\n${USAGE}`);
  const pings = Number(values.pings);
  if (!Number.isInteger(pings) || pings < 1) {
    throw new UserError(`--pings ${values.pings}: expected a positive integer`);
  }
  const hold = values.hold === undefined ? undefined : Number(values.hold);
  if (hold !== undefined && !(hold >= 0)) throw new UserError(`--hold ${values.hold}: expected seconds >= 0`);
  return {
    configPath: positionals[0],
    sets: values.set,
    executors: values.executors,
    hold,
    pings,
    json: values.json,
    executorEntry: values["executor-entry"],
  };
}

/** The report of every node (pinged `pings` times) and the problems and warnings of checking it against the config. */
async function checkNodes(
  cluster: ClusterSession,
  config: Config,
  pings: number,
): Promise<{ reports: NodeReport[]; problems: string[]; warnings: string[] }> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const reports: NodeReport[] = [];
  for (const n of cluster.nodes) {
    const r: NodeReport = {
      index: n.config.index,
      host: n.config.host,
      transport: n.config.transport,
      ok: !n.error,
      devices: n.config.devices,
    };
    reports.push(r);
    if (n.error) {
      r.error = n.error;
      problems.push(n.error.startsWith(n.name) ? n.error : `${n.name}: ${n.error}`);
      continue;
    }
    const s = n.session!;
    const rtts: number[] = [];
    for (let i = 0; i < pings; i++) rtts.push(await s.ping());
    rtts.sort((a, b) => a - b);
    const inv = n.inventory!;
    Object.assign(r, {
      hostname: inv.hostname,
      executor: n.executorKind,
      gpus: inv.gpus,
      webgpu: inv.webgpu?.description,
      python: inv.python,
      cpus: inv.cpus,
      memoryGb: inv.memoryGb,
      deno: n.boot?.denoVersion ?? inv.deno,
      denoUploaded: n.boot?.denoUploaded ?? false,
      uploads: n.boot?.uploads ?? [],
      rttMs: { p50: rtts[Math.floor(rtts.length / 2)], max: rtts[rtts.length - 1] },
      launchMs: n.timings.totalMs,
      agentPid: s.agentPid,
    });
    const c = checkNode(n, config);
    problems.push(...c.problems);
    warnings.push(...c.warnings);
  }
  const byHost = new Map<string, string[]>();
  for (const n of cluster.ready) {
    const key = n.inventory!.hostname;
    byHost.set(key, [...(byHost.get(key) ?? []), n.name]);
  }
  for (const [host, names] of byHost) {
    if (names.length > 1) warnings.push(`${names.join(" and ")} are the same machine (hostname ${host})`);
  }
  return { reports, problems, warnings };
}

/** The inventory table: one row per node. */
function reportTable(reports: NodeReport[]): string {
  const rows = [[
    "node",
    "host",
    "hostname",
    "devices",
    "executor",
    "gpus",
    "webgpu",
    "torch",
    "cpus",
    "memory",
    "deno",
    "rtt",
  ]];
  for (const r of reports) {
    if (!r.ok) {
      rows.push([String(r.index), r.host, "-", String(r.devices), "FAILED", "-", "-", "-", "-", "-", "-", "-"]);
      continue;
    }
    const gpus = r.gpus!.length
      ? `${r.gpus!.length}x ${r.gpus![0].name} ${(r.gpus![0].memoryMb / 1024).toFixed(0)} GiB`
      : "-";
    rows.push([
      String(r.index),
      r.host,
      r.hostname!,
      String(r.devices),
      r.executor!,
      gpus,
      r.webgpu ? r.webgpu.slice(0, 32) : "-",
      torchCell(r.python),
      String(r.cpus),
      `${r.memoryGb!.toFixed(1)} GiB`,
      `${r.deno}${r.denoUploaded ? " (uploaded)" : ""}`,
      fmtMs(r.rttMs!.p50),
    ]);
  }
  return table(rows);
}

/** Keeps the agents up `hold` seconds (0: until Ctrl-C); 1 when a node is lost meanwhile, else 0. */
async function holdAgents(cluster: ClusterSession, hold: number, say: (text: string) => void): Promise<number> {
  say(hold > 0 ? `holding the agents for ${hold} s (Ctrl-C to stop)` : "holding the agents until Ctrl-C");
  const lost = Promise.race(cluster.sessions.map((s) => s.lost));
  const timeout = hold > 0 ? new Promise<undefined>((r) => setTimeout(() => r(undefined), hold * 1000)) : undefined;
  const info = await Promise.race([lost, ...(timeout ? [timeout] : [])]);
  if (!info) return 0;
  say(`error: ${info.node} lost: ${info.reason}`);
  if (info.stderrTail) say(`agent stderr (last lines):\n${info.stderrTail}`);
  return 1;
}

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  if (!opts) return 0;
  const config = await loadClusterConfig(opts.configPath, opts.sets);
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const runId = `nodes-${stamp}-${crypto.randomUUID().slice(0, 4)}`;
  const say = (text: string) => console.error(text);

  say(`flexsp nodes: ${config.cluster.nodes.length} node(s) from ${config.source}`);
  const cluster = ClusterSession.create(config);
  const removeHandlers = cluster.installSignalHandlers(say);
  await cluster.start({
    runId,
    runDir: `${Deno.cwd()}/runs/${runId}`,
    executorEntry: opts.executorEntry ?? (opts.executors ? undefined : null),
    probeWebgpu: true,
    probePython: true,
    onProgress: (e) => {
      const line = progressLine(e);
      if (line) say(line);
    },
    onProtocolError: (source, message) => say(`protocol error from ${source}: ${message}`),
  });
  let code = 0;
  try {
    const { reports, problems, warnings } = await checkNodes(cluster, config, opts.pings);
    if (opts.executors && problems.length) {
      say("not starting executors: fix the problems below first");
    } else if (opts.executors && cluster.ready.length) {
      say(`starting executors on ${cluster.ready.length} node(s) ...`);
      await startExecutors(cluster, config, problems, say);
      if (!problems.length) say("every executor is ready");
    }

    if (opts.json) {
      console.log(JSON.stringify({ runId, nodes: reports, problems, warnings, launchMs: cluster.launchMs }, null, 2));
    } else {
      console.log(reportTable(reports));
      console.log(`launched in ${fmtMs(cluster.launchMs)}`);
      for (const w of warnings) console.log(`warning: ${w}`);
      for (const p of problems) console.log(`problem: ${p}`);
      console.log(
        problems.length ? `${problems.length} problem(s); fix them and run again` : "all nodes match the config",
      );
    }
    if (problems.length) code = 1;
    if (opts.hold !== undefined && code === 0) code = await holdAgents(cluster, opts.hold, say);
  } finally {
    const exits = await cluster.shutdown(code === 0 ? "preflight done" : "preflight failed");
    removeHandlers();
    cluster.nodes.forEach((n, i) => {
      const e = exits[i];
      if (!n.session || n.session.lostInfo) return;
      const clean = e.code === 0 && !e.signal;
      say(`${n.name}: agent ${clean ? "stopped cleanly" : `stopped: ${JSON.stringify(e)}`}`);
    });
  }
  return code;
}

if (import.meta.main) runCli(main);
