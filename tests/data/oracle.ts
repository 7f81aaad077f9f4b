// Runs tests/data/oracle.py (the Rust `tokenizers` package, pyarrow, megatron-core as independent oracles) and tells
// whether Python and those packages are installed (tests skip with the reason when they are not); reads datasets.

import { readDatasetIndex } from "../../orchestrator/data/dataset_format.ts";
import { pythonImportFailure } from "../python_probe.ts";

const SCRIPT = new URL("./oracle.py", import.meta.url).pathname;

/** Why the oracles cannot run here, or undefined when they can. */
export const oracleMissing: string | undefined = await pythonImportFailure(
  "tokenizers, pyarrow, numpy, torch, megatron.core.datasets.indexed_dataset",
).then((why) => why && `python3 oracles unavailable (${why}); pip install -r tests/requirements.txt`);

/** Calls one oracle subcommand with a JSON request; throws with its stderr on failure. */
export async function oracle<T = Record<string, unknown>>(cmd: string, req: unknown): Promise<T> {
  const p = new Deno.Command("python3", { args: [SCRIPT, cmd], stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(req)));
  await w.close();
  const out = await p.output();
  if (!out.success) throw new Error(`oracle ${cmd} failed:\n${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as T;
}

/** Every document's token ids of a dataset, in index order. */
export async function datasetTokens(dir: string): Promise<number[][]> {
  const ds = await readDatasetIndex(dir);
  const bytes = await Deno.readFile(ds.tokensPath);
  const all = ds.manifest.tokenBytes === 2 ? new Uint16Array(bytes.buffer) : new Uint32Array(bytes.buffer);
  return Array.from(ds.lengths, (len, d) => Array.from(all.subarray(ds.offsets[d], ds.offsets[d] + len)));
}
