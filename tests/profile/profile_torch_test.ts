// `deno task profile` on PyTorch executors (torch-cpu) of 2 local nodes of 2 devices each: the PyTorch executors run
// collectives only on their SP-group pool's aligned blocks, so the node-pair matrix skips the pair between the nodes
// (ranks 0 and 2) with a warning instead of failing the profile; and the validation's steps end with an untimed
// 2-token micro-batch on every rank, so that DDP's gradient all-reduce (inside the last micro-batch's backward) counts
// in step_ms.

import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { readProfile } from "../../orchestrator/config/profile_file.ts";
import { torchPython } from "../agents/torch_fixtures.ts";
import { cli, writeLocalConfig } from "./fixtures.ts";

const torch = await torchPython();
if (!torch.ok) console.warn(`skipping the torch profile test: ${torch.reason}`);

Deno.test({
  name: "profile on torch-cpu, 2 nodes x 2 devices: completes, the pair between the nodes is skipped with a warning",
  ignore: !torch.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxprof-torch-" });
    try {
      const cfg = await writeLocalConfig(dir, { nodes: [2, 2], executor: "torch-cpu" });
      const out = `${dir}/profile.json`;
      const r = await cli("profile", [
        cfg,
        "--quick",
        "--out",
        out,
        "--run-dir",
        `${dir}/run`,
        "--set",
        "model.max_seq=256",
      ]);
      assertEquals(r.code, 0, r.out + r.err);
      const doc = await readProfile(out);
      assertIncludes(
        doc.warnings.join("\n"),
        "point-to-point between node 0 (localhost) and node 1 (localhost) not measured: ranks 0 and 2 are no SP group",
      );
      // The pairs inside each node (aligned blocks [0, 1] and [2, 3]) are measured.
      const p = doc.network.p2p!;
      assert(p.gbps[0][0]! > 0 && p.gbps[1][1]! > 0, JSON.stringify(p.gbps));
      assertEquals(p.gbps[0][1], null);
      assert(doc.constants.step_ms! > 0, `step_ms ${doc.constants.step_ms}`);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
