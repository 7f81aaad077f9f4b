// The Slurm pieces that need no cluster: scontrol output parsing (NodeAddr, per-node GRES of a heterogeneous job),
// GPU counts from a step's environment, the config rules of cluster.scheduler: slurm, the sbatch script, and
// training.resume: auto's choice of run directory.

import { gpusOf, parseJobGres, parseNodeAddrs, readAllocation } from "../../orchestrator/cluster/slurm_allocation.ts";
import { sbatchScript } from "../../orchestrator/cluster/sbatch_script.ts";
import { autoResume } from "../../orchestrator/run/slurm_resume.ts";
import { srunArgv } from "../../orchestrator/cluster/slurm_transport.ts";
import { parseConfig } from "../../orchestrator/config/load.ts";
import { writeRunInfo } from "../../orchestrator/run/run_dir.ts";
import { assert, assertEquals, assertIncludes, assertThrows } from "../assert.ts";

Deno.test("scontrol show node: NodeAddr per node (the data plane's addresses)", () => {
  const text = "NodeName=fxn1 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.213.7.11 NodeHostName=vm Version=22.05.8\n" +
    "NodeName=fxn2 Arch=x86_64 NodeAddr=10.213.7.12 NodeHostName=vm\n";
  assertEquals([...parseNodeAddrs(text)], [["fxn1", "10.213.7.11"], ["fxn2", "10.213.7.12"]]);
});

Deno.test("scontrol -d show job: GPUs per node of a heterogeneous allocation, typed GRES summed", () => {
  const text = "JobId=7 JOB_GRES=gpu:6 Nodes=fxn1 CPU_IDs=0 Mem=0 GRES=gpu:2(IDX:0-1) " +
    "Nodes=fxn[2-3] CPU_IDs=0-1 Mem=0 GRES=gpu:a100:4(IDX:0-3) Nodes=fxn4 CPU_IDs=0 Mem=0 GRES= MinCPUsNode=1";
  assertEquals(parseJobGres(text), [
    { nodes: "fxn1", gpus: 2 },
    { nodes: "fxn[2-3]", gpus: 4 },
    { nodes: "fxn4", gpus: 0 },
  ]);
  assertEquals(gpusOf("3", "0,1"), 3);
  assertEquals(gpusOf("", "0,1,2,3"), 4);
  assertEquals(gpusOf("", ""), 0);
});

Deno.test("cluster.scheduler: slurm: config rules and the error outside an allocation", async () => {
  const base = "model: { preset: gpt-tiny }\n";
  const c = parseConfig(`cluster:\n  scheduler: slurm\n  executor: cpu\n  devices_per_node: 2\n${base}`, "s.yaml");
  assertEquals([c.cluster.scheduler, c.cluster.nodes.length], ["slurm", 0]);
  // The PyTorch executors on an allocation: torch-cpu and the nodes' Python are cluster-wide node keys too.
  const torch = parseConfig(
    `cluster:\n  scheduler: slurm\n  executor: torch-cpu\n  python: /opt/venv/bin/python\n${base}`,
    "t.yaml",
  );
  assertEquals(
    [
      (torch.document.cluster as Record<string, unknown>).executor,
      (torch.document.cluster as Record<string, unknown>).python,
    ],
    ["torch-cpu", "/opt/venv/bin/python"],
  );
  const both = await assertThrows(() =>
    parseConfig(`cluster:\n  scheduler: slurm\n  nodes: [{ host: a, devices: 1 }]\n${base}`, "s.yaml")
  );
  assertIncludes(both, "s.yaml:3:", "cluster.nodes: not used with cluster.scheduler: slurm");
  const none = await assertThrows(() => parseConfig(`cluster:\n  connect_timeout_s: 5\n${base}`, "n.yaml"));
  assertIncludes(none, "cluster.nodes: missing; list the nodes, or set cluster.scheduler: slurm");
  const outside = await assertThrows(() => readAllocation({}, { source: "s.yaml" }));
  assertIncludes(outside, "s.yaml: cluster.scheduler is slurm, but this process is not inside a Slurm allocation");
  assertIncludes(outside, "deno task submit s.yaml");
});

Deno.test("srun argv: one task on the node, overlapping; no GPU request when the job asked for GPUs job-wide", () => {
  assertEquals(srunArgv("n1", false).slice(0, 5), ["srun", "--nodes=1", "--ntasks=1", "--nodelist=n1", "--overlap"]);
  assertEquals(srunArgv("n1", true)[1], "--gres=none");
});

Deno.test("sbatch script: resources, signal, requeue and resume wiring, extra args; bash accepts it", async () => {
  const text = sbatchScript({
    config: "/x/c.yaml",
    sets: ["training.steps=9", "name=it's"],
    runDir: "/runs/r1",
    jobName: "flexsp-c",
    nodes: 4,
    gpusPerNode: 8,
    time: "2:00:00",
    partition: "gpu",
    signalLeadS: 90,
    extra: ["--qos=high"],
    repoRoot: "/repo",
    deno: "/usr/bin/deno",
  });
  assertIncludes(
    text,
    "#SBATCH --nodes=4",
    "#SBATCH --gpus-per-node=8",
    "#SBATCH --time=2:00:00",
    "#SBATCH --partition=gpu",
    "#SBATCH --requeue",
    "#SBATCH --signal=B:TERM@90",
    "#SBATCH --qos=high",
    "#SBATCH --output=/runs/r1/slurm-%j.out",
    'if [ -f "$run_dir/run.json" ]; then',
    "exec /usr/bin/deno run -A orchestrator/cli/launch.ts /x/c.yaml --set training.steps=9 --set 'name=it'\\''s'",
  );
  const check = await new Deno.Command("bash", { args: ["-n"], stdin: "piped", stderr: "piped" }).spawn();
  const w = check.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  assert((await check.status).success, "bash -n accepts the script");
});

Deno.test("training.resume: auto resumes a run directory holding a run; Slurm's default run dir is per job", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const c = parseConfig(
      "name: r\ncluster:\n  scheduler: slurm\ntraining: { resume: auto }\nmodel: { preset: gpt-tiny }\n",
      "r.yaml",
    );
    const logs: string[] = [];
    const log = (l: string) => logs.push(l);
    assertEquals(await autoResume(c, {}, log, { SLURM_JOB_ID: "42" }), { runDir: "runs/r-slurm-42", resume: false });
    assertEquals(await autoResume(c, { runDir: dir }, log, {}), { runDir: dir, resume: false });
    await writeRunInfo(dir, { runId: "x" } as never);
    assertEquals(await autoResume(c, { runDir: dir }, log, { SLURM_RESTART_COUNT: "1", SLURM_JOB_ID: "42" }), {
      runDir: dir,
      resume: true,
    });
    assertIncludes(logs.join("\n"), "training.resume: auto", "(Slurm restart 1 of job 42)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
