# Packing an SP group's sequences into one token stream and cutting each SP rank's slice (kernels/packing.ts; the
# executor packs only its own slice with `pack_slice`),
# and where the tokens come from (kernels/token_source.ts): the dataset token file (uint16/uint32 little-endian)
# or the deterministic synthetic source (token p of sequence `id` is (a + p·b) mod vocab, a and b from
# Prng(0x5eed, id)). Both are ported exactly so every executor kind trains on the same streams.
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .prng import Prng


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

    def as_t(xs: list[int]) -> torch.Tensor:
        return torch.tensor(xs, dtype=torch.int64)

    return PackedGroup(seq_len, degree, as_t(tokens), as_t(positions), as_t(targets), cu, bounds, target_count)


@dataclass
class PackedSlice:
    """One SP rank's slice of its group's packed stream (only what this rank holds), plus the stream's segments."""

    tokens: torch.Tensor  # int64 [hi - lo]
    positions: torch.Tensor
    targets: torch.Tensor  # -1: no target
    #: Cumulative segment lengths of the WHOLE stream (real sequences, then the padding segment if any).
    cu_seqlens: list[int]
    seq_len: int
    #: Targets of the whole group (every SP rank computes the same number from the lengths).
    target_count: int


def pack_slice(seqs: list[dict[str, Any]], source: "TokenSource", degree: int, sp_rank: int, max_seq: int,
               vocab: int) -> PackedSlice:
    """
    SP rank `sp_rank`'s slice of `pack_group` over the plan's sequences, reading only the tokens it holds (plus one
    beyond, for the last target) from `source`; vectorised. Equal to `pack_group(...)` cut at `bounds[sp_rank]`.
    """
    if degree < 1 or not 0 <= sp_rank < degree:
        raise ValueError(f"packing: bad degree {degree} / SP rank {sp_rank}")
    lengths = [int(s["length"]) for s in seqs]
    for i, n in enumerate(lengths):
        if n < 1:
            raise ValueError(f"packing: sequence {i} is empty")
        if n > max_seq:
            raise ValueError(f"packing: sequence {i} has {n} tokens, more than maxSeq {max_seq}")
    real = sum(lengths)
    seq_len = max(degree, -(-real // degree) * degree)
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    if real < seq_len:
        cu.append(seq_len)
    lo, hi = sp_rank * seq_len // degree, (sp_rank + 1) * seq_len // degree
    toks, poss, tgts = [], [], []
    for k, s in enumerate(seqs):
        start, n = cu[k], lengths[k]
        a, b = max(lo, start), min(hi, start + n)
        if a >= b:
            continue
        p0, p1 = a - start, b - start
        got = source.read_range(s, p0, min(p1 + 1, n))
        if got.numel() and (int(got.min()) < 0 or int(got.max()) >= vocab):
            bad = int(got[(got < 0) | (got >= vocab)][0])
            raise ValueError(f"packing: token {bad} outside the vocabulary [0, {vocab})")
        toks.append(got[: p1 - p0])
        poss.append(torch.arange(p0, p1, dtype=torch.int64))
        t = torch.full((p1 - p0,), -1, dtype=torch.int64)
        nt = min(p1, n - 1) - p0  # targets exist for positions < n - 1
        if nt > 0:
            t[:nt] = got[1 : nt + 1]
        tgts.append(t)
    if hi > real:  # the padding segment
        a = max(lo, real)
        toks.append(torch.zeros(hi - a, dtype=torch.int64))
        poss.append(torch.arange(a - real, hi - real, dtype=torch.int64) % max_seq)
        tgts.append(torch.full((hi - a,), -1, dtype=torch.int64))

    def cat(xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs) if xs else torch.zeros(0, dtype=torch.int64)

    return PackedSlice(cat(toks), cat(poss), cat(tgts), cu, seq_len, sum(n - 1 for n in lengths))


class TokenSource(Protocol):
    """Reads the tokens of sequences."""

    def read(self, seq: dict[str, Any]) -> list[int]: ...

    def read_range(self, seq: dict[str, Any], a: int, b: int) -> torch.Tensor: ...

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

    def read_range(self, seq: dict[str, Any], a: int, b: int) -> torch.Tensor:
        """Tokens [a, b) of the sequence as int64."""
        rng = Prng(0x5EED, int(seq["id"]))
        first = rng.below(self.vocab)
        step = 1 + rng.below(7)
        return (first + torch.arange(a, b, dtype=torch.int64) * step) % self.vocab

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
        return self.read_range(seq, 0, int(seq["length"])).tolist()

    def read_range(self, seq: dict[str, Any], a: int, b: int) -> torch.Tensor:
        """Tokens [a, b) of the sequence as int64."""
        off, n = int(seq["offset"]), int(seq["length"])
        if not (off >= 0 and off + n <= self.tokens):
            raise ValueError(
                f"dataset: sequence {seq['id']} [{off}, {off + n}) is outside {self.path} ({self.tokens} tokens)"
            )
        self.f.seek((off + a) * self.token_bytes)
        buf = self.f.read((b - a) * self.token_bytes)
        if len(buf) != (b - a) * self.token_bytes:
            raise ValueError(f"dataset: {self.path} ended early reading sequence {seq['id']}")
        dtype = torch.int16 if self.token_bytes == 2 else torch.int32
        t = torch.frombuffer(bytearray(buf), dtype=dtype).to(torch.int64) if buf else torch.zeros(0, dtype=torch.int64)
        return t & (0xFFFF if self.token_bytes == 2 else 0xFFFFFFFF)  # unsigned (little-endian hosts only)

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
