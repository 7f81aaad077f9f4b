// Interrupts of a training run (orchestrator/run/interrupts.ts) as real processes under `deno task launch` in their
// own process group, the way a terminal, `timeout` or a service manager delivers them: SIGINT to the group (which
// `deno task` forwards, so the orchestrator sees it twice) and SIGTERM to the group each finish the step, save a
// checkpoint and exit 130 with the resume command; a deliberate second Ctrl-C a while later stops at once; and the
// listeners' rules on a controlled clock.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { interruptListeners, SAME_INTERRUPT_MS } from "../../orchestrator/run/interrupts.ts";
import { ledger, shortRun, startLaunch } from "./launch_harness.ts";

Deno.test("interrupt listeners: a repeat within the window counts once; a later SIGINT stops; SIGTERM never", () => {
  let t = 0, stops = 0;
  const logs: string[] = [];
  const flag = { requested: false };
  const ls = new Map(interruptListeners(flag, (l) => logs.push(l), () => stops++, () => t));
  ls.get("SIGINT")!();
  assert(flag.requested);
  t = SAME_INTERRUPT_MS - 1;
  ls.get("SIGINT")!();
  ls.get("SIGTERM")!();
  assertEquals([stops, logs.length], [0, 1]);
  t = SAME_INTERRUPT_MS + 1;
  ls.get("SIGTERM")!();
  ls.get("SIGTERM")!();
  assertEquals(stops, 0);
  assertEquals(logs.length, 2);
  ls.get("SIGINT")!();
  assertEquals(stops, 1);
});

/** `deno task launch ARGS` in a process group of its own, and a signal to that group. */
function taskLaunch(args: string[], env: Record<string, string> = {}) {
  const p = startLaunch(args, env, true);
  return { ...p, group: (sig: Deno.Signal) => Deno.kill(-p.child.pid, sig) };
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.test({
    name: `${sig} to the group of \`deno task launch\`: the step finishes, a checkpoint is saved, exit 130`,
    sanitizeResources: false,
    fn: async () => {
      const tmp = await Deno.makeTempDir({ prefix: "flexsp-interrupt-" });
      try {
        const dir = `${tmp}/run`;
        const p = taskLaunch(["configs/local.yaml", ...shortRun(tmp, 40, 20), "--run-dir", dir]);
        await p.waitFor("step  3/40", 120_000);
        p.group(sig);
        const r = await p.finish();
        assertEquals(r.code, 130, r.err);
        const last = (await ledger(dir)).at(-1)!.step;
        assert(last < 40, `stopped early (${last})`);
        assert(!r.err.includes("stopping at once"), r.err);
        assertIncludes(r.err, `stopped after step ${last}; the last checkpoint is step ${last}. Resume with:`);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "a second, deliberate Ctrl-C (after the window) stops at once, with the resume command",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-interrupt2-" });
    try {
      const dir = `${tmp}/run`;
      // Rank 0 spends 20 s in step 3: the second Ctrl-C comes while the step still runs.
      const p = taskLaunch(["configs/local.yaml", ...shortRun(tmp, 6, 3), "--run-dir", dir], {
        FLEXSP_TEST_STEP_DELAY: "0:20000:3",
      });
      await p.waitFor("step 2/6", 120_000);
      p.group("SIGINT");
      await p.waitFor("interrupted: finishing the current step", 10_000);
      await new Promise((r) => setTimeout(r, SAME_INTERRUPT_MS + 300));
      const t0 = Date.now();
      p.group("SIGINT");
      const r = await p.finish();
      assertEquals(r.code, 130, r.err);
      assert(Date.now() - t0 < 10_000, "stopped at once");
      assertIncludes(r.err, "stopping at once; resume from the last checkpoint with:", `--resume `);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
