// `deno task status RUN_DIR`: a terminal summary of a running or finished run (see run/observe/status_summary.ts).

import { runCli, UserError } from "../errors.ts";
import { parseCommand } from "./args.ts";
import { loadRunState } from "../run/observe/run_files.ts";
import { statusLines } from "../run/observe/status_summary.ts";
import { lockState } from "../run/run_lock.ts";

const USAGE = `usage: deno task status RUN_DIR

Summarises a run from its files: running or finished, progress and ETA, the last loss, tokens/s, TFLOP/s per device
and MFU, the slowest ranks, straggler and hang reports, the last checkpoint and the command that resumes it.`;

async function main(): Promise<number> {
  const { positionals } = parseCommand(Deno.args, USAGE, {});
  if (positionals.length !== 1) throw new UserError(`expected one run directory\n\n${USAGE}`);
  const dir = positionals[0];
  for (const l of await statusLines(await loadRunState(dir), Date.now(), lockState(dir))) console.log(l);
  return 0;
}

if (import.meta.main) runCli(main);
