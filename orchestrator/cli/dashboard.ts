// `deno task dashboard RUN_DIR [--port N] [--listen ADDR]`: serves the dashboard of a finished or running run from
// its files (ledger, observe.jsonl, checkpoints), re-read whenever they change; the same page and /metrics as the
// live one. Prints the URL with its token and stops on Ctrl-C.

import { runCli, UserError } from "../errors.ts";
import { parseCommand } from "./args.ts";
import { loadRunState } from "../run/observe/run_files.ts";
import { RunMetrics } from "../run/observe/metrics.ts";
import { serveDashboard } from "../run/observe/dashboard_server.ts";

const USAGE = `usage: deno task dashboard RUN_DIR [--port N] [--listen ADDR]

Serves the dashboard of a run (finished or running) from its files: loss, tokens/s, MFU, predicted vs measured step
time, the latest plans, ranks, stragglers and hangs, and /metrics. Every request needs the printed URL's token.
  --port N       port (default: a free one)
  --listen ADDR  listen address (default 127.0.0.1; anything else exposes the run to the network)`;

async function stamp(dir: string): Promise<string> {
  const parts: string[] = [];
  for (const f of ["ledger.jsonl", "observe.jsonl", "checkpoints/latest"]) {
    const s = await Deno.stat(`${dir}/${f}`).catch(() => undefined);
    parts.push(s ? `${s.size}:${s.mtime?.getTime()}` : "-");
  }
  return parts.join(",");
}

async function main(): Promise<number> {
  const { values, positionals } = parseCommand(Deno.args, USAGE, {
    port: { type: "string" },
    listen: { type: "string" },
  });
  if (positionals.length !== 1) throw new UserError(`expected one run directory\n\n${USAGE}`);
  const dir = positionals[0];
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UserError(`--port: expected a port number 0-65535, got "${values.port}"`);
  }
  const state = await loadRunState(dir);
  const metrics = new RunMetrics(state);
  let fed = 0;
  const feed = () => {
    for (const p of state.steps) if (p.step > fed) metrics.observeWall(p.wallMs);
    fed = state.steps[state.steps.length - 1]?.step ?? fed;
  };
  feed();
  const d = serveDashboard(state, metrics, {
    port,
    listen: values.listen as string | undefined,
    tokenSource: "`deno task dashboard` printed (its own token, not the one in RUN_DIR/dashboard.url)",
  });
  console.log(`dashboard of ${state.info.runDir}: ${d.url}`);
  let last = await stamp(dir);
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await stamp(dir);
    if (now === last) continue;
    last = now;
    state.replaceWith(await loadRunState(dir));
    feed();
  }
}

if (import.meta.main) runCli(main);
