// The repository's TypeScript sources, for tests that read the code itself (tier rules, function lengths, repeated
// literals): a walk that skips dependencies, run outputs and hidden folders.

import { REPO_ROOT } from "../orchestrator/cluster/bootstrap.ts";

/** The repository root (no trailing slash). */
export const ROOT = REPO_ROOT;

/** Every `.ts` file under `dir` (relative to the root; "" for all), as root-relative paths. */
export async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(`${ROOT}/${dir}`)) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory && !["node_modules", "runs", ".git", "dist"].includes(e.name) && !e.name.startsWith(".")) {
      yield* tsFiles(rel);
    } else if (e.isFile && e.name.endsWith(".ts")) yield rel;
  }
}
