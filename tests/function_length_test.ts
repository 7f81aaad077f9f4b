// Functions a reader can hold: no function in orchestrator/, agents/, core/ or kernels/ (TypeScript) runs over
// MAX_LINES lines. The functions that did when the limit came in are listed below with the reason each is still
// long; a new long function fails, and so does an entry that is no longer needed (split it, then drop the entry).

import { assertEquals } from "./assert.ts";
import { functionSpans } from "./function_length.ts";
import { ROOT, tsFiles } from "./source_files.ts";

/** The most lines (header to closing brace) one function may have. */
export const MAX_LINES = 100;

/** `file:function` -> why it is still longer than MAX_LINES (each one a candidate for its own split). */
const EXCEPTIONS: Record<string, string> = {
  "orchestrator/profile/profiler.ts:runProfile": "the profile's phases in sequence; not yet split into one per phase",
  "orchestrator/data/megatron_format.ts:importMegatron":
    "reads the .idx header, the documents and the .bin chunks in one pass; not yet split",
  "orchestrator/planner/microbatch_milp.ts:buildMicroBatchMilp":
    "writes the MILP's variables and constraint families one after another; not yet split per family",
  "orchestrator/data/prepare.ts:prepareDataset": "reading, tokenizing and writing a dataset; not yet split",
  "kernels/webgpu/shaders/matmul.ts:vec4Source": "a WGSL shader template: the length is the shader's source text",
  "agents/executor_supervisor.ts:#start": "spawns one executor with its environment and streams; not yet split",
  "orchestrator/cluster/cluster_session.ts:start": "launches every node in phases; not yet split",
  "orchestrator/profile/ledger_check.ts:checkLedger": "one check per ledger field in sequence; not yet split",
  "orchestrator/run/observe/metrics.ts:constructor": "declares every Prometheus metric of a run; a list, not logic",
};

/** `file:function (N lines, line L)` of every function over the limit that is not an exception. */
async function longFunctions(): Promise<{ long: string[]; seen: Set<string> }> {
  const long: string[] = [];
  const seen = new Set<string>();
  for (const dir of ["orchestrator", "agents", "core", "kernels"]) {
    for await (const f of tsFiles(dir)) {
      for (const s of functionSpans(await Deno.readTextFile(`${ROOT}/${f}`))) {
        if (s.lines <= MAX_LINES) continue;
        const key = `${f}:${s.name}`;
        if (key in EXCEPTIONS) seen.add(key);
        else long.push(`${key} (${s.lines} lines, line ${s.start}): split it along what it does`);
      }
    }
  }
  return { long: long.sort(), seen };
}

Deno.test("function length: no function over the limit besides the listed ones, and every listed one still is", async () => {
  const { long, seen } = await longFunctions();
  assertEquals(long, []);
  const stale = Object.keys(EXCEPTIONS).filter((k) => !seen.has(k));
  assertEquals(stale, [], "these are no longer over the limit: remove them from EXCEPTIONS");
});

Deno.test("function length: the scanner finds functions, methods and arrows and measures them", () => {
  const body = (n: number) => Array.from({ length: n }, (_, i) => `    step(${i});`).join("\n");
  const text = [
    "export async function outer(",
    "  a: number,",
    "): Promise<void> {",
    "  if (a) {",
    "    call(a);",
    "  }",
    "}",
    "class K {",
    "  async #m(x: number): Promise<number> {",
    body(3),
    "  }",
    "  get size(): number {",
    "    return 1;",
    "  }",
    "}",
    "const f = async (x: number) => {",
    "  items.forEach((i) => {",
    body(2),
    "  });",
    "};",
    "run(",
    "  1,",
    ");",
  ].join("\n");
  assertEquals(functionSpans(text).map((s) => [s.name, s.start, s.lines]), [
    ["outer", 1, 7],
    ["#m", 9, 5],
    ["size", 14, 3],
    ["f", 18, 6],
    ["<arrow>", 19, 4],
  ]);
});
