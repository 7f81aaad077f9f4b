// The PyTorch executor on an SSH node (a test host: its own network namespace and sshd): the bootstrap uploads the
// kernels/torch package once (named by content hash), the inventory reports the node's torch, `nodes --executors`
// starts torch-cpu executors from the uploaded package, and a node whose Python has no torch is one clear problem.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { REPO_ROOT } from "../../orchestrator/run/bootstrap.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { pythonWithoutTorch, torchPython } from "./torch_fixtures.ts";

const can = canCreateTestHosts();
const torch = await torchPython();
const skip = !can.ok
  ? `skipping the torch SSH test: ${can.reason}`
  : !torch.ok
  ? `skipping the torch SSH test: ${torch.reason}`
  : undefined;
if (skip) console.log(skip);

async function nodesCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/orchestrator/cli/nodes.ts`, ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: r.code, out: d.decode(r.stdout), err: d.decode(r.stderr) };
}

interface Report {
  nodes: { ok: boolean; executor: string; uploads: { what: string }[]; python?: { torch: string | null } }[];
  problems: string[];
}

Deno.test({
  name: "torch-cpu over SSH: the package is uploaded once by hash, executors start from it; no torch is one problem",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const th = await startTestHosts({ count: 1 });
    try {
      // The host's /root is its own (a bind mount over this machine's): when the Python with torch lives under
      // /root, show it there through a non-recursive bind of / inside the host's mount namespace.
      const python = (torch as { python: string }).python;
      if (python.startsWith("/root/")) {
        const top = python.split("/")[2];
        const under = `${th.dir}/fsroot`;
        await Deno.mkdir(under);
        const out = await new Deno.Command("nsenter", {
          args: ["-t", String(th.hosts[0].sshdPid), "-m", "--", "mount", "--bind", "/", under],
        }).output();
        assert(out.success, `bind of / in the host: ${new TextDecoder().decode(out.stderr)}`);
        await Deno.symlink(`${under}/root/${top}`, `${th.hosts[0].home}/${top}`);
      }
      const cfg = await th.writeConfig({ devices: 2, executor: "torch-cpu", nodeExtra: `python: ${python}` });
      const cold = await nodesCli([cfg, "--json", "--pings", "2", "--executors"]);
      assertEquals(cold.code, 0, cold.out + cold.err);
      const a: Report = JSON.parse(cold.out);
      assertEquals(a.problems, []);
      assertEquals(a.nodes[0].executor, "torch-cpu");
      assert(a.nodes[0].python?.torch?.startsWith("2."), `torch on the node: ${a.nodes[0].python?.torch}`);
      assert(a.nodes[0].uploads.some((u) => u.what === "torch"), `the torch package was uploaded: ${cold.out}`);
      assertIncludes(cold.err, "every executor is ready");
      const warm = await nodesCli([cfg, "--json", "--pings", "2"]);
      assertEquals(warm.code, 0, warm.out + warm.err);
      assertEquals((JSON.parse(warm.out) as Report).nodes[0].uploads, [], "a warm start uploads nothing");

      const bare = await pythonWithoutTorch(th.dir);
      const badCfg = await th.writeConfig({ devices: 2, executor: "torch-cpu", nodeExtra: `python: ${bare}` });
      const bad = await nodesCli([badCfg]);
      assertEquals(bad.code, 1, bad.out + bad.err);
      const problems = bad.out.split("\n").filter((l) => l.startsWith("problem: "));
      assertEquals(problems.length, 1, bad.out);
      assertIncludes(
        problems[0],
        `node 0 (${th.hosts[0].ip}): executor torch-cpu needs PyTorch`,
        `on ${th.hosts[0].ip} has no torch`,
        "pip install torch==2.13.0",
      );
      assertEquals(await th.waitNoStrays(10_000), "");
    } finally {
      await th.close();
    }
  },
});
