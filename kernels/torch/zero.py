# The trainer's two ZeRO strategies, data parallel over ALL ranks of the run (regrouping for SP moves no
# parameters): `Replicas` (ZeRO-0: every rank holds the whole model; DistributedDataParallel over more than one rank,
# a bucketed all-reduce overlapped with the last micro-batch's backward) and `Fsdp2Shards` (ZeRO-1/2/3: FSDP2
# `fully_shard` per decoder layer plus the root; ZeRO-1/2 keep the parameters unsharded between forward and
# backward). Both SUM gradients over the ranks (each rank's loss is already scaled by 1/globalTokens).
from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch
import torch.distributed as dist
import torch.nn as nn

from .causal_lm import CausalLm


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _sum_hook(group: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: the SUM of the bucket over ranks (DDP's default averages)."""
    fut = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    summed: torch.futures.Future[torch.Tensor] = fut.then(lambda f: f.value()[0])
    return summed


class Replicas:
    """ZeRO-0: whole replicas, DDP over the ranks (none on one rank). The compute dtype comes from autocast."""

    #: Whether parameters, gradients and optimizer state are sharded over the ranks.
    sharded = False
    #: Whether the trainer autocasts to the compute dtype (FSDP2's policy casts by itself).
    autocasts = True

    def __init__(self, world_size: int, device: torch.device) -> None:
        self.world_size = world_size
        self.device = device
        self.ddp: nn.parallel.DistributedDataParallel | None = None

    def prepare(self, model: CausalLm) -> None:
        """Before the model is materialised: nothing for replicas."""

    def rows(self, p: nn.Parameter) -> tuple[int, int] | None:
        """The rows of dim 0 this rank holds: all of them (None)."""
        return None

    def place(self, part: torch.Tensor, p: nn.Parameter) -> torch.Tensor:
        """A rank's part (host) on the device."""
        return part.to(self.device)

    def wrap(self, model: CausalLm) -> nn.Module:
        """The module the trainer calls: DDP with the summing hook over more than one rank, else `model`."""
        if self.world_size == 1:
            return model
        self.ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False, init_sync=False)
        self.ddp.register_comm_hook(None, lambda state, bucket: _sum_hook(state, bucket))
        return self.ddp

    @property
    def settles(self) -> bool:
        """Whether the trainer takes one empty backward at start so that DDP builds its buckets then (trainer.py)."""
        return self.ddp is not None

    def sync(self, last: bool) -> ContextManager[Any]:
        """Gradient synchronisation only in the step's last backward (DDP's no_sync before)."""
        if self.ddp is not None and not last:
            return self.ddp.no_sync()
        return contextlib.nullcontext()


class Fsdp2Shards:
    """ZeRO-1/2/3: FSDP2 over a 1-D mesh of the ranks (one rank too, when a process group exists), float32 master
    weights and gradient reduction, the compute dtype from FSDP2's MixedPrecisionPolicy."""

    sharded = True
    autocasts = False
    settles = False

    def __init__(self, world_size: int, device: torch.device, dtype: torch.dtype, zero_stage: int) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self.device = device
        self.dtype = dtype
        self.zero_stage = zero_stage
        self.mesh = init_device_mesh(device.type, (world_size,))

    def prepare(self, model: CausalLm) -> None:
        """Shards each decoder layer and the root (on the meta device, before it is materialised)."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=self.dtype, reduce_dtype=torch.float32)
        units = [*model.blocks(), model]
        for u in units:
            fully_shard(u, mesh=self.mesh, mp_policy=mp, reshard_after_forward=self.zero_stage == 3)
        for u in units:
            u.set_gradient_divide_factor(1.0)  # type: ignore[operator]
            u.set_force_sum_reduction_for_comms(True)  # type: ignore[operator]  # gloo has no PREMUL_SUM

    def rows(self, p: nn.Parameter) -> tuple[int, int] | None:
        """The rows of dim 0 this rank holds: its FSDP2 shard (torch.chunk over the ranks: chunks of
        ceil(rows / ranks), the last ranks' possibly short or empty); all of a 0-d tensor."""
        if p.dim() == 0:
            return None
        n, r = self.mesh.size(), self.mesh.get_local_rank()
        size = -(-p.shape[0] // n)
        a = min(p.shape[0], r * size)
        return a, min(p.shape[0], a + size)

    def place(self, part: torch.Tensor, p: nn.Parameter) -> torch.Tensor:
        """A rank's part (host) on the device, zero-padded to the local shard's shape where FSDP2 pads it."""
        local = _local(p)
        if part.shape != local.shape:
            padded = torch.zeros(local.shape, dtype=part.dtype)
            padded[: part.shape[0]] = part
            part = padded
        return part.to(self.device)

    def wrap(self, model: CausalLm) -> nn.Module:
        """The sharded model itself."""
        return model

    def sync(self, last: bool) -> ContextManager[Any]:
        """FSDP2 reduces in every backward."""
        return contextlib.nullcontext()
