// `deno task submit <config.yaml> [--nodes N] [--gpus-per-node G] [--time T] [--partition P] [-- sbatch args]`:
// writes a readable sbatch script into a new run directory (see orchestrator/cluster/sbatch_script.ts), submits it
// and prints the job id and how to watch and cancel it.

import { runCli, UserError } from "../errors.ts";
import { parseCommand, positiveInt } from "./args.ts";
import { loadConfig } from "../config/load.ts";
import { writeAtomic } from "../../core/atomic_write.ts";
import { newRunDirName, RUNS_DIR } from "../run/run_dir.ts";
import { REPO_ROOT } from "../cluster/bootstrap.ts";
import { sbatchScript } from "../cluster/sbatch_script.ts";
import { slurmCommand } from "../cluster/slurm_allocation.ts";

const USAGE = `usage: deno task submit <config.yaml> [--nodes N] [--gpus-per-node G] [--time T] [--partition P]
                        [--run-dir DIR] [--signal-lead S] [--dry-run] [--set PATH=VALUE]... [-- SBATCH ARGS...]

Writes RUN_DIR/job.sbatch for a config with cluster.scheduler: slurm (SIGTERM before the time limit, --requeue, and
resume of the run directory when the job runs again), submits it with sbatch and prints the job id.
  --nodes N           nodes (sbatch --nodes)
  --gpus-per-node G   GPUs per node (sbatch --gpus-per-node); flexsp runs one device per GPU
  --time T            time limit (sbatch --time), e.g. 4:00:00
  --partition P       partition (sbatch --partition)
  --run-dir DIR       run directory (default runs/<name>-<timestamp>)
  --signal-lead S     seconds before the time limit at which flexsp checkpoints and stops (default 120)
  --dry-run           write the script and print it, do not submit
  -- ARGS             further sbatch arguments, each written as one #SBATCH line`;

async function main(): Promise<number> {
  const dash = Deno.args.indexOf("--");
  const argv = dash >= 0 ? Deno.args.slice(0, dash) : [...Deno.args];
  const extra = dash >= 0 ? Deno.args.slice(dash + 1) : [];
  const { values, positionals, sets } = parseCommand(argv, USAGE, {
    nodes: { type: "string" },
    "gpus-per-node": { type: "string" },
    time: { type: "string" },
    partition: { type: "string" },
    "run-dir": { type: "string" },
    "signal-lead": { type: "string" },
    "dry-run": { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one config file\n\n${USAGE}`);
  const configPath = positionals[0];
  const config = await loadConfig(configPath, sets);
  if (config.cluster.scheduler !== "slurm") {
    throw new UserError(
      `${configPath}: cluster.scheduler is not slurm; set it (cluster: { scheduler: slurm }) so the job uses the ` +
        `nodes Slurm allocates, instead of cluster.nodes`,
    );
  }
  for (const e of extra) {
    if (!e.startsWith("-")) throw new UserError(`sbatch argument "${e}" after -- is not an option (e.g. --qos=high)`);
  }
  const runDir = values["run-dir"] as string | undefined ?? `${RUNS_DIR}/${newRunDirName(config.name)}`;
  await Deno.mkdir(runDir, { recursive: true });
  const abs = await Deno.realPath(runDir);
  const script = sbatchScript({
    config: await Deno.realPath(configPath),
    sets,
    runDir: abs,
    jobName: `flexsp-${config.name}`,
    nodes: values.nodes === undefined ? undefined : positiveInt("nodes", values.nodes as string, 1),
    gpusPerNode: values["gpus-per-node"] === undefined
      ? undefined
      : positiveInt("gpus-per-node", values["gpus-per-node"] as string, 1),
    time: values.time as string | undefined,
    partition: values.partition as string | undefined,
    signalLeadS: positiveInt("signal-lead", values["signal-lead"] as string | undefined, 120),
    extra,
    repoRoot: REPO_ROOT,
    deno: Deno.execPath(),
  });
  const path = `${abs}/job.sbatch`;
  await writeAtomic(path, script);
  await Deno.chmod(path, 0o755);
  if (values["dry-run"]) {
    console.log(script);
    console.log(`wrote ${path} (not submitted: --dry-run)`);
    return 0;
  }
  const out = await slurmCommand("sbatch", ["--parsable", path]);
  const jobId = out.trim().split(";")[0];
  console.log(`submitted job ${jobId}: ${path}`);
  console.log(`  watch:   squeue -j ${jobId}; tail -f ${abs}/slurm-${jobId}.out`);
  console.log(`  cancel:  scancel ${jobId}   (flexsp checkpoints first; sbatch ${path} resumes it)`);
  return 0;
}

if (import.meta.main) runCli(main);
