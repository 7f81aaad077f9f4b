// `deno task launch <config.yaml> [--resume [RUN_DIR]] [--run-dir DIR] [--force]`: trains on the cluster the config
// describes, regrouping the devices into the planner's SP groups every step; see orchestrator/run/launch_run.ts.

import { runCli, UserError } from "../errors.ts";
import { parseCommand } from "./args.ts";
import { launchRun } from "../run/launch_run.ts";
import { withProfileOffer } from "./profile_offer.ts";

const USAGE =
  `usage: deno task launch <config.yaml> [--resume [RUN_DIR]] [--run-dir DIR] [--force] [--set PATH=VALUE]...

Trains on the cluster of the config: starts the agents and one executor per device, plans every step with the
configured strategy (the next plan is solved while the current step runs), prints one line per step and writes
RUN_DIR/ledger.jsonl and checkpoints (every training.checkpoint_interval steps, at the end and on Ctrl-C).
  --run-dir DIR     run directory (default runs/<name>-<timestamp>)
  --resume [DIR]    continue a run from its last complete checkpoint (default: the newest run of this config)
  --force           resume even though the config, dataset or profile changed since the run started; use a
                    profile measured on other hardware
  --set P=V         override a config field, e.g. --set training.steps=200 (repeat the same ones on --resume)
Exit status: 0 done, 1 bad input, 2 the run failed (the message says how to resume), 130 interrupted.`;

async function main(): Promise<number> {
  // `--resume` takes an optional directory: `--resume DIR` or `--resume` alone.
  const argv = [...Deno.args];
  let resumeDir: string | undefined;
  let resume = false;
  const at = argv.indexOf("--resume");
  if (at >= 0) {
    resume = true;
    const next = argv[at + 1];
    const positionalsBefore = argv.slice(0, at).filter((a, i, all) =>
      !a.startsWith("-") && all[i - 1] !== "--set" &&
      all[i - 1] !== "--run-dir"
    );
    if (next !== undefined && !next.startsWith("-") && (positionalsBefore.length > 0 || !/\.ya?ml$/.test(next))) {
      resumeDir = next;
      argv.splice(at, 2);
    } else argv.splice(at, 1);
  }
  const { values, positionals, sets } = parseCommand(argv, USAGE, {
    "run-dir": { type: "string" },
    force: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one config file\n\n${USAGE}`);
  const runDir = resumeDir ?? (values["run-dir"] as string | undefined);
  if (resumeDir && values["run-dir"] && values["run-dir"] !== resumeDir) {
    throw new UserError("--resume DIR and --run-dir DIR name different directories; give one");
  }
  const r = await withProfileOffer(() =>
    launchRun({
      configPath: positionals[0],
      sets,
      runDir,
      resume,
      force: Boolean(values.force),
    })
  );
  return r.code;
}

if (import.meta.main) runCli(main);
