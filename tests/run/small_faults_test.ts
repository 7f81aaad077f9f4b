// The smaller faults an operator met: a misspelt `--set` is blamed on the flag, not the file; a negative number
// after a flag gets the flag's own message; `status` of a killed run says stopped at once (the run directory's lock
// has no live holder); the standalone dashboard's 401 points at its own URL and it refuses POST and DELETE; the MFU
// note counts every device; `--resume` of a finished run says "nothing to do" without starting anything.

import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { parseCommand, positiveInt } from "../../orchestrator/cli/args.ts";
import { unknownPeaks } from "../../orchestrator/run/observe/observer.ts";
import { killLaunchAt, launchCli, REPO_ROOT, runCli, shortRun } from "./launch_harness.ts";

Deno.test("a misspelt --set is named as the flag; --limit -3 gets the flag's message; MFU names every device", async () => {
  await assertThrows(
    () => loadConfig("configs/local.yaml", ["trainin.steps=3"]),
    /^--set trainin\.steps=3: trainin: unknown key "trainin" \(did you mean "training"\?\)$/,
  );
  const { values } = parseCommand(["--limit", "-3", "x"], "usage", { limit: { type: "string" } });
  assertEquals(values.limit, "-3");
  await assertThrows(
    () => positiveInt("limit", values.limit as string, 1),
    `--limit: expected a positive integer, got "-3"`,
  );
  const cpu = (i: number) => ({ peakTflops: null, deviceName: `cpu:${i} cpu (TypeScript reference, f32)` });
  assertEquals(unknownPeaks([0, 1, 2, 3].map(cpu)), "4x cpu (TypeScript reference, f32)");
});

Deno.test({
  name: "a killed run: status says stopped at once; the standalone dashboard; resume of a finished run starts nothing",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-small-" });
    try {
      const dir = `${tmp}/run`;
      const args = ["configs/local.yaml", ...shortRun(tmp, 4, 2)];
      await killLaunchAt(args, dir, "step 3/4", 120_000);
      const st = await runCli("status", [dir]);
      assertEquals(st.code, 0, st.err);
      assertIncludes(st.out, "state: stopped at step ", "no orchestrator runs it");

      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${REPO_ROOT}/orchestrator/cli/dashboard.ts`, dir],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      try {
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!/\?token=\w+/.test(text)) text += (await reader.read()).value ?? "";
        const url = new URL(text.match(/http\S+/)![0]);
        const bare = `${url.origin}/`;
        const denied = await fetch(bare);
        assertEquals(denied.status, 401);
        assertIncludes(await denied.text(), "`deno task dashboard` printed");
        for (const method of ["POST", "DELETE"]) {
          const r = await fetch(url, { method });
          assertEquals(r.status, 405, method);
          await r.body?.cancel();
        }
        const ok = await fetch(url);
        assertEquals(ok.status, 200);
        await ok.body?.cancel();
        reader.releaseLock();
      } finally {
        child.kill("SIGTERM");
        await child.status;
        await child.stdout.cancel().catch(() => {});
      }

      const resumed = await launchCli([...args, "--resume", dir]);
      assertEquals(resumed.code, 0, resumed.err);
      const again = await launchCli([...args, "--resume", dir]);
      assertEquals(again.code, 0, again.err);
      assertIncludes(again.err, "nothing to do: the run already finished at step 4");
      assert(!again.err.includes("agent ready") && !again.err.includes("dashboard http"), again.err);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
