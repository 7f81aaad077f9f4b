# ZeRO-3 for the llama family with FSDP2 (`fully_shard`, torch >= 2.4) over ALL ranks of the run (planner.zero_stage
# 3; the paper's setting: regrouping SP degrees between micro-batches moves no parameters). Every block is one FSDP
# unit, the embeddings, final norm and head are the root's; each rank holds 1/N of every parameter, of its gradient
# and of the AdamW moments. Every rank runs one group per micro-batch, so all ranks issue the same FSDP all-gathers
# and reduce-scatters in the same order, whatever their SP groups.
#
# Gradients are summed, not averaged (gradient divide factor 1: each rank's loss is already scaled by
# 1/globalTokens, as in the replicated path). Clipping uses the global norm (local Σg² all-reduced), AdamW is
# optim.adamw on each local shard, so ZeRO-3 and ZeRO-0 take the same steps.
#
# Parameters are created on the meta device, sharded, then materialised shard by shard: every full tensor (from
# the seeded initialisation, a safetensors file or a checkpoint) lives on the host only while its shard is cut
# out of it; no rank holds a full copy on the GPU. Checkpoints gather one tensor at a time to the host and are
# byte for byte the replicated path's format, so runs move between zero stages.
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from llama import Llama
from model import ParamLayout
from optim import AdamWConfig, adamw, clip_factor

_PARAMS = "\u00b7"  # parameter names may not contain ".": HF names are stored with "·"


class _Params(nn.Module):
    """One FSDP unit: the parameters whose full names start with one prefix."""

    def __init__(self, names: list[str], shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.names = names
        for n in names:
            self.register_parameter(n.replace(".", _PARAMS), nn.Parameter(torch.empty(shapes[n], device="meta")))

    def weights(self) -> dict[str, torch.Tensor]:
        """Full name -> parameter (unsharded while this unit is inside its forward)."""
        return {n: getattr(self, n.replace(".", _PARAMS)) for n in self.names}


class _Block(_Params):
    def __init__(self, i: int, math: Llama, names: list[str], shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__(names, shapes)
        self.i = i
        self.math = [math]  # not a submodule

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cu: list[int], group: Any,
                degree: int) -> torch.Tensor:
        return self.math[0].block(self.i, x, cos, sin, cu, group, degree, self.weights())


class _Root(_Params):
    def __init__(self, math: Llama, names: list[str], shapes: dict[str, tuple[int, ...]],
                 blocks: list[_Block]) -> None:
        super().__init__(names, shapes)
        self.blocks = nn.ModuleList(blocks)
        self.math = [math]

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, cu: list[int],
                group: Any, degree: int) -> torch.Tensor:
        m, w = self.math[0], self.weights()
        x = m.embed(tokens, w)
        cos, sin = m.rope(positions, x.dtype)
        for b in self.blocks:
            x = b(x, cos, sin, cu, group, degree)
        logits = m.head(x, w)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.nn.functional.cross_entropy(logits, targets, ignore_index=-1, reduction="none")


