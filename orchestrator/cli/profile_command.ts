// `deno task profile` as a function: flags, grid presets, the run, the atomic writes of the profile and its HTML
// report, the summary, and `--check RUN_DIR`. `orchestrator/cli/profile.ts` is a thin wrapper around it, and
// `plan`/`launch` call `runProfileCli` (through profile_offer.ts) when they offer to profile a cluster that has no
// profile yet.

import { loadClusterConfig } from "../cluster/slurm_allocation.ts";
import type { Config } from "../config/types.ts";
import { UserError } from "../errors.ts";
import { parseCommand, positiveInt } from "./args.ts";
import { defaultGrid, type GridOptions, type GridSize, parseIntList } from "../profile/compute_grid.ts";
import { checkLedger, formatLedgerCheck } from "../profile/ledger_check.ts";
import { readLedger } from "../ledger/ledger.ts";
import { profilePathOf, userWrite, writeProfile } from "../config/profile_file.ts";
import { writeAtomic } from "../../core/atomic_write.ts";
import { sha256Hex } from "../../core/hash.ts";
import { runProfile } from "../profile/profiler.ts";
import { formatProfileSummary } from "../profile/report_text.ts";
import { renderHtmlReport } from "../profile/report_html.ts";

export const PROFILE_USAGE = `usage: deno task profile <config.yaml> [options]
       deno task profile --check RUN_DIR [config.yaml]

Measures the cluster of config.yaml through its agents and executors (compute time of packed batches on every
device, activation and model-state memory, all-to-all bandwidth per SP degree inside and across nodes, node-pair
latency and bandwidth), fits the cost model and writes the profile that plan and launch use, with an HTML report.

options:
  --out PATH          profile file (default: profile.path of the config, else profiles/<name>.json beside it;
                      with --set of a cluster. or model. field, <that path>.set-<hash>.json: the config's own
                      profile stays the one of the config as written)
  --report PATH       HTML report (default: the profile's path with .html)
  --quick             small grids (about a third of the default time)
  --large             large grids: more lengths, counts, sizes and repeats
  --lengths A,B,..    compute-grid sequence lengths (tokens)
  --counts A,B,..     compute-grid sequences per packed batch
  --max-tokens N      largest packed batch (default: the model's max_seq)
  --repeats N         timed repeats of every compute point
  --sizes A,B,..      all-to-all message sizes in KiB per rank
  --iters N           timed all-to-all iterations per size
  --no-validate       skip the per-degree validation with real steps (and the calibration)
  --no-calibrate      keep the microbenchmark's all-to-all bandwidths and the grid's compute instead of fitting
                      them and the fixed costs to the validation's real group times
  --fidelity N        after fitting, plan and run N training steps with the planner's own plans and report
                      predicted vs measured (in the profile, and a ledger.jsonl that --check reads; default 5,
                      3 with --quick, 0 to skip)
  --run-dir DIR       where agent logs and the --fidelity ledger go (default runs/profile-<timestamp>)
  --timeout S         longest wait for one benchmark command, seconds (default 600)
  --json              print the profile document instead of the summary
  --check RUN_DIR     no profiling: read RUN_DIR/ledger.jsonl and report the prediction error distribution and
                      drift (a rank or node that got slower); the config, when given, names the nodes
  --drift PCT         drift threshold of --check in percent (default 15)
  --set PATH=VALUE    override a config value (repeatable)
  -h, --help          show this help`;

/** Settings of one profile run from flags. */
export interface ProfileCliOptions {
  out?: string;
  report?: string;
  size?: GridSize;
  grid?: Partial<GridOptions>;
  fidelity?: number;
  timeoutS?: number;
  json?: boolean;
  validate?: boolean;
  calibrate?: boolean;
  /** Run directory (agent logs, the --fidelity ledger). */
  runDir?: string;
  say?: (line: string) => void;
  /** Where the summary goes (default stdout). */
  print?: (text: string) => void;
}

/** Profiles `config`, writes the profile and its report, prints the summary; returns the profile path. */
export async function runProfileCli(config: Config, o: ProfileCliOptions = {}): Promise<string> {
  const out = o.out ?? profilePathOf(config);
  const report = o.report ?? out.replace(/\.json$/, "") + ".html";
  const grid = { ...defaultGrid(config.model.maxSeq, o.size ?? "default"), ...o.grid };
  if (o.validate === false) grid.validateLengths = [];
  grid.lengths = grid.lengths.filter((l) => l <= config.model.maxSeq);
  if (grid.lengths.length === 0) throw new UserError(`--lengths: every length exceeds max_seq ${config.model.maxSeq}`);
  const say = o.say ?? ((l: string) => console.error(l));
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const runId = `profile-${stamp}-${crypto.randomUUID().slice(0, 4)}`;
  const runDir = o.runDir ?? `${Deno.cwd()}/runs/${runId}`;
  const env: Record<string, string> = {};
  const fault = Deno.env.get("FLEXSP_PROFILE_FAULT");
  if (fault) env.FLEXSP_PROFILE_FAULT = fault;
  const { doc, ledger } = await runProfile(config, {
    grid,
    timeoutMs: (o.timeoutS ?? 600) * 1000,
    say,
    runId,
    runDir,
    fidelitySteps: o.fidelity ?? 0,
    env,
    signals: true,
    calibrate: o.calibrate,
  });
  await writeProfile(out, doc);
  await writeAtomic(report, renderHtmlReport(doc, ledger), userWrite(report));
  const print = o.print ?? ((t: string) => console.log(t));
  if (o.json) print(JSON.stringify(doc, null, 1));
  else print(formatProfileSummary(doc, { profile: out, report }));
  if (ledger.length) {
    const path = `${runDir}/ledger.jsonl`;
    await writeAtomic(path, ledger.map((e) => JSON.stringify(e)).join("\n") + "\n", userWrite(path));
    if (!o.json) print(`\n${formatLedgerCheck(checkLedger(ledger, { nodeOf: rankNodeOf(config) }), path)}`);
  }
  return out;
}

