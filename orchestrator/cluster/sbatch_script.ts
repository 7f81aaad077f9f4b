// The sbatch script `deno task submit` writes into the run directory: resources, the signal wiring (SIGTERM to flexsp
// before the time limit, so it checkpoints), requeue, and resume (a run directory that already holds the run is
// resumed, so a requeued, preempted or resubmitted job continues from its last checkpoint). Meant to be read.

/** What goes into the script. */
export interface SbatchOptions {
  /** Absolute path of the config. */
  config: string;
  /** `--set` overrides passed to launch. */
  sets: string[];
  /** Absolute run directory. */
  runDir: string;
  jobName: string;
  nodes?: number;
  gpusPerNode?: number;
  /** Slurm time limit, e.g. `2:00:00`. */
  time?: string;
  partition?: string;
  /** Seconds before the time limit at which flexsp gets SIGTERM (default 120). */
  signalLeadS?: number;
  /** Extra sbatch arguments, one `#SBATCH` line each. */
  extra: string[];
  /** Repository root the job runs from (shared with the nodes). */
  repoRoot: string;
  /** Deno binary the job runs. */
  deno: string;
  /** When it was written. */
  now?: Date;
}

/** Quotes for bash unless the word is plain. */
export function bashWord(s: string): string {
  return /^[A-Za-z0-9_./=:,@+%-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The sbatch script text. */
export function sbatchScript(o: SbatchOptions): string {
  const lead = o.signalLeadS ?? 120;
  const sb = (flag: string, why?: string) =>
    `#SBATCH ${flag}${why ? `${" ".repeat(Math.max(1, 34 - flag.length))}# ${why}` : ""}`;
  const lines = [
    "#!/bin/bash",
    `# flexsp training job for ${o.config}`,
    `# written by \`deno task submit\` on ${(o.now ?? new Date()).toISOString()}; submit it again with`,
    `#   sbatch ${o.runDir}/job.sbatch`,
    "# and it resumes from the run's last checkpoint.",
    sb(`--job-name=${o.jobName}`),
    ...(o.nodes ? [sb(`--nodes=${o.nodes}`)] : []),
    ...(o.gpusPerNode ? [sb(`--gpus-per-node=${o.gpusPerNode}`, "one flexsp device per GPU")] : []),
    ...(o.time ? [sb(`--time=${o.time}`)] : []),
    ...(o.partition ? [sb(`--partition=${o.partition}`)] : []),
    sb(`--output=${o.runDir}/slurm-%j.out`),
    sb("--open-mode=append", "a requeued job appends to the same log"),
    sb("--requeue", "preemption or `scontrol requeue` runs it again"),
    sb(`--signal=B:TERM@${lead}`, `SIGTERM to flexsp ${lead} s before the time limit`),
    ...o.extra.map((e) => sb(e)),
    "",
    "# On SIGTERM (scancel, the time limit above, preemption) flexsp finishes the current step, writes a checkpoint",
    "# within Slurm's grace time (KillWait) and exits printing the resume command. Its agents and executors run as",
    "# job steps (srun --overlap) and leave SIGTERM to it.",
    "set -euo pipefail",
    `cd ${bashWord(o.repoRoot)}`,
    `run_dir=${bashWord(o.runDir)}`,
    'if [ -f "$run_dir/run.json" ]; then',
    '  how=(--resume "$run_dir")   # requeued, preempted or resubmitted: continue from the last checkpoint',
    "else",
    '  how=(--run-dir "$run_dir")',
    "fi",
    'echo "flexsp: job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}: ${how[*]}"',
    `exec ${bashWord(o.deno)} run -A orchestrator/cli/launch.ts ${bashWord(o.config)}` +
    o.sets.map((s) => ` --set ${bashWord(s)}`).join("") + ' "${how[@]}"',
    "",
  ];
  return lines.join("\n");
}
