// `deno task profile <config.yaml>`: measures a cluster and writes the profile plan and launch use (see
// orchestrator/cli/profile_command.ts for the flags); `--check RUN_DIR` reports prediction errors of a run.

import { runCli } from "../errors.ts";
import { profileMain } from "./profile_command.ts";

if (import.meta.main) runCli(() => profileMain(Deno.args));
