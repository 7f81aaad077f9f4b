# Benchmark peer, written for `deno task bench --only peers` (bench/peers.ts), not part of flexsp: fixed-degree
# Ulysses sequence parallelism (DeepSpeed-Ulysses) as a user would run it: SP groups of P consecutive ranks (default:
# all of them), the step's sequences spread over the groups (longest processing time first, by tokens), each
# sequence split over its group (rank r of the group holds tokens [r·S/P, (r+1)·S/P), padded to a multiple of P with
# an ignored token at the end); in each attention layer an all-to-all turns "local tokens, all heads" into "all tokens,
# heads/P", SDPA runs causally over the whole sequence, and an all-to-all turns it back. The attention is plugged into
# transformers' LlamaForCausalLM through its AttentionInterface. The all-to-alls are DeepSpeed's DistributedAttention
# (deepspeed.sequence.layer) when `import deepspeed` works, else a minimal plain-PyTorch equivalent
# (torch.distributed.nn.functional.all_to_all_single, differentiable) written here for the comparison. The gradients
# of the replicated parameters are all-reduced by DistributedDataParallel (no_sync until the step's last sequence);
# the all-to-alls use a process group of their own.
#
# usage: python -m torch.distributed.run --nproc-per-node 2 bench/peers_ulysses.py JOB.json OUT.json
#        [auto|plain|deepspeed [DEGREE]]
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_to_all_single
from torch.nn.parallel import DistributedDataParallel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from peers_common import finish, load_model, lpt, read_job, start, train


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, module: torch.nn.Module,
                    scaling: float | None) -> torch.Tensor:
    """Causal SDPA over the whole sequence on this rank's heads: [B, S, h, D] in and out (GQA as transformers does)."""
    out, _ = sdpa_attention_forward(module, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None,
                                    scaling=scaling, is_causal=True)
    return out


class PlainUlysses:
    """DistributedAttention's two all-to-alls in plain PyTorch, batch-first layout [B, S, H, D]."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group
        self.p = dist.get_world_size(group)

    def _a2a(self, x: torch.Tensor) -> torch.Tensor:
        return all_to_all_single(torch.empty_like(x), x, group=self.group)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, _batch_dim: int, **kw: Any) -> torch.Tensor:
        p = self.p

        def to_heads(x: torch.Tensor) -> torch.Tensor:  # [B, S/P, H, D] -> [B, S, H/P, D]
            b, s, h, d = x.shape
            y = self._a2a(x.reshape(b, s, p, h // p, d).permute(2, 0, 1, 3, 4).contiguous())
            return y.permute(1, 0, 2, 3, 4).reshape(b, p * s, h // p, d)

        out = local_attention(to_heads(q), to_heads(k), to_heads(v), **kw)
        b, s, h, d = out.shape  # -> [B, S/P, H, D]
        y = self._a2a(out.reshape(b, p, s // p, h, d).permute(1, 0, 2, 3, 4).contiguous())
        return y.permute(1, 2, 0, 3, 4).reshape(b, s // p, p * h, d)


def main() -> int:
    job = read_job(sys.argv[1])
    want = sys.argv[3] if len(sys.argv) > 3 else "auto"
    rank, world = start(job)
    degree = int(sys.argv[4]) if len(sys.argv) > 4 else world
    if degree < 1 or world % degree:
        raise SystemExit(f"SP degree {degree} does not divide the {world} ranks")
    # Every rank takes part in creating every group; each keeps its own.
    groups = [dist.new_group(list(range(g * degree, (g + 1) * degree))) for g in range(world // degree)]
    group, me = groups[rank // degree], rank % degree
    impl = "plain"
    dist_attn: Callable[..., torch.Tensor] = PlainUlysses(group)
    if want in ("auto", "deepspeed"):
        try:
            import deepspeed
            from deepspeed.sequence.layer import DistributedAttention

            deepspeed.init_distributed(dist_backend="gloo")
            ds = DistributedAttention(local_attention, group, scatter_idx=2, gather_idx=1)  # type: ignore[arg-type]
            dist_attn, impl = ds, "deepspeed"
        except Exception as e:  # noqa: BLE001 -- any failure to import or start DeepSpeed means the plain fallback
            if want == "deepspeed":
                raise
            why = f"{type(e).__name__}: {e}"
            print(f"peers_ulysses: DeepSpeed unavailable ({why}); plain PyTorch Ulysses", file=sys.stderr)

    def ulysses(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                _mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
        # transformers hands [B, H, S/P, D] (after RoPE at the global positions); it wants [B, S/P, H, D] back.
        out = dist_attn(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), 0, module=module,
                        scaling=kwargs.get("scaling"))
        return out, None

    AttentionInterface.register("ulysses", ulysses)
    model = DistributedDataParallel(load_model(job, "ulysses"))

    def micro(_step: int, seqs: list[list[int]], targets: int) -> list[tuple[Callable[[], torch.Tensor], bool]]:
        ours = [seqs[i] for i in lpt([len(q) for q in seqs], world // degree)[rank // degree]]
        if not ours:
            raise SystemExit(f"SP group of rank {rank} has no sequence in a step of {len(seqs)}: use a larger batch")

        def loss_of(ids: list[int]) -> Callable[[], torch.Tensor]:
            def run() -> torch.Tensor:
                n = len(ids)
                padded = -(-n // degree) * degree
                x = torch.tensor(ids + [0] * (padded - n))
                labels = torch.full((padded,), -100)
                labels[: n - 1] = x[1:n]
                per = padded // degree
                mine = slice(me * per, (me + 1) * per)
                pos = torch.arange(padded)[mine].unsqueeze(0)
                logits = model(input_ids=x[mine].unsqueeze(0), position_ids=pos).logits[0]
                return F.cross_entropy(logits, labels[mine], reduction="sum", ignore_index=-100) * (world / targets)

            return run

        return [(loss_of(q), k == len(ours) - 1) for k, q in enumerate(ours)]

    finish(rank, sys.argv[2], f"ulysses-{impl}", train(job, model, micro))
    return 0


if __name__ == "__main__":
    sys.exit(main())
