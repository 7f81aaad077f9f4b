// The peers of `deno task bench --only peers` compute what flexsp computes: plain PyTorch DDP and the plain-PyTorch
// Ulysses SP at degrees 2 and 1 (bench/peers_ddp.py, bench/peers_ulysses.py under torchrun, 2 gloo ranks; at degree 1
// each rank is an SP group of its own and takes its LPT share of the sequences) train the same small llama on
// the same sequences (odd lengths included, which Ulysses pads) to the same losses, step after step, so that the
// bench compares equal work.

import { makeModel, peer, type PeerJob } from "../../bench/peers.ts";
import { pythonImportFailure } from "../python_probe.ts";
import { assert } from "../assert.ts";

const missing = await pythonImportFailure("torch, transformers");
if (missing) console.log(`skipping the peers test: python3 cannot import torch and transformers (${missing})`);

Deno.test({
  name: "peers: DDP and Ulysses SP=2 and SP=1 give the same losses on the same sequences over 3 steps",
  ignore: missing !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "fxpeers-" });
    try {
      const shape = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 256, maxSeq: 256 };
      await makeModel(`${dir}/model`, { ...shape, ropeTheta: 10000, normEps: 1e-5 });
      let x = 12345;
      const token = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % 256;
      const lengths = [[97, 40, 13, 64], [200, 7, 31, 50], [5, 120, 77, 18]];
      const job: PeerJob = {
        model: `${dir}/model`,
        steps: lengths.map((ls) => ls.map((n) => Array.from({ length: n }, token))),
        lrs: [1e-2, 1e-2, 1e-2],
        weight_decay: 0.01,
        grad_clip: 1,
        seed: 1,
        threads: 1,
        cpus: null,
      };
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
