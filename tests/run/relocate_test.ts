// Run directories are relocatable: checkpoint manifests name local parts relative to their checkpoint directory, so
// a run directory moved elsewhere resumes exactly, and a copy resumed while the original still exists loads its own
// parts (the original's are removed here to show it); a manifest that names a part outside the run directory (an
// older run's absolute path) is not used, with the reason.

import { assertEquals, assertIncludes } from "../assert.ts";
import { CheckpointStore } from "../../orchestrator/run/checkpoint_store.ts";
import { killLaunchAt, launchCli, ledger, manifestOf, shortRun } from "./launch_harness.ts";

Deno.test({
  name: "a moved run directory and a copy of one resume from their own parts; a part outside is refused",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-relocate-" });
    try {
      const args = ["configs/local.yaml", ...shortRun(tmp, 6, 3)];
      const first = `${tmp}/first`;
      await killLaunchAt(args, first, "checkpoint step-00000003", 120_000);
      assertEquals((await manifestOf(first, 3)).parts.map((p) => p.path), [0, 1, 2, 3].map((r) => `rank-${r}.ckpt`));

      // A copy while the original exists; the original's parts gone, so loading them would fail.
      await Deno.mkdir(`${tmp}/elsewhere`);
      const copy = `${tmp}/elsewhere/copy`;
      await new Deno.Command("cp", { args: ["-a", first, copy] }).output();
      for (let r = 0; r < 4; r++) await Deno.remove(`${first}/checkpoints/step-00000003/rank-${r}.ckpt`);
      const fromCopy = await launchCli([...args, "--resume", copy]);
      assertEquals(fromCopy.code, 0, fromCopy.err);
      assertEquals((await ledger(copy)).map((x) => x.step), [1, 2, 3, 4, 5, 6]);

      // A moved directory.
      const second = `${tmp}/second`;
      await killLaunchAt(args, second, "checkpoint step-00000003", 120_000);
      const moved = `${tmp}/elsewhere/moved`;
      await Deno.rename(second, moved);
      const fromMoved = await launchCli([...args, "--resume", moved]);
      assertEquals(fromMoved.code, 0, fromMoved.err);
      assertEquals((await ledger(moved)).map((x) => x.step), [1, 2, 3, 4, 5, 6]);
      const losses = async (d: string) => (await ledger(d)).map((x) => x.loss);
      assertEquals(await losses(moved), await losses(copy), "the same losses either way");

      // A manifest naming a part outside the run directory.
      const path = `${moved}/checkpoints/step-00000006/manifest.json`;
      const m = JSON.parse(await Deno.readTextFile(path));
      m.parts[1].path = `${tmp}/first/checkpoints/step-00000006/rank-1.ckpt`;
      await Deno.writeTextFile(path, JSON.stringify(m));
      const v = await new CheckpointStore(`${moved}/checkpoints`, moved).verify("step-00000006", () => true);
      assertEquals(v.ok, false);
      if (!v.ok) assertIncludes(v.reason, `rank 1 part ${tmp}/first/`, `lies outside ${moved} `);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
