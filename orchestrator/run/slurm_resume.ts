// Resume wiring for schedulers: inside a Slurm job the run directory defaults to `runs/<name>-slurm-<job id>` (a
// requeued job keeps its id, so it finds its own run), and `training.resume: auto` resumes a run directory that
// already holds a run of this config, so a requeued or resubmitted job continues from its last checkpoint by itself.

import type { Config } from "../config/types.ts";
import { readRunInfo, RUNS_DIR } from "./run_dir.ts";

/** The run directory and resume flag a launch uses after the Slurm default and `training.resume: auto`. */
export async function autoResume(
  config: Config,
  opts: { runDir?: string; resume?: boolean },
  log: (line: string) => void,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<{ runDir?: string; resume?: boolean }> {
  let runDir = opts.runDir;
  const jobId = env.SLURM_JOB_ID;
  if (runDir === undefined && !opts.resume && config.cluster.scheduler === "slurm" && jobId) {
    runDir = `${RUNS_DIR}/${config.name}-slurm-${jobId}`;
  }
  if (opts.resume || config.training.resume !== "auto" || runDir === undefined) return { runDir, resume: opts.resume };
  const info = await readRunInfo(runDir).catch(() => undefined);
  if (!info) return { runDir, resume: false };
  const restart = env.SLURM_RESTART_COUNT ? ` (Slurm restart ${env.SLURM_RESTART_COUNT} of job ${jobId})` : "";
  log(`training.resume: auto: ${runDir} holds this run; resuming it${restart}`);
  return { runDir, resume: true };
}
