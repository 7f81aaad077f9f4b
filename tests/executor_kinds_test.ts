// The executor kinds are listed once, in core/protocol.ts (EXECUTOR_KINDS and its subsets); every other list or
// union of two or more kind names in the product code is a second copy that can fall out of step. This test finds
// such copies in orchestrator/, agents/, core/ and kernels/ (TypeScript).

import { assertEquals } from "./assert.ts";
import { EXECUTOR_KIND_CHOICES, EXECUTOR_KINDS, TORCH_EXECUTOR_KINDS, TS_EXECUTOR_KINDS } from "../core/protocol.ts";
import { ROOT, tsFiles } from "./source_files.ts";

const KIND = `"(?:${EXECUTOR_KINDS.join("|")})"`;
/** Two kind names next to each other in a union (`|`), an array or a call (`,`). */
const LISTED_TOGETHER = new RegExp(`${KIND}\\s*[|,]\\s*${KIND}`);
const DEFINITION = "core/protocol.ts";

/** `file:line` of every line outside the definition that writes out two or more kinds together. */
export function repeatedKindLists(file: string, text: string): string[] {
  if (file === DEFINITION) return [];
  return text.split("\n").flatMap((l, i) => LISTED_TOGETHER.test(l) ? [`${file}:${i + 1}: ${l.trim()}`] : []);
}

Deno.test("executor kinds: no product file writes out its own list of kinds", async () => {
  const found: string[] = [];
  for (const dir of ["orchestrator", "agents", "core", "kernels"]) {
    for await (const f of tsFiles(dir)) found.push(...repeatedKindLists(f, await Deno.readTextFile(`${ROOT}/${f}`)));
  }
  assertEquals(found, []);
});

Deno.test("executor kinds: the checker finds a union and an array of kinds, and the subsets are kinds", () => {
  assertEquals(repeatedKindLists("x.ts", 'type K = "cpu" | "webgpu";\nconst k = ["cuda", "torch-cpu"];\nf("cpu");'), [
    'x.ts:1: type K = "cpu" | "webgpu";',
    'x.ts:2: const k = ["cuda", "torch-cpu"];',
  ]);
  assertEquals(EXECUTOR_KIND_CHOICES, [...EXECUTOR_KINDS, "auto"]);
  for (const k of [...TS_EXECUTOR_KINDS, ...TORCH_EXECUTOR_KINDS]) assertEquals(EXECUTOR_KINDS.includes(k), true);
});
