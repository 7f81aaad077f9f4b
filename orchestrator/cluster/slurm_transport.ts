// The Slurm transport: an agent started as a job step on one node of the allocation (`srun --nodes=1 --ntasks=1
// -w NODE --overlap`), the step's stdio as the agent channel. The node shares this checkout's filesystem (as Slurm
// clusters share home directories), so the agent runs from source like a local one; everything above the channel is
// the same as for the local and SSH transports.

import type { AgentChannel } from "./agent_channel.ts";
import { spawnLocalAgent } from "./local_transport.ts";

/**
 * Environment of agents (and through them executors) in a Slurm step: Slurm signals every process of every step on
 * scancel, the time limit and preemption; they leave SIGTERM to the orchestrator, which finishes the step, writes a
 * checkpoint and then shuts them down (Slurm's KillWait is the grace time).
 */
export const SLURM_STEP_ENV = { FLEXSP_DEFER_SIGTERM: "1" };

/**
 * The srun command line that starts one task on `node` next to the steps already running there. The step inherits
 * the job's GPUs on the node, except where the job asked for GPUs job-wide (`--gpus=N`, SLURM_GPUS): Slurm 22.05
 * refuses any GPU request of a one-node step then, so the step asks for none (`--gres=none`).
 */
export function srunArgv(node: string, jobWideGpus = Boolean(Deno.env.get("SLURM_GPUS"))): string[] {
  return [
    "srun",
    ...(jobWideGpus ? ["--gres=none"] : []),
    "--nodes=1",
    "--ntasks=1",
    `--nodelist=${node}`,
    "--overlap",
    "--quiet",
    "--kill-on-bad-exit=0",
    `--job-name=flexsp-agent-${node}`,
  ];
}

/**
 * Job-wide resource requests sbatch exports that srun would read as the step's own (`--gpus=6` of the job becomes a
 * request for 6 GPUs on the agent's one node): left out, so the step gets the job's GPUs on its node.
 */
const JOB_WIDE = ["SLURM_GPUS", "SLURM_TRES_PER_TASK", "SLURM_GPUS_PER_TASK", "SLURM_NTASKS", "SLURM_NPROCS"];

/** This process's environment for a one-node step (see JOB_WIDE), plus `extra`. */
export function stepEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env = Deno.env.toObject();
  for (const k of JOB_WIDE) delete env[k];
  return { ...env, ...extra };
}

/** Starts the agent on Slurm node `node` of the current allocation. */
export function spawnSrunAgent(node: string, opts: { cwd?: string; gpus?: string } = {}): AgentChannel {
  const jobWide = Boolean(Deno.env.get("SLURM_GPUS"));
  return spawnLocalAgent({
    cwd: opts.cwd,
    clearEnv: true,
    // With --gres=none the agent still learns its GPUs: those the probe step saw on the node.
    env: stepEnv({ ...SLURM_STEP_ENV, ...(jobWide && opts.gpus ? { CUDA_VISIBLE_DEVICES: opts.gpus } : {}) }),
    wrap: srunArgv(node, jobWide),
    label: `srun -w ${node}`,
  });
}
