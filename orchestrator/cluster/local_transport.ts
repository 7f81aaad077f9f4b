// `transport: local`: the agent runs as a subprocess of the orchestrator, speaking the same protocol on its
// stdin/stdout as it does over SSH.

import type { AgentChannel, ChannelExit } from "./agent_channel.ts";

/** Path of the agent's source entry in this checkout. */
export const AGENT_SOURCE = new URL("../../agents/agent.ts", import.meta.url).pathname;

/** Starts a local agent; `entry` defaults to the agent's source file. */
export function spawnLocalAgent(
  opts: {
    entry?: string;
    cwd?: string;
    env?: Record<string, string>;
    /** Pass only `env` (plus the two below), not this process's environment. */
    clearEnv?: boolean;
    wrap?: string[];
    label?: string;
  } = {},
): AgentChannel {
  // `wrap`: a launcher the agent command runs under (e.g. `srun ... -w NODE`), its stdio still the channel.
  const argv = [...(opts.wrap ?? []), Deno.execPath(), "run", "-A", "--no-config", opts.entry ?? AGENT_SOURCE];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd,
    clearEnv: opts.clearEnv,
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...opts.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    // Its own process group: a Ctrl-C or a SIGTERM to the orchestrator's group is the orchestrator's to handle (it
    // finishes the step and saves); the agent ends when its stdin closes. Under srun, Slurm's signal wiring applies.
    detached: !opts.wrap,
  }).spawn();
  const stdin = child.stdin.getWriter();
  const encoder = new TextEncoder();
  let open = true;
  const closed: Promise<ChannelExit> = child.status.then((s) => {
    open = false;
    return { code: s.signal ? null : s.code, signal: s.signal ? s.signal.replace(/^SIG/, "") : null };
  });
  return {
    label: opts.label ?? `local agent (pid ${child.pid})`,
    stdout: child.stdout,
    stderr: child.stderr,
    write: (text) => {
      if (!open) return false;
      stdin.write(encoder.encode(text)).catch(() => open = false);
      return true;
    },
    closeInput: () => {
      if (!open) return;
      open = false;
      stdin.close().catch(() => {});
    },
    closed,
    kill: () => {
      open = false;
      stdin.close().catch(() => {});
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }, 3000);
      closed.finally(() => clearTimeout(t));
    },
  };
}
