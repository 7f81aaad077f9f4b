// Bootstrap pieces that need no SSH: Deno version rules, the node probe script (run here with sh against a fake
// home), source hashing of the bundle inputs, and nvidia-smi parsing.

import {
  denoUsable,
  parseDenoVersion,
  parseProbe,
  probeScript,
  sourceHash,
} from "../../orchestrator/cluster/bootstrap.ts";
import { parseNvidiaSmi } from "../../agents/inventory.ts";
import { assert, assertEquals } from "../assert.ts";

Deno.test("Deno versions: parse and minimum", () => {
  assertEquals(parseDenoVersion("deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)"), [2, 9, 6]);
  assertEquals(parseDenoVersion("bash: deno: command not found"), undefined);
  assert(denoUsable("deno 2.0.0"));
  assert(denoUsable("deno 10.1.0"));
  assert(!denoUsable("deno 1.46.3"));
  assert(!denoUsable(""));
  assert(!denoUsable("deno 2.1.0", "2.1.1"));
});

Deno.test("the probe finds the cache, the first usable Deno and cached bundles", async () => {
  const home = await Deno.makeTempDir({ prefix: "fxprobe-" });
  try {
    await Deno.mkdir(`${home}/bin`);
    await Deno.writeTextFile(`${home}/bin/deno`, "#!/bin/sh\necho 'deno 1.40.0 (release)'\n", { mode: 0o755 });
    await Deno.mkdir(`${home}/.deno/bin`, { recursive: true });
    await Deno.writeTextFile(`${home}/.deno/bin/deno`, "#!/bin/sh\necho 'deno 2.5.1 (stable)'\n", { mode: 0o755 });
    await Deno.mkdir(`${home}/.cache/flexsp/bundles`, { recursive: true });
    await Deno.writeTextFile(`${home}/.cache/flexsp/bundles/agent-abc.js`, "x");
    const run = async (script: string) => {
      const child = new Deno.Command("/bin/sh", {
        args: ["-s"],
        env: { HOME: home, PATH: `${home}/bin:/usr/bin:/bin`, XDG_CACHE_HOME: "" },
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(script));
      await w.close();
      return parseProbe(new TextDecoder().decode((await child.output()).stdout));
    };
    // XDG_CACHE_HOME set but empty falls back to ~/.cache, like the XDG spec says.
    const p = await run(probeScript({ files: ["agent-abc.js", "executor-def.js"] }));
    assertEquals(p.cache, `${home}/.cache/flexsp`);
    assertEquals([...p.have], ["agent-abc.js"]);
    assertEquals(p.os, Deno.build.os === "linux" ? "Linux" : p.os);
    // The old deno on PATH is listed but skipped; ~/.deno/bin/deno is the first usable one.
    assertEquals(p.denos.map((d) => d.version), ["deno 1.40.0 (release)", "deno 2.5.1 (stable)"]);
    assert(denoUsable(p.denos[1].version));
    // A configured path is the only candidate.
    const q = await run(probeScript({ configuredDeno: `${home}/missing/deno`, files: [] }));
    assertEquals(q.denos, []);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("sourceHash follows relative imports and changes when any of them changes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fxhash-" });
  try {
    await Deno.writeTextFile(`${dir}/main.ts`, 'import { x } from "./lib/x.ts";\nconsole.log(x);\n');
    await Deno.mkdir(`${dir}/lib`);
    await Deno.writeTextFile(`${dir}/lib/x.ts`, 'export { y as x } from "./y.ts";\n');
    await Deno.writeTextFile(`${dir}/lib/y.ts`, "export const y = 1;\n");
    await Deno.writeTextFile(`${dir}/other.ts`, "export const z = 1;\n");
    const h1 = await sourceHash(`${dir}/main.ts`);
    assertEquals(await sourceHash(`${dir}/main.ts`), h1, "stable");
    await Deno.writeTextFile(`${dir}/other.ts`, "export const z = 2;\n");
    assertEquals(await sourceHash(`${dir}/main.ts`), h1, "an unrelated file does not matter");
    await Deno.writeTextFile(`${dir}/lib/y.ts`, "export const y = 2;\n");
    assert(await sourceHash(`${dir}/main.ts`) !== h1, "a transitive import changes the hash");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nvidia-smi CSV is parsed into GPUs", () => {
  const text = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA A100-SXM4-40GB, 40960\n\n";
  assertEquals(parseNvidiaSmi(text), [
    { index: 0, name: "NVIDIA H100 80GB HBM3", memoryMb: 81559 },
    { index: 1, name: "NVIDIA A100-SXM4-40GB", memoryMb: 40960 },
  ]);
  assertEquals(parseNvidiaSmi("No devices were found\n"), []);
});
