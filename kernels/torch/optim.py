# Gradient clipping and AdamW exactly as the TypeScript backends do them (kernels/cpu/adamw.ts): the global norm
# sqrt(Σ g²) in float64, clip factor gradClip/(norm + 1e-6) when the norm exceeds gradClip, and per element,
# in float64 and rounded to float32 once: m = β1·m + (1−β1)·g·c, v = β2·v + (1−β2)·(g·c)²,
# p = p·(1 − lr·wd) − lr·(m/bc1)/(sqrt(v/bc2) + eps), with weight decay on matrices and embeddings only.
# Chunked, so the float64 temporaries stay small on billion-parameter buffers.
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CHUNK = 1 << 22


@dataclass
class AdamWConfig:
    """The init message's optimizer block."""

    weight_decay: float
    grad_clip: float
    beta1: float
    beta2: float
    eps: float


def sum_squares(g: torch.Tensor, ranges: list[tuple[int, int]]) -> float:
    """Σ g² over `ranges` of the flat tensor, accumulated in float64."""
    total = torch.zeros((), dtype=torch.float64, device=g.device)
    for lo, hi in ranges:
        for a in range(lo, hi, CHUNK):
            x = g[a : min(hi, a + CHUNK)].double()
            total += torch.dot(x, x)
    return float(total.item())


def clip_factor(norm: float, grad_clip: float) -> float:
    """The factor every gradient is multiplied by before the update."""
    return grad_clip / (norm + 1e-6) if grad_clip > 0 and norm > grad_clip else 1.0


@torch.no_grad()
def adamw(
    p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, lr: float, cfg: AdamWConfig, wd: float,
    step: int, grad_scale: float,
) -> None:
    """In-place update of the float32 tensors `p`, `m`, `v` from `g` (all the same length)."""
    if step < 1:
        raise ValueError(f"adamw: step must be >= 1, got {step}")
    b1, b2 = cfg.beta1, cfg.beta2
    bc1, bc2 = 1 - math.pow(b1, step), 1 - math.pow(b2, step)
    decay = 1 - lr * wd
    n = g.numel()
    for a in range(0, n, CHUNK):
        e = min(n, a + CHUNK)
        gi = g[a:e].double() * grad_scale
        mi = m[a:e].double() * b1 + (1 - b1) * gi
        vi = v[a:e].double() * b2 + (1 - b2) * gi * gi
        m[a:e] = mi
        v[a:e] = vi
        p[a:e] = p[a:e].double() * decay - lr * (mi / bc1) / ((vi / bc2).sqrt() + cfg.eps)