class Zero3Llama:
    """The llama model, its gradients and AdamW moments sharded over all ranks with FSDP2."""

    def __init__(self, layout: ParamLayout, world_size: int, device: torch.device,
                 log: Callable[[str], None] = lambda _: None, checkpointing: str = "none") -> None:
        if not dist.is_initialized():
            raise RuntimeError("ZeRO-3: the process group is not initialised")
        self.layout = layout
        self.device = device
        self.math = Llama(layout, None, None, log, checkpointing, device=device)
        self.attention = self.math.attention
        shapes = {s.name: s.shape for s in layout.slices}
        per_layer: dict[int, list[str]] = {}
        rest: list[str] = []
        for s in layout.slices:
            if s.name.startswith("model.layers."):
                per_layer.setdefault(int(s.name.split(".")[2]), []).append(s.name)
            else:
                rest.append(s.name)
        blocks = [_Block(i, self.math, per_layer[i], shapes) for i in sorted(per_layer)]
        self.root = _Root(self.math, rest, shapes, blocks)
        self.mesh = init_device_mesh(device.type, (world_size,))
        for b in blocks:
            fully_shard(b, mesh=self.mesh)
        fully_shard(self.root, mesh=self.mesh)
        for mod in [*blocks, self.root]:
            mod.set_gradient_divide_factor(1.0)  # type: ignore[operator]
            mod.set_force_sum_reduction_for_comms(True)  # type: ignore[operator]  # gloo has no PREMUL_SUM
        self.root.to_empty(device=device)
        self.by_name: dict[str, nn.Parameter] = {}
        for mod in [*blocks, self.root]:
            for n in mod.names:
                self.by_name[n] = getattr(mod, n.replace(".", _PARAMS))
        self.params = [self.by_name[s.name] for s in layout.slices]
        self.decay = [s.decay for s in layout.slices]
        self.m = [torch.zeros_like(self._local(p)) for p in self.params]
        self.v = [torch.zeros_like(self._local(p)) for p in self.params]

    @staticmethod
    def _local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if isinstance(t, DTensor) else t

    def local_elements(self) -> int:
        """Parameter elements this rank holds."""
        return sum(self._local(p).numel() for p in self.params)

    def _shard_of(self, full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """
        This rank's dim-0 shard of a full host tensor in FSDP2's layout (torch.chunk over the ranks), cut on the host
        so only the shard reaches the device; no communication. Falls back to distribute_tensor if the chunk does
        not have the local shard's shape.
        """
        n, r = self.mesh.size(), self.mesh.get_local_rank()
        chunks = torch.chunk(full, n, dim=0)
        part = chunks[r] if r < len(chunks) else full[:0]
        if part.shape == like.shape:
            return part.to(self.device)
        return distribute_tensor(full.to(self.device), self.mesh, [Shard(0)], src_data_rank=None).to_local()

    @torch.no_grad()
    def load_full(self, get: Callable[[str], torch.Tensor], m: Callable[[str], torch.Tensor] | None = None,
                  v: Callable[[str], torch.Tensor] | None = None) -> None:
        """Fills every shard from full host tensors, one tensor at a time (`get(name)`; optional moments)."""
        for i, s in enumerate(self.layout.slices):
            local = self._local(self.params[i])
            local.copy_(self._shard_of(get(s.name).reshape(s.shape).float(), local))
            if m is not None and v is not None:
                self.m[i].copy_(self._shard_of(m(s.name).reshape(s.shape).float(), local))
                self.v[i].copy_(self._shard_of(v(s.name).reshape(s.shape).float(), local))
            else:
                self.m[i].zero_()
                self.v[i].zero_()

    def load_flat(self, params: torch.Tensor, m: torch.Tensor | None = None, v: torch.Tensor | None = None) -> None:
        """Fills every shard from flat host buffers in the layout (an initialisation or a checkpoint)."""
        by = self.layout.by_name

        def view(buf: torch.Tensor) -> Callable[[str], torch.Tensor]:
            return lambda n: buf[by[n].offset : by[n].offset + by[n].length]

        self.load_full(view(params), view(m) if m is not None else None, view(v) if v is not None else None)

    def _full(self, p: nn.Parameter, local: torch.Tensor) -> torch.Tensor:
        dt = DTensor.from_local(local, self.mesh, [Shard(0)], run_check=False, shape=p.shape, stride=p.stride())
        return dt.full_tensor().to("cpu", torch.float32)

    @torch.no_grad()
    def gather_flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full parameters and moments as flat host buffers (every rank; one tensor gathered at a time)."""
        out = [torch.zeros(self.layout.total, dtype=torch.float32) for _ in range(3)]
        for i, s in enumerate(self.layout.slices):
            p = self.params[i]
            for buf, local in zip(out, (self._local(p), self.m[i], self.v[i])):
                buf[s.offset : s.offset + s.length] = self._full(p, local).reshape(-1)
        return out[0], out[1], out[2]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, cu: list[int],
                group: Any, degree: int) -> torch.Tensor:
        """Per-token losses of this rank's slice; differentiable (FSDP gathers and reduce-scatters around it)."""
        return self.root(tokens, positions, targets, cu, group, degree)

    def grad_norm(self) -> float:
        """The global gradient norm: local Σg² in float64, summed over all ranks."""
        total = torch.zeros(1, dtype=torch.float64, device=self.device)
        for p in self.params:
            if p.grad is not None:
                g = self._local(p.grad).double()
                total += (g * g).sum()
        dist.all_reduce(total)
        return float(total.item()) ** 0.5

    @torch.no_grad()
    def apply(self, lr: float, opt: AdamWConfig, norm: float, step: int) -> None:
        """AdamW step number `step` (from 1) on every local shard (the replicated path's arithmetic)."""
        clip = clip_factor(norm, opt.grad_clip)
        for i, p in enumerate(self.params):
            local = self._local(p)
            g = self._local(p.grad) if p.grad is not None else torch.zeros_like(local)
            adamw(local.view(-1), g.reshape(-1), self.m[i].view(-1), self.v[i].view(-1), lr, opt,
                  opt.weight_decay if self.decay[i] else 0.0, step, clip)
