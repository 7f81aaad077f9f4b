# How the executor trains its model, with PyTorch's own stack as torchtitan uses it:
#   - data parallelism over ALL ranks of the run, whatever the step's SP groups: one of the two ZeRO strategies of
#     zero.py (ZeRO-0 replicas under DistributedDataParallel, ZeRO-1/2/3 FSDP2 shards);
#   - precision: "bf16" computes in bfloat16 with float32 master weights and float32 gradient reduction (FSDP2's
#     MixedPrecisionPolicy under ZeRO; autocast under DDP and on one rank), "fp32" everywhere in float32;
#   - gradients are SUMMED over ranks (each rank's loss is already scaled by 1/globalTokens), clipped by the global
#     norm (clip_grad_norm_, DTensor-aware), and applied by torch.optim.AdamW (fused on CUDA, foreach elsewhere) with
#     weight decay on matrices and embeddings only.
# The model is built on the meta device and each rank materialises only what it holds (its FSDP shards under ZeRO).
# Checkpoints: dcp_checkpoint.py saves and loads the model and optimizer through torch.distributed.checkpoint.
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from .causal_lm import CausalLm, Source, fill
from .param_layout import ParamLayout
from .zero import Fsdp2Shards, Replicas

PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class AdamWConfig:
    """The init message's optimizer block."""

    weight_decay: float
    grad_clip: float
    beta1: float
    beta2: float
    eps: float


class Trainer:
    """The model wrapped for data parallelism and its optimizer."""

    def __init__(self, model: CausalLm, layout: ParamLayout, device: torch.device, world_size: int, zero_stage: int,
                 precision: str, opt: AdamWConfig, get: Source, kernel: Any = None) -> None:
        """`model` on the meta device; `get(layout name, module name, rows)` gives each tensor (the rows of dim 0
        this rank holds, on the host) to start from; `kernel`: the run's AttentionKernel, reused for DDP's settling
        backward (a new one would repeat its start-up self-check on a GPU)."""
        if precision not in PRECISIONS:
            raise ValueError(f"training.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.inner = model
        self.layout = layout
        self.device = device
        self.dtype = PRECISIONS[precision]
        self.opt_cfg = opt
        # ZeRO shards over the process group (one rank too, when one exists: benchmarks of the FSDP2 path).
        self.zero: Replicas | Fsdp2Shards = (
            Fsdp2Shards(world_size, device, self.dtype, zero_stage)
            if zero_stage > 0 and (world_size > 1 or dist.is_initialized()) else Replicas(world_size, device))
        self.zero.prepare(model)
        model.to_empty(device=device)
        model.after_to_empty(device)
        fill(model, layout, get, self.zero.rows, self.zero.place)
        self.module: nn.Module = self.zero.wrap(model)
        self.params = [p for _, _, p in model.named_layout_params(layout)]
        decay = [p for s, p in zip(layout.slices, self.params) if s.decay]
        no_decay = [p for s, p in zip(layout.slices, self.params) if not s.decay]
        kw: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
        self.optim = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=0.0, betas=(opt.beta1, opt.beta2), eps=opt.eps, **kw)
        if self.zero.settles:
            self._settle_ddp_buckets(kernel)

    @property
    def sharded(self) -> bool:
        """Whether this rank holds shards (ZeRO >= 1) rather than a replica."""
        return self.zero.sharded

    def _settle_ddp_buckets(self, kernel: Any = None) -> None:
        """
        DDP rebuilds its gradient buckets once, after the first backward, in the order the gradients became ready;
        gloo's all-reduce sums each element in an order that depends on where it lies in its bucket. So that a
        resumed run reduces exactly as an uninterrupted one (bit-identical resume), every DDP here takes that first
        backward at start: one token without a target (zero loss, zero gradients), then the gradients are dropped.
        """
        from .attention import AttentionKernel, Segments, UlyssesContext

        sh = self.inner.shape
        if kernel is None:
            kernel = AttentionKernel(self.device, self.dtype, sh.heads, sh.kv_heads or sh.heads,
                                     sh.head_dim or sh.hidden // sh.heads)
        one = torch.zeros(1, dtype=torch.int64, device=self.device)
        with self.autocast():
            loss = self.module(one, one, one - 1, UlyssesContext(None, 1, Segments([0, 1]), kernel))
        loss.backward()
        self.zero_grad()

    # ---------- a step ----------

    def zero_grad(self) -> None:
        self.optim.zero_grad(set_to_none=True)

    def autocast(self) -> Any:
        """Autocast to the compute dtype where FSDP2's policy does not cast (DDP, one rank)."""
        if self.dtype == torch.float32 or not self.zero.autocasts:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def sync(self, last: bool) -> Any:
        """Gradient synchronisation only in the step's last backward (DDP's no_sync before)."""
        return self.zero.sync(last)

    def clip(self) -> torch.Tensor:
        """Clips by the global gradient norm; returns the norm before clipping (a 0-d float32 tensor)."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        clip = self.opt_cfg.grad_clip if self.opt_cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip, foreach=True)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return norm

    def step(self, lr: float) -> None:
        """One AdamW step at learning rate `lr`."""
        for g in self.optim.param_groups:
            g["lr"] = lr
        self.optim.step()

    def model_state_bytes(self) -> int:
        """This rank's parameters, gradients and both AdamW moments, in float32 (its shards under ZeRO)."""
        return 16 * sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in self.params)
