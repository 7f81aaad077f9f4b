// The node side of the PyTorch executors: the agent's Python/torch probe (real Pythons, with and without torch), the
// one clear error a node without torch (or without CUDA for `executor: cuda`) gets at the `nodes` preflight, the
// torch package bundle named by content hash, and each torch-cpu process's share of the node's cores.

import type { AgentEvent, Inventory, PythonInfo } from "../../core/protocol.ts";
import { parsePythonProbe } from "../../agents/inventory.ts";
import { threadsPerExecutor } from "../../agents/executor_supervisor.ts";
import { AgentSession } from "../../orchestrator/cluster/agent_session.ts";
import { spawnLocalAgent } from "../../orchestrator/cluster/local_transport.ts";
import { dirBundle, REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";
import { resolveExecutorKind, TORCH_PACKAGE } from "../../orchestrator/cluster/cluster_session.ts";
import { torchProblem } from "../../orchestrator/cluster/torch_requirement.ts";
import { torchModuleCommand } from "../../core/torch_package.ts";
import { loadConfig } from "../../orchestrator/config/load.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { pythonWithoutTorch, torchPython } from "./torch_fixtures.ts";
import { runCli } from "../run/launch_harness.ts";

const torch = await torchPython();
if (!torch.ok) console.log(`skipping the tests that run torch: ${torch.reason}`);
const tmp = await Deno.makeTempDir({ prefix: "flexsp-torch-inv-" });

const INFO: PythonInfo = {
  command: "python3",
  python: "3.11.7",
  executable: "/opt/py/bin/python3",
  torch: "2.13.0+cpu",
  cuda: null,
  cudaAvailable: false,
  nccl: null,
  gpus: [],
  error: null,
};

async function node(executor: string, python: Partial<PythonInfo> | undefined, gpus = 0) {
  const config = await loadConfig(`${REPO_ROOT}/configs/local.yaml`, [
    `cluster.nodes[0].executor=${executor}`,
    "cluster.nodes[0].devices=2",
  ]);
  const inventory: Inventory = {
    hostname: "h",
    os: "linux",
    arch: "x86_64",
    cpus: 2,
    memoryGb: 8,
    deno: "2.9.6",
    gpus: Array.from({ length: gpus }, (_, index) => ({ index, name: "NVIDIA H200", memoryMb: 143771 })),
    ...(python ? { python: { ...INFO, ...python } } : {}),
  };
  const n = { name: "node 0 (gpu7)", config: { ...config.cluster.nodes[0], host: "gpu7" }, inventory };
  return { ...n, executorKind: resolveExecutorKind(n.config.executor, inventory) };
}

Deno.test("torch probe output: the JSON line is read; garbage or silence becomes an error, never a throw", () => {
  const line = JSON.stringify({
    python: "3.12.3",
    executable: "/usr/bin/python3",
    torch: "2.11.0+cu130",
    cuda: "13.0",
    cudaAvailable: true,
    nccl: "2.27.3",
    gpus: [{ name: "NVIDIA H200", memoryMb: 143771 }],
    error: null,
  });
  const info = parsePythonProbe("python3", `some warning\n${line}\n`);
  assertEquals(info.torch, "2.11.0+cu130");
  assertEquals(info.transformers, undefined, "an older probe says nothing of transformers");
  const withTf = parsePythonProbe("python3", JSON.stringify({ ...JSON.parse(line), transformers: null }));
  assertEquals(withTf.transformers, null);
  assertEquals(info.gpus, [{ name: "NVIDIA H200", memoryMb: 143771 }]);
  assertEquals(info.cudaAvailable, true);
  const bad = parsePythonProbe("python3", "", "Traceback ...\nSyntaxError: invalid syntax");
  assertEquals(bad.torch, null);
  assertIncludes(bad.error!, "printed no JSON", "SyntaxError");
});

Deno.test("torch requirement: one message naming host, Python and the fix; auto picks cuda only with torch+CUDA", async () => {
  assertEquals(torchProblem(await node("torch-cpu", {})), undefined);
  assertEquals(torchProblem(await node("cpu", undefined)), undefined);
  const noTorch = torchProblem(await node("torch-cpu", { torch: null, error: "No module named 'torch'" }))!;
  assertIncludes(
    noTorch,
    "node 0 (gpu7): executor torch-cpu needs PyTorch",
    "/opt/py/bin/python3 (Python 3.11.7, cluster.nodes[0].python: python3) on gpu7 has no torch",
    "`/opt/py/bin/python3 -m pip install torch==2.13.0` (a CPU wheel)",
    "or set cluster.nodes[0].python",
  );
  assert(!noTorch.includes("\n"), "one line");
  const cpuBuild = torchProblem(await node("cuda", {}, 2))!;
  assertIncludes(cpuBuild, "executor cuda needs torch with CUDA", "has torch 2.13.0+cpu, a CPU-only build");
  assertIncludes(cpuBuild, "--index-url https://download.pytorch.org/whl/", "executor: torch-cpu");
  const noGpu = torchProblem(await node("cuda", { torch: "2.11.0+cu130", cuda: "13.0", error: "driver too old" }, 2))!;
  assertIncludes(noGpu, "built for CUDA 13.0, but it sees no GPU (driver too old)");
  const noTransformers = torchProblem(await node("torch-cpu", { transformers: null }))!;
  assertIncludes(
    noTransformers,
    "executor torch-cpu runs transformers' model code",
    "on gpu7 has no transformers",
    "`/opt/py/bin/python3 -m pip install transformers==",
  );
  const noPython = torchProblem(await node("torch-cpu", { python: null, error: "cannot run python3: not found" }))!;
  assertIncludes(noPython, "python3 (cluster.nodes[0].python) does not run there: cannot run python3: not found");
  // auto: GPUs and a CUDA torch -> cuda; GPUs with a CPU torch -> not cuda.
  const cudaInfo = { torch: "2.11.0+cu130", cuda: "13.0", cudaAvailable: true, gpus: [{ name: "H200", memoryMb: 1 }] };
  assertEquals((await node("auto", cudaInfo, 1)).executorKind, "cuda");
  assertEquals((await node("auto", {}, 1)).executorKind, "cpu");
  assertEquals((await node("auto", undefined, 0)).executorKind, "cpu");
});

Deno.test("torch package bundle: named by its files' content; caches and tests stay behind", async () => {
  const dir = `${tmp}/pkg`;
  await Deno.mkdir(`${dir}/__pycache__`, { recursive: true });
  await Deno.mkdir(`${dir}/tests`);
  await Deno.mkdir(`${dir}/sub`);
  await Deno.writeTextFile(`${dir}/a.py`, "A = 1\n");
  await Deno.writeTextFile(`${dir}/sub/b.py`, "B = 2\n");
  await Deno.writeTextFile(`${dir}/__pycache__/a.cpython-311.pyc`, "x");
  await Deno.writeTextFile(`${dir}/tests/test_a.py`, "pass\n");
  const b1 = await dirBundle("torch", dir);
  assertEquals(b1.files!.map((f) => f.rel), ["a.py", "sub/b.py"]);
  assert(/^torch-[0-9a-f]{16}\/\.complete$/.test(b1.fileName), b1.fileName);
  await Deno.writeTextFile(`${dir}/tests/test_a.py`, "changed\n");
  assertEquals((await dirBundle("torch", dir)).fileName, b1.fileName, "tests do not change the name");
  await Deno.writeTextFile(`${dir}/sub/b.py`, "B = 3\n");
  assert((await dirBundle("torch", dir)).fileName !== b1.fileName, "a changed file changes the name");
});

Deno.test("torch package bundle within a root: the package folder and the __init__.py above it, at their paths", async () => {
  const root = `${tmp}/root`;
  await Deno.mkdir(`${root}/kernels/torch/tests`, { recursive: true });
  await Deno.writeTextFile(`${root}/kernels/__init__.py`, "");
  await Deno.writeTextFile(`${root}/kernels/other.ts`, "export {};\n");
  await Deno.writeTextFile(`${root}/kernels/torch/__init__.py`, "");
  await Deno.writeTextFile(`${root}/kernels/torch/a.py`, "from .b import B\nprint(B)\n");
  await Deno.writeTextFile(`${root}/kernels/torch/b.py`, "B = 2\n");
  await Deno.writeTextFile(`${root}/kernels/torch/tests/test_a.py`, "pass\n");
  const b = await dirBundle("torch", root, "kernels/torch");
  assertEquals(b.files!.map((f) => f.rel), [
    "kernels/__init__.py",
    "kernels/torch/__init__.py",
    "kernels/torch/a.py",
    "kernels/torch/b.py",
  ]);
  // Copied as the upload lays it out, the package runs as kernels.torch from the copy's root.
  const copy = `${tmp}/copy`;
  for (const f of b.files!) {
    await Deno.mkdir(`${copy}/${f.rel}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.copyFile(f.path, `${copy}/${f.rel}`);
  }
  const { args, env } = torchModuleCommand(`${copy}/kernels/torch`, "a");
  const out = await new Deno.Command("python3", { args, env, cwd: tmp }).output();
  assertEquals(new TextDecoder().decode(out.stdout).trim(), "2", new TextDecoder().decode(out.stderr));
});

Deno.test("torch-cpu threads: executors on a node share its cores, at least one thread each", () => {
  assertEquals(threadsPerExecutor(16, 4), 4);
  assertEquals(threadsPerExecutor(2, 4), 1);
  assertEquals(threadsPerExecutor(2, 1), 2);
  assertEquals(threadsPerExecutor(7, 2), 3);
});

async function agent(python: string) {
  const runDir = await Deno.makeTempDir({ dir: tmp, prefix: "run-" });
  const events: AgentEvent[] = [];
  const session = new AgentSession(spawnLocalAgent(), {
    name: "node 0 (localhost)",
    host: "localhost",
    heartbeatMs: 200,
    heartbeatTimeoutMs: 20000,
  });
  session.on((ev) => events.push(ev));
  const inventory = await session.start({
    runId: "torch-inv",
    runDir,
    probeWebgpu: false,
    python,
    torchPackage: TORCH_PACKAGE,
    probePython: true,
  }, 60000);
  return { session, inventory, events, runDir };
}

Deno.test({
  name: "agent inventory: the node's Python, torch and CUDA versions; a Python without torch is reported as such",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const a = await agent("python3");
    try {
      const py = a.inventory.python!;
      assertEquals(py.command, "python3");
      assert(/^3\.\d+\.\d+/.test(py.python ?? ""), `python version ${py.python}`);
      assertEquals(py.executable, (torch as { python: string }).python);
      assert(py.torch?.startsWith("2."), `torch ${py.torch}`);
      assertEquals(py.cudaAvailable, false, "no GPU here");
    } finally {
      await a.session.shutdown("test over");
    }
    const bare = await pythonWithoutTorch(tmp);
    const b = await agent(bare);
    try {
      const py = b.inventory.python!;
      assert(py.python !== null, "the Python runs");
      assertEquals(py.torch, null);
    } finally {
      await b.session.shutdown("test over");
    }
    const c = await agent(`${tmp}/no-such-python`);
    try {
      assertEquals(c.inventory.python!.python, null);
      assertIncludes(c.inventory.python!.error!, "no-such-python");
    } finally {
      await c.session.shutdown("test over");
    }
  },
});

/** `deno task nodes configs/local.yaml ARGS`. */
const nodesCli = (args: string[]) => runCli("nodes", ["configs/local.yaml", ...args]);

Deno.test({
  name: "deno task nodes: torch versions in the table; torch-cpu on a Python without torch is one clear problem",
  ignore: !torch.ok,
  sanitizeResources: false,
  fn: async () => {
    const ok = await nodesCli(["--set", "cluster.nodes[0].executor=torch-cpu"]);
    assertEquals(ok.code, 0, ok.out + ok.err);
    assertIncludes(ok.out, "torch-cpu", "torch 2.", "all nodes match the config");
    const bare = await pythonWithoutTorch(`${tmp}/nodes`);
    const bad = await nodesCli([
      "--set",
      "cluster.nodes[0].executor=torch-cpu",
      "--set",
      `cluster.nodes[0].python=${bare}`,
    ]);
    assertEquals(bad.code, 1, bad.out + bad.err);
    const problems = bad.out.split("\n").filter((l) => l.startsWith("problem: "));
    assertEquals(problems.length, 1, bad.out);
    assertIncludes(
      problems[0],
      "problem: node 0 (localhost): executor torch-cpu needs PyTorch, but",
      `(Python 3.`,
      `cluster.nodes[0].python: ${bare}) on localhost has no torch`,
      "-m pip install torch==2.13.0`",
    );
    assert(!/^\s+at /m.test(bad.out + bad.err), "no stack trace");
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});
