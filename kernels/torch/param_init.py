# The seeded initial parameters: "exact" is bit-identical to the TypeScript executors' GPT-2 initialisation
# (kernels/model.ts initParams, one Prng stream per slice), "fast" draws the same distributions from torch's
# generator; one slice at a time, so no rank builds the whole model on the host.
from __future__ import annotations

import math
import os

import torch

from .param_layout import ParamLayout
from .prng import Prng

#: Standard deviation of the normal initialisation (GPT-2).
INIT_STD = 0.02


#: Above this many parameters the default initialisation is "fast" (the exact stream runs in Python, about
#: half a microsecond per value: fine for every model the TypeScript executors can train, minutes for billions).
EXACT_INIT_LIMIT = 16_000_000


def init_mode(layout: ParamLayout) -> str:
    """ "exact" or "fast": FLEXSP_TORCH_INIT when set, else exact up to EXACT_INIT_LIMIT parameters."""
    mode = os.environ.get("FLEXSP_TORCH_INIT", "")
    if mode not in ("", "exact", "fast"):
        raise ValueError(f'FLEXSP_TORCH_INIT must be "exact" or "fast", got "{mode}"')
    return mode or ("exact" if layout.count <= EXACT_INIT_LIMIT else "fast")


def init_params(layout: ParamLayout, seed: int, mode: str = "exact",
                device: torch.device | None = None) -> torch.Tensor:
    """
    The seeded initial parameters as a flat float32 tensor of `layout.total` values (on `device`, default CPU).
    "exact" is bit-identical to `initParams` of kernels/model.ts: weights N(0, 0.02), residual projections
    N(0, 0.02/sqrt(2·layers)), biases 0, LayerNorm gains 1, each slice from its own stream (seed, slice index + 1).
    "fast" draws the same distributions from torch's generator of `device` seeded by (seed, slice index): identical
    on every rank of a device type and on every run, seconds for billions of parameters, but not the TypeScript
    executors' bits.
    """
    dev = device or torch.device("cpu")
    out = torch.zeros(layout.total, dtype=torch.float32, device=dev)
    for i, s in enumerate(layout.slices):
        out[s.offset : s.offset + s.length] = init_slice(layout, i, seed, mode, dev)
    return out


def init_slice(layout: ParamLayout, i: int, seed: int, mode: str = "exact",
               device: torch.device | None = None) -> torch.Tensor:
    """Slice `i` of `init_params` on its own (flat float32): each slice has its own stream, so a rank can start from
    one tensor at a time instead of the whole model."""
    if mode not in ("exact", "fast"):
        raise ValueError(f"init_params: unknown mode {mode}")
    dev = device or torch.device("cpu")
    s = layout.slices[i]
    dst = torch.zeros(s.length, dtype=torch.float32, device=dev)
    if s.init == "ones":
        dst.fill_(1)
    elif s.init in ("normal", "normal_residual"):
        std = INIT_STD if s.init == "normal" else INIT_STD / math.sqrt(2 * layout.shape.layers)
        if mode == "fast":
            g = torch.Generator(device=dev).manual_seed(((seed % (1 << 31)) << 20) + i + 1)
            torch.randn(s.length, generator=g, dtype=torch.float32, out=dst)
            dst.mul_(std)
        else:
            dst.copy_(torch.tensor(Prng(seed, i + 1).normals(s.length, std), dtype=torch.float64).to(dev))
    return dst
