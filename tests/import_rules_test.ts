// The tier rule of docs/architecture.md, read off the import graph: every relative import of every TypeScript file
// in the repository is checked against the folders its folder may import. A forbidden import fails the test with
// the file, line and the rule it breaks.

import { assertEquals } from "./assert.ts";
import { ROOT, tsFiles } from "./source_files.ts";

/** Folder -> the folders (besides itself) its files may import. The first matching prefix applies. */
export const ALLOWED: [string, string[]][] = [
  ["core/", []],
  ["kernels/", ["core/"]],
  ["agents/", ["core/", "kernels/"]],
  ["orchestrator/errors.ts", []],
  ["orchestrator/config/", ["core/", "orchestrator/errors.ts"]],
  ["orchestrator/planner/", ["core/", "orchestrator/errors.ts", "orchestrator/config/"]],
  ["orchestrator/data/", ["core/", "orchestrator/errors.ts", "orchestrator/config/"]],
  ["orchestrator/cluster/", ["core/", "orchestrator/errors.ts", "orchestrator/config/", "orchestrator/data/"]],
  ["orchestrator/ledger/", [
    "core/",
    "orchestrator/errors.ts",
    "orchestrator/config/",
    "orchestrator/data/",
    "orchestrator/planner/",
  ]],
  ["orchestrator/run/", [
    "core/",
    "orchestrator/errors.ts",
    "orchestrator/config/",
    "orchestrator/data/",
    "orchestrator/planner/",
    "orchestrator/cluster/",
    "orchestrator/ledger/",
  ]],
  ["orchestrator/profile/", [
    "core/",
    "orchestrator/errors.ts",
    "orchestrator/config/",
    "orchestrator/data/",
    "orchestrator/planner/",
    "orchestrator/cluster/",
    "orchestrator/ledger/",
  ]],
  ["orchestrator/cli/", ["core/", "orchestrator/"]],
  ["mod.ts", ["core/", "orchestrator/", "kernels/", "agents/"]],
  ["bench/", [""]],
  ["tests/", [""]],
];

const IMPORT_RE =
  /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function normalize(path: string): string {
  const out: string[] = [];
  for (const p of path.split("/")) {
    if (p === "..") out.pop();
    else if (p !== "." && p !== "") out.push(p);
  }
  return out.join("/");
}

function ruleOf(file: string): [string, string[]] | undefined {
  return ALLOWED.find(([prefix]) => file === prefix || file.startsWith(prefix));
}

/** The imports of one file (`file`, relative to the root; `text`, its source) that break the rule. */
export function importViolations(file: string, text: string): string[] {
  const rule = ruleOf(file);
  if (!rule) return [`${file}: no tier rule covers this file (add its folder to docs/architecture.md and ALLOWED)`];
  const [prefix, allowed] = rule;
  const bad: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    if (!spec.startsWith("./") && !spec.startsWith("../")) continue;
    const target = normalize(`${file.slice(0, file.lastIndexOf("/") + 1)}${spec}`);
    const own = prefix.endsWith("/") ? target.startsWith(prefix) : target === prefix;
    if (own || allowed.some((a) => target.startsWith(a))) continue;
    // The match may start with the whitespace before the keyword (a newline): count lines up to the keyword.
    const line = text.slice(0, m.index + m[0].length - m[0].trimStart().length).split("\n").length;
    bad.push(`${file}:${line} imports ${target} (${prefix} may import only ${allowed.join(", ") || "itself"})`);
  }
  return bad;
}

/** Every import in the repository that breaks the rule: `file:line imports target (folder may import only ...)`. */
export async function forbiddenImports(): Promise<string[]> {
  const bad: string[] = [];
  for await (const file of tsFiles("")) bad.push(...importViolations(file, await Deno.readTextFile(`${ROOT}/${file}`)));
  return bad.sort();
}

Deno.test("import rules: no file imports from a tier above it or from a sibling it must not see", async () => {
  assertEquals(await forbiddenImports(), []);
});

Deno.test("import rules: the checker finds a forbidden import (kernels -> orchestrator) and an uncovered file", () => {
  // Checked in memory: nothing is written into the tree other tests and tools read.
  const text = 'import { x } from "./y.ts";\nimport type { Config } from "../orchestrator/config/types.ts";\n' +
    "export type X = Config;\n";
  assertEquals(importViolations("kernels/zz_probe.ts", text), [
    "kernels/zz_probe.ts:2 imports orchestrator/config/types.ts (kernels/ may import only core/)",
  ]);
  assertEquals(importViolations("orchestrator/cli/zz_probe.ts", text), [], "the CLI tier may import the config");
  assertEquals(importViolations("zz_top_level.ts", text), [
    "zz_top_level.ts: no tier rule covers this file (add its folder to docs/architecture.md and ALLOWED)",
  ]);
});
