// `profile`'s effects on later commands: a `--set` of a cluster or model field writes the profile to a path of its
// own (the config's profile stays the one of the config as written, so a plain `launch` of it keeps working); and a
// resume after a re-profile (only the cost constants changed) warns and continues instead of demanding --force.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { profileTarget } from "../../orchestrator/cli/profile_command.ts";
import { killLaunchAt, launchCli, ledger, shortRun } from "./launch_harness.ts";

Deno.test("profile --set of a cluster or model field writes beside the config's profile, and says where", async () => {
  const config = (sets: string[]) => loadConfig("configs/local.yaml", sets);
  const plain = profileTarget(await config([]), []);
  assertEquals(plain, { path: "configs/profiles/local.json" });
  assertEquals(profileTarget(await config(["training.steps=3"]), ["training.steps=3"]), plain);
  const sets = ["cluster.nodes[0].devices=2"];
  const other = profileTarget(await config(sets), sets);
  assert(/^configs\/profiles\/local\.set-[0-9a-f]{8}\.json$/.test(other.path), other.path);
  assertIncludes(
    other.note!,
    `--set cluster.nodes[0].devices=2 changes the cluster`,
    `--set profile.path=${other.path}`,
  );
  assertEquals(
    profileTarget(await config([...sets, "model.max_seq=256"]), [...sets, "model.max_seq=256"]).path === other.path,
    false,
  );
  const named = [...sets, "profile.path=/tmp/x.json"];
  assertEquals(profileTarget(await config(named), named), { path: "/tmp/x.json" });
});

Deno.test({
  name: "a resume after a re-profile (only the cost constants changed) warns and continues",
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "flexsp-reprofile-" });
    try {
      const dir = `${tmp}/run`;
      const args = ["configs/local.yaml", ...shortRun(tmp, 6, 3)];
      await killLaunchAt(args, dir, "checkpoint step-00000003", 120_000);
      const r = await launchCli([...args, "--set", "profile.constants.beta1=0.09", "--resume", dir]);
      assertEquals(r.code, 0, r.err);
      assertIncludes(r.err, "warning: the cost constants changed since this run started");
      assertEquals((await ledger(dir)).map((x) => x.step), [1, 2, 3, 4, 5, 6]);
      const changed = await launchCli([...args, "--set", "training.lr=0.01", "--resume", dir]);
      assertEquals(changed.code, 1, "a model or data change is still refused");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
