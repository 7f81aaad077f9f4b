# The token loss without whole-stream float32 logits: cross-entropy over chunks of tokens, each chunk's logits
# computed, upcast to float32 and reduced inside a checkpointed function, so its backward recomputes them instead
# of saving them. Peak memory holds one chunk's logits (CHUNK_ELEMENTS float32 values), whatever tokens × vocab is.
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

#: Logit elements per chunk (32 Mi: 128 MiB in float32): 256 tokens of a 128K vocabulary, everything at once for
#: small vocabularies. FLEXSP_LOSS_CHUNK_ELEMENTS overrides it (tests).
CHUNK_ELEMENTS = 1 << 25


def _chunk_loss(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    logits = F.linear(h, w)
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    return F.cross_entropy(logits, t, ignore_index=-1, reduction="sum")


def chunk_tokens(vocab: int) -> int:
    """Tokens per chunk for a vocabulary."""
    elements = int(os.environ.get("FLEXSP_LOSS_CHUNK_ELEMENTS", CHUNK_ELEMENTS))
    return max(1, elements // vocab)


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ cross-entropy(hidden @ weightᵀ, targets) in float32 over tokens whose target is not -1; differentiable.
    hidden `[T, H]`, weight `[V, H]`, targets `[T]`."""
    T, V = hidden.shape[0], weight.shape[0]
    n = chunk_tokens(V)
    if T <= n:
        return _chunk_loss(hidden, weight, targets)
    total = hidden.new_zeros((), dtype=torch.float32)
    for a in range(0, T, n):
        b = min(T, a + n)
        total = total + checkpoint(_chunk_loss, hidden[a:b], weight, targets[a:b], use_reentrant=False)
    return total
