// Test helpers for watching runs: TensorBoard's and prometheus_client's own parsers (Python), the dashboard URL of
// a run, and fetches with its token.

import { eventually } from "../assert.ts";
import { pythonImportFailure } from "../python_probe.ts";

const HERE = new URL(".", import.meta.url).pathname;

/** Why TensorBoard's or prometheus_client's parser cannot run here (the tests that need them skip), or undefined. */
export const observeOraclesMissing: string | undefined = await pythonImportFailure(
  "tensorboard.backend.event_processing.event_accumulator, prometheus_client.parser",
).then((why) => why && `python3 lacks the observe oracles (${why}); pip install -r tests/requirements.txt`);
if (observeOraclesMissing) {
  console.warn(`skipping the observe tests that read TensorBoard/Prometheus: ${observeOraclesMissing}`);
}

async function python(script: string, args: string[], stdin?: string): Promise<unknown> {
  const child = new Deno.Command("python3", {
    args: [`${HERE}${script}`, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const r = await child.output();
  const err = new TextDecoder().decode(r.stderr);
  if (!r.success) throw new Error(`${script} failed: ${err}`);
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

/** The scalars of a TensorBoard directory as TensorBoard reads them: tag -> [step, value][]. */
export function readTensorBoard(dir: string): Promise<Record<string, [number, number][]>> {
  return python("tb_read.py", [dir]) as Promise<Record<string, [number, number][]>>;
}

/** One sample of a Prometheus exposition. */
export interface PromSample {
  family: string;
  type: string;
  name: string;
  labels: Record<string, string>;
  value: number | null;
}

/** Parses Prometheus text with prometheus_client. */
export function parsePrometheus(text: string): Promise<PromSample[]> {
  return python("prom_parse.py", [], text) as Promise<PromSample[]>;
}

/** The dashboard URL a run wrote (waits for the file). */
export async function dashboardUrl(runDir: string, ms = 60_000): Promise<URL> {
  let url = "";
  await eventually(async () => {
    url = (await Deno.readTextFile(`${runDir}/dashboard.url`).catch(() => "")).trim();
    return url.length > 0;
  }, ms);
  if (!url) throw new Error(`${runDir}/dashboard.url was not written`);
  return new URL(url);
}

/** GET `path` of the dashboard with its token (or without: `token: false`). */
export async function get(base: URL, path: string, token = true): Promise<Response> {
  const u = new URL(path, base);
  if (token) u.searchParams.set("token", base.searchParams.get("token")!);
  return await fetch(u);
}
