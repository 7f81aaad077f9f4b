# Packing an SP group's sequences into one token stream and cutting each SP rank's slice (kernels/packing.ts),
# and where the tokens come from (kernels/token_source.ts): the dataset token file (uint16/uint32 little-endian)
# or the deterministic synthetic source (token p of sequence `id` is (a + p·b) mod vocab, a and b from
# Prng(0x5eed, id)). Both are ported exactly so every executor kind trains on the same streams.
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from model import Prng


@dataclass
class PackedGroup:
    """The packed stream of one group, as every rank of the group sees it."""

    seq_len: int
    degree: int
    tokens: torch.Tensor  # int64 [seq_len]
    positions: torch.Tensor
    targets: torch.Tensor  # -1: no target
    #: Cumulative segment lengths (real sequences, then the padding segment if any).
    cu_seqlens: list[int]
    #: SP rank r holds tokens [bounds[r], bounds[r+1]).
    bounds: list[int]
    target_count: int


def pack_group(sequences: list[list[int]], degree: int, max_seq: int, vocab: int) -> PackedGroup:
    """Packs `sequences` for a group of `degree` ranks; pads to a multiple of the degree with an ignored segment."""
    if degree < 1:
        raise ValueError(f"packing: bad degree {degree}")
    real = 0
    for i, s in enumerate(sequences):
        if len(s) < 1:
            raise ValueError(f"packing: sequence {i} is empty")
        if len(s) > max_seq:
            raise ValueError(f"packing: sequence {i} has {len(s)} tokens, more than maxSeq {max_seq}")
        real += len(s)
    seq_len = max(degree, -(-real // degree) * degree)
    tokens = [0] * seq_len
    positions = [0] * seq_len
    targets = [-1] * seq_len
    cu = [0]
    o = 0
    target_count = 0
    for s in sequences:
        n = len(s)
        for t in s:
            if not 0 <= t < vocab:
                raise ValueError(f"packing: token {t} outside the vocabulary [0, {vocab})")
        tokens[o : o + n] = s
        positions[o : o + n] = range(n)
        targets[o : o + n - 1] = s[1:]
        target_count += n - 1
        o += n
        cu.append(o)
    if o < seq_len:
        positions[o:seq_len] = [(i - o) % max_seq for i in range(o, seq_len)]
        cu.append(seq_len)
    bounds = [r * seq_len // degree for r in range(degree + 1)]
    as_t = lambda xs: torch.tensor(xs, dtype=torch.int64)  # noqa: E731
    return PackedGroup(seq_len, degree, as_t(tokens), as_t(positions), as_t(targets), cu, bounds, target_count)


class TokenSource(Protocol):
    """Reads the tokens of sequences."""

    def read(self, seq: dict[str, Any]) -> list[int]: ...

    def close(self) -> None: ...


class SyntheticSource:
    """The synthetic source of the file header."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def read(self, seq: dict[str, Any]) -> list[int]:
        rng = Prng(0x5EED, int(seq["id"]))
        a = rng.below(self.vocab)
        b = 1 + rng.below(7)
        return [(a + p * b) % self.vocab for p in range(int(seq["length"]))]

    def close(self) -> None:
        pass


class FileSource:
    """A dataset token file (`token_bytes` 2 = uint16, 4 = uint32, little-endian)."""

    def __init__(self, path: str, token_bytes: int) -> None:
        if token_bytes not in (2, 4):
            raise ValueError(f"dataset: tokenBytes must be 2 or 4, got {token_bytes}")
        try:
            self.f = open(path, "rb")
        except OSError as e:
            raise ValueError(f"dataset: cannot open token file {path}: {e.strerror or e}") from None
        self.path = path
        self.token_bytes = token_bytes
        self.tokens = os.fstat(self.f.fileno()).st_size // token_bytes

    def read(self, seq: dict[str, Any]) -> list[int]:
        off, n = int(seq["offset"]), int(seq["length"])
        if not (off >= 0 and off + n <= self.tokens):
            raise ValueError(
                f"dataset: sequence {seq['id']} [{off}, {off + n}) is outside {self.path} ({self.tokens} tokens)"
            )
        self.f.seek(off * self.token_bytes)
        buf = self.f.read(n * self.token_bytes)
        if len(buf) != n * self.token_bytes:
            raise ValueError(f"dataset: {self.path} ended early reading sequence {seq['id']}")
        dtype = torch.int16 if self.token_bytes == 2 else torch.int32
        t = torch.frombuffer(bytearray(buf), dtype=dtype).to(torch.int64)
        t = t & (0xFFFF if self.token_bytes == 2 else 0xFFFFFFFF)  # unsigned (little-endian hosts only)
        return t.tolist()

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
