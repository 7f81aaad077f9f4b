// The peers of `deno task bench --only peers` compute what flexsp computes: plain PyTorch DDP and the plain-PyTorch
// Ulysses SP at degrees 2 and 1 (bench/peers_ddp.py, bench/peers_ulysses.py under torchrun, 2 gloo ranks; at degree 1
// each rank is an SP group of its own and takes its LPT share of the sequences) train the same small llama on
// the same sequences (odd lengths included, which Ulysses pads) to the same losses, step after step, so that the
// bench compares equal work. Workload (b): its generated long-tailed corpus, and the Ulysses peer run over test hosts
// (one torchrun agent per network namespace, as the bench runs it on the shaped two-tier network).

import { makeModel, peer, type PeerJob } from "../../bench/peers.ts";
import {
  CAPACITY,
  GLOBAL_BATCH,
  LONG_STEPS,
  LONGEST,
  longTailLengths,
  writeLongTailCorpus,
} from "../../bench/peers_long.ts";
import { readDatasetIndex } from "../../orchestrator/data/dataset_format.ts";
import { canCreateTestHosts, startTestHosts } from "../hosts/test_hosts.ts";
import { pythonImportFailure } from "../python_probe.ts";
import { assert, assertEquals } from "../assert.ts";

const missing = await pythonImportFailure("torch, transformers");
if (missing) console.log(`skipping the peers test: python3 cannot import torch and transformers (${missing})`);

/** A tiny llama in `dir`/model and a job of seeded random tokens at `lengths` per step (learning rate 1e-2). */
async function tinyJob(dir: string, lengths: number[][], seed: number): Promise<PeerJob> {
  const shape = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 256, maxSeq: 256 };
  await makeModel(`${dir}/model`, { ...shape, ropeTheta: 10000, normEps: 1e-5 });
  let x = seed;
  const token = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % 256;
  return {
    model: `${dir}/model`,
    steps: lengths.map((ls) => ls.map((n) => Array.from({ length: n }, token))),
    lrs: lengths.map(() => 1e-2),
    weight_decay: 0.01,
    grad_clip: 1,
    seed: 1,
    threads: 1,
    cpus: null,
  };
}

Deno.test({
  name: "peers: DDP and Ulysses SP=2 and SP=1 give the same losses on the same sequences over 3 steps",
  ignore: missing !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxpeers-" });
    try {
      const job = await tinyJob(dir, [[97, 40, 13, 64], [200, 7, 31, 50], [5, 120, 77, 18]], 12345);
      const ddp = await peer("peers_ddp.py", job, dir);
      const ulysses = await peer("peers_ulysses.py", job, dir, ["plain"]);
      assert(ulysses.peer === "ulysses-plain", ulysses.peer);
      // Degree 1: two SP groups of one rank each, the sequences spread over them as DDP spreads them.
      const groups = await peer("peers_ulysses.py", job, dir, ["plain", "1"]);
      for (const [i, l] of ddp.losses.entries()) {
        assert(Math.abs(l - ulysses.losses[i]) < 1e-4, `step ${i + 1}: DDP ${l}, Ulysses ${ulysses.losses[i]}`);
        assert(Math.abs(l - groups.losses[i]) < 1e-4, `step ${i + 1}: DDP ${l}, Ulysses SP=1 ${groups.losses[i]}`);
      }
      // The steps trained: different sequences and updated weights give different losses.
      assert(new Set(ddp.losses).size === 3 && ddp.losses.every(Number.isFinite), `losses ${ddp.losses}`);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test(
  "peers workload b: the long-tailed corpus is deterministic, its long documents need several devices, and " +
    "the dataset holds exactly those lengths",
  async () => {
    const lengths = longTailLengths(LONG_STEPS * GLOBAL_BATCH);
    assertEquals(lengths, longTailLengths(LONG_STEPS * GLOBAL_BATCH), "the same lengths on every run");
    // Per global batch of 32: one long (needs 4 devices), two medium (need 2), none over the model's context.
    const long = lengths.filter((n) => n > 2 * CAPACITY);
    assertEquals(long.length, LONG_STEPS);
    assert(long.every((n) => n <= LONGEST), `long ${long}`);
    const medium = lengths.filter((n) => n > CAPACITY && n <= 2 * CAPACITY);
    assertEquals(medium.length, 2 * LONG_STEPS);
    const short = lengths.filter((n) => n <= CAPACITY);
    assert(short.every((n) => n >= 64), `short ${short}`);
    assert(new Set(short).size > short.length / 2, "short lengths spread out");
    // The paper's Wikipedia proportions, scaled (bench/peers_long.ts): most tokens in sequences that fit one device.
    const tokens = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const shortShare = tokens(short) / tokens(lengths);
    assert(shortShare > 0.5 && shortShare < 0.75, `short sequences hold ${(shortShare * 100).toFixed(0)}% of tokens`);
    const dir = await Deno.makeTempDir({ prefix: "fxpeers-corpus-" });
    try {
      await writeLongTailCorpus(`${dir}/corpus`, lengths);
      const ds = await readDatasetIndex(`${dir}/corpus`);
      assertEquals([...ds.lengths], lengths);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);

const hostsOk = canCreateTestHosts();
Deno.test({
  name: "peers workload b: Ulysses SP=2 over 2 test hosts (one torchrun agent per namespace) gives DDP's losses",
  ignore: missing !== undefined || !hostsOk.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxpeers-hosts-" });
    const th = await startTestHosts({ count: 2 });
    try {
      const job = await tinyJob(dir, [[97, 40], [200, 31]], 777);
      const ddp = await peer("peers_ddp.py", job, dir);
      const hosts = th.hosts.map((h) => ({ netns: h.netns, ip: h.ip }));
      const ulysses = await peer("peers_ulysses.py", job, dir, ["plain", "2"], { hosts, perNode: 1 });
      assertEquals(ulysses.losses.length, 2);
      for (const [i, l] of ddp.losses.entries()) {
        assert(
          Math.abs(l - ulysses.losses[i]) < 1e-4,
          `step ${i + 1}: DDP ${l}, Ulysses over hosts ${ulysses.losses[i]}`,
        );
      }
    } finally {
      await th.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
