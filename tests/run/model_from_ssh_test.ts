// `model.from` on an SSH node that cannot see the directory (a test host: its /root is its own): launch copies the
// model once into the node's cache and the torch executors there load it; a second launch finds the cached copy and
// copies nothing; both train to the losses of the same run on a local node, which reads the original. The model is a
// tiny Llama saved by transformers; the test hosts see this machine's Python (with torch) through a read-only share.

import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { TWO_NODES_OF_TWO, writeTrainingConfig } from "../hosts/training_config.ts";
import { buildBuiltinDataset } from "../../orchestrator/data/builtin_corpus.ts";
import { modelIdentity } from "../../orchestrator/cluster/model_staging.ts";
import { assert, assertEquals, assertIncludes } from "../assert.ts";
import { exportCli, launchCli, ledger } from "./launch_harness.ts";
import { REPO_ROOT } from "../../orchestrator/cluster/bootstrap.ts";

const can = canCreateTestHosts();
const py = await new Deno.Command("python3", {
  args: ["-c", "import sys, torch, transformers; print(sys.executable); print(sys.prefix); print(sys.base_prefix)"],
  stdout: "piped",
  stderr: "null",
}).output().then((o) => o.success ? new TextDecoder().decode(o.stdout).trim().split("\n") : undefined, () => undefined);
const skip = !can.ok
  ? `skipping the model.from SSH test: ${can.reason}`
  : !py
  ? "skipping the model.from SSH test: python3 has no torch or transformers (pip install -r tests/requirements.txt)"
  : undefined;
if (skip) console.log(skip);

/** Saves a random tiny Llama (transformers' save_pretrained) with the byte vocabulary of the built-in corpus. */
async function saveTinyLlama(dir: string, seed: number): Promise<void> {
  const saved = await new Deno.Command("python3", {
    args: [
      "-c",
      "import sys; from kernels.torch.tests.llama_fixtures import save_tiny; save_tiny('llama', sys.argv[1], " +
      "seed=int(sys.argv[2]), vocab_size=256, max_position_embeddings=512)",
      dir,
      String(seed),
    ],
    env: { PYTHONPATH: REPO_ROOT },
    stderr: "piped",
  }).output();
  assert(saved.success, new TextDecoder().decode(saved.stderr));
}

Deno.test({
  name: "model.from over SSH: copied once into the node's cache, reused by the next launch, same losses as a local run",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // sys.executable as it is, not its real path: a venv's python is a link to the base interpreter, and resolving
    // it would lose the venv's packages.
    const [python, prefix, basePrefix] = py!;
    const share = [...new Set([prefix, basePrefix].filter((d) => d.startsWith("/root/")))];
    // The model under /root: the test host has its own /root, so it cannot see it there.
    const home = await Deno.makeTempDir({ dir: "/root", prefix: ".flexsp-model-from-test-" });
    const th = await startTestHosts({ count: 1, share });
    try {
      const model = `${home}/tiny-llama`;
      await saveTinyLlama(model, 0);
      await buildBuiltinDataset("deno-corpus", `${th.dir}/corpus`);
      const base = await th.writeConfig({ devices: 2, executor: "torch-cpu", nodeExtra: `python: ${python}` });
      const cfg = await writeTrainingConfig(base, `${th.dir}/launch.yaml`, {
        maxSeq: 256,
        dataset: `${th.dir}/corpus`,
        globalBatch: 4,
        steps: 3,
        planner: { deterministic: true },
        constants: TWO_NODES_OF_TWO,
      });
      const from = ["--set", `model.from=${model}`];
      const id = (await modelIdentity(model)).id;
      const cached = `/root/.cache/flexsp/models/${id}`;

      let losses: number[] = [];
      await t.step("first launch: the model is copied into the node's cache and trains", async () => {
        const r = await launchCli([cfg, ...from, "--run-dir", `${th.dir}/a`]);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.err, `node 0 (${th.hosts[0].ip}): copying model.from (`, `to ${cached}`);
        losses = (await ledger(`${th.dir}/a`)).map((x) => x.loss);
        assertEquals(losses.length, 3);
        // The copy is byte for byte the original (the host's /root is its home directory here).
        for (const f of ["config.json", "model.safetensors"]) {
          const a = await Deno.readFile(`${model}/${f}`);
          const b = await Deno.readFile(`${th.hosts[0].home}${cached.slice(5)}/${f}`);
          assert(a.length === b.length && a.every((v, i) => v === b[i]), `${f} differs on the host`);
        }
      });

      await t.step("second launch: the cached copy is used, nothing is copied, the same losses", async () => {
        const r = await launchCli([cfg, ...from, "--run-dir", `${th.dir}/b`]);
        assertEquals(r.code, 0, r.out + r.err);
        assert(!r.err.includes("copying model.from"), r.err);
        assertEquals((await ledger(`${th.dir}/b`)).map((x) => x.loss), losses);
      });

      await t.step("a local node reading the original trains to the same losses", async () => {
        const local = ["--set", "cluster.nodes[0].transport=local", "--set", "cluster.nodes[0].host=127.0.0.1"];
        const r = await launchCli([cfg, ...from, ...local, "--run-dir", `${th.dir}/c`]);
        assertEquals(r.code, 0, r.out + r.err);
        assert(!r.err.includes("copying model.from"), r.err);
        assertEquals((await ledger(`${th.dir}/c`)).map((x) => x.loss), losses);
      });

      await t.step("its export keeps the source's context (max_position_embeddings 512, trained at 256)", async () => {
        const r = await exportCli([`${th.dir}/c`, "--hf", `${th.dir}/c-hf`]);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.out, "max_position_embeddings 512: the source model's (trained at 256)");
        const cfg = JSON.parse(await Deno.readTextFile(`${th.dir}/c-hf/config.json`));
        assertEquals(cfg.max_position_embeddings, 512);
      });

      await t.step("a changed model (same size, other bytes) is not mistaken for the cached one", async () => {
        // Re-saved with another seed: every file has the size it had, the weights differ.
        await saveTinyLlama(model, 1);
        const r = await launchCli([cfg, ...from, "--run-dir", `${th.dir}/d`]);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.err, "copying model.from (");
        const other = (await ledger(`${th.dir}/d`)).map((x) => x.loss);
        assert(other[0] !== losses[0], `a different model gave the same first loss ${other[0]}`);
      });

      await t.step("with the source gone, the export says so and states the trained context", async () => {
        await Deno.rename(model, `${model}-moved`);
        const r = await exportCli([`${th.dir}/c`, "--hf", `${th.dir}/c-hf2`]);
        await Deno.rename(`${model}-moved`, model);
        assertEquals(r.code, 0, r.out + r.err);
        assertIncludes(r.out, `note: ${model}/config.json is not readable`);
        assertIncludes(r.out, "max_position_embeddings is the trained 256");
        assertEquals(JSON.parse(await Deno.readTextFile(`${th.dir}/c-hf2/config.json`)).max_position_embeddings, 256);
      });
      assertEquals(await th.waitNoStrays(10_000), "");
    } finally {
      await th.close();
      await Deno.remove(home, { recursive: true }).catch(() => {});
    }
  },
});