/**
 * Where `profile` writes without --out. The config's profile path belongs to the config as written: a `--set` of a
 * cluster or model field measures another cluster or model, so its profile goes to a path of its own beside it
 * (named by the sets), and `note` says so and how to use it. A `--set profile.path=...` names the path itself.
 */
export function profileTarget(config: Config, sets: string[]): { path: string; note?: string } {
  const path = profilePathOf(config);
  const changing = sets.filter((s) => /^(cluster|model)[.[]/.test(s.trim()));
  if (!changing.length || sets.some((s) => s.trim().startsWith("profile.path="))) return { path };
  const own = `${path.replace(/\.json$/, "")}.set-${sha256Hex(changing.join("\n")).slice(0, 8)}.json`;
  return {
    path: own,
    note: `profile: ${changing.map((s) => `--set ${s}`).join(" ")} changes the cluster or model, so this profile ` +
      `goes to ${own}, not ${path} (the profile of ${config.source} as written); use it with ` +
      `--set profile.path=${own}, or pass --out PATH`,
  };
}

/** Node index of every rank of a config (ranks numbered node by node). */
export function rankNodeOf(config: Config): { node: number; host: string }[] {
  return config.cluster.nodes.flatMap((n) =>
    Array.from({ length: n.devices }, () => ({ node: n.index, host: n.host }))
  );
}

/** The whole command line. */
export async function profileMain(argv: string[]): Promise<number> {
  const { values, positionals, sets } = parseCommand(argv, PROFILE_USAGE, {
    out: { type: "string" },
    report: { type: "string" },
    quick: { type: "boolean" },
    large: { type: "boolean" },
    lengths: { type: "string" },
    counts: { type: "string" },
    "max-tokens": { type: "string" },
    repeats: { type: "string" },
    sizes: { type: "string" },
    iters: { type: "string" },
    "no-validate": { type: "boolean" },
    "no-calibrate": { type: "boolean" },
    fidelity: { type: "string" },
    timeout: { type: "string" },
    "run-dir": { type: "string" },
    json: { type: "boolean" },
    check: { type: "string" },
    drift: { type: "string" },
  });
  const list = (name: string) => {
    const v = values[name] as string | undefined;
    if (v === undefined) return undefined;
    try {
      return parseIntList(name, v);
    } catch (e) {
      throw new UserError((e as Error).message);
    }
  };
  if (values.check !== undefined) {
    if (positionals.length > 1) {
      throw new UserError(`--check takes a run directory and at most one config\n\n${PROFILE_USAGE}`);
    }
    const dir = values.check as string;
    const config = positionals[0] ? await loadClusterConfig(positionals[0], sets) : undefined;
    const drift = values.drift === undefined ? 15 : Number(values.drift);
    if (!(drift > 0)) throw new UserError(`--drift: expected a positive percentage, got "${values.drift}"`);
    const path = `${dir.replace(/\/$/, "")}/ledger.jsonl`;
    const entries = await readLedger(path, { strict: true });
    const result = checkLedger(entries, {
      driftThreshold: drift / 100,
      nodeOf: config ? rankNodeOf(config) : undefined,
    });
    if (values.json) console.log(JSON.stringify(result, null, 1));
    else console.log(formatLedgerCheck(result, path));
    return 0;
  }
  if (positionals.length !== 1) throw new UserError(`expected one config file\n\n${PROFILE_USAGE}`);
  if (values.quick && values.large) throw new UserError("--quick and --large exclude each other");
  const config = await loadClusterConfig(positionals[0], sets);
  const grid: Partial<GridOptions> = {};
  const lengths = list("lengths"), counts = list("counts"), sizes = list("sizes");
  if (lengths) grid.lengths = lengths;
  if (counts) grid.counts = counts;
  if (sizes) grid.alltoallSizes = sizes.map((k) => k * 1024);
  if (values["max-tokens"] !== undefined) grid.maxTokens = positiveInt("max-tokens", values["max-tokens"] as string, 1);
  if (values.repeats !== undefined) grid.repeats = positiveInt("repeats", values.repeats as string, 1);
  if (values.iters !== undefined) grid.alltoallIters = positiveInt("iters", values.iters as string, 1);
  const fidelity = values.fidelity === undefined
    ? (values["no-validate"] ? 0 : values.quick ? 3 : 5)
    : values.fidelity === "0"
    ? 0
    : positiveInt("fidelity", values.fidelity as string, 1);
  const timeoutS = values.timeout === undefined ? 600 : positiveInt("timeout", values.timeout as string, 600);
  const target = profileTarget(config, sets);
  if (values.out === undefined && target.note) console.error(target.note);
  await runProfileCli(config, {
    out: (values.out as string | undefined) ?? target.path,
    report: values.report as string | undefined,
    size: values.quick ? "quick" : values.large ? "large" : "default",
    grid,
    fidelity,
    timeoutS,
    json: Boolean(values.json),
    validate: !values["no-validate"],
    calibrate: !values["no-calibrate"],
    runDir: values["run-dir"] as string | undefined,
  });
  return 0;
}
