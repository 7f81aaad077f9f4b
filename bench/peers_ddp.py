# Benchmark peer, written for `deno task bench --only peers` (bench/peers.ts), not part of flexsp: plain PyTorch data
# parallelism as a user would write it. torchrun starts one process per rank; each wraps transformers'
# LlamaForCausalLM (SDPA attention) in DistributedDataParallel over gloo, takes its share of every step's sequences
# (longest processing time first, by tokens), runs them one at a time with gradient accumulation (no_sync until the
# last), then all-reduces the gradients, clips and steps AdamW. Loss and gradients: the mean next-token loss over the
# whole step, as flexsp computes it.
#
# usage: python -m torch.distributed.run --nproc-per-node 2 bench/peers_ddp.py JOB.json OUT.json
from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from peers_common import finish, load_model, lpt, read_job, start, train


def main() -> int:
    job = read_job(sys.argv[1])
    rank, world = start(job)
    model = DistributedDataParallel(load_model(job, "sdpa"))

    def micro(_step: int, seqs: list[list[int]], targets: int) -> list[tuple[Callable[[], torch.Tensor], bool]]:
        mine = lpt([len(s) for s in seqs], world)[rank]
        if not mine:
            raise SystemExit(f"rank {rank} has no sequence in a step of {len(seqs)}: use a larger global batch")

        def loss_of(ids: list[int]) -> Callable[[], torch.Tensor]:
            def run() -> torch.Tensor:
                x = torch.tensor([ids])
                logits = model(input_ids=x).logits[0, :-1]
                return F.cross_entropy(logits, x[0, 1:], reduction="sum") * (world / targets)

            return run

        return [(loss_of(seqs[i]), k == len(mine) - 1) for k, i in enumerate(mine)]

    finish(rank, sys.argv[2], "ddp", train(job, model, micro))
    return 0


if __name__ == "__main__":
    sys.exit(main())
