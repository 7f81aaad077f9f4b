// The CLI's offer to profile now: when `plan` or `launch` finds neither a profile nor inline constants and runs on a
// terminal, it asks whether to run the profiler, then tries again. Library code (resolveProfile) never asks.

import { NoProfileError } from "../config/profile_file.ts";
import { runProfileCli } from "./profile_command.ts";

/** Runs `fn`; on a NoProfileError at a terminal, offers to profile the cluster and, when accepted, runs `fn` again. */
export async function withProfileOffer<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof NoProfileError) || !Deno.stdin.isTerminal() || !Deno.stderr.isTerminal()) throw e;
    const { config, path } = e;
    console.error(`${config.source}: no profile at ${path} and no profile.constants.`);
    if (!confirm(`Profile the cluster now (deno task profile ${config.source}, about 2 minutes)?`)) throw e;
    await runProfileCli(config, { out: path, print: (t) => console.error(t) });
    return await fn();
  }
}
