// `deno task bench [--only NAME] [--quick]`: every benchmark part, printed as tables and written as JSON
// under bench/results/. Parts whose module is missing are skipped with a note.

import { type BenchSection, printSection } from "./report.ts";

const PARTS = [
  "planner",
  "agents",
  "kernels",
  "webgpu",
  "launch",
  "profile",
  "checkpoint",
  "data",
  "observe",
  "scale",
  "torch",
  "llama",
  "peers",
];

const only = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : undefined;
if (only && !PARTS.includes(only)) {
  console.error(`error: unknown part "${only}"; parts: ${PARTS.join(", ")}`);
  Deno.exit(1);
}
const outDir = new URL("./results/", import.meta.url);
await Deno.mkdir(outDir, { recursive: true });
const summary: Record<string, unknown> = {};
for (const part of PARTS) {
  if (only && part !== only) continue;
  let mod: { bench: () => Promise<BenchSection> };
  try {
    mod = await import(`./${part}.ts`);
  } catch (e) {
    console.error(`(skipping ${part}: ${(e as Error).message.split("\n")[0]})`);
    continue;
  }
  console.error(`running ${part} ...`);
  const section = await mod.bench();
  printSection(section);
  summary[part] = section.json;
  await Deno.writeTextFile(new URL(`${part}.json`, outDir), JSON.stringify(section.json, null, 2) + "\n");
}
console.log(`\nJSON written to ${outDir.pathname}`);
