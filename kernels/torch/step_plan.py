# Validation of an executor step plan, ported from kernels/step_plan.ts with the same messages: every rank checks
# the WHOLE plan the same way, so a bad plan (a degree that does not divide the heads, a rank in no group or in
# two, an over-long sequence) is refused by all ranks at once before any collective could hang. On top, every
# group of degree > 1 must be a block of the SP-group pool (aligned, power-of-two): nothing is created mid-step.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeGuard

from .errors import Refusal
from .model_shape import ModelShape


@dataclass
class MyGroup:
    """This rank's part of one micro-batch."""

    group: dict[str, Any]
    ranks: list[int]
    degree: int
    sp_rank: int


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def check_plan(
    plan: Any, rank: int, world_size: int, shape: ModelShape, in_pool: Callable[[list[int]], bool]
) -> list[MyGroup]:
    """Validates `plan` for a run of `world_size` ranks; returns this rank's group in every micro-batch."""
    step = plan.get("step") if isinstance(plan, dict) else None
    where = f"step plan {step if step is not None else 'undefined'}"
    if not isinstance(plan, dict) or not _is_int(step) or step < 0:
        raise Refusal(f"{where}: bad step number")
    mbs = plan.get("microBatches")
    if not isinstance(mbs, list) or not mbs:
        raise Refusal(f"{where}: needs at least one micro-batch")
    gt = plan.get("globalTokens")
    if not isinstance(gt, (int, float)) or isinstance(gt, bool) or not gt > 0:
        raise Refusal(f"{where}: globalTokens must be positive, got {gt}")
    lr = plan.get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not (lr >= 0 and lr != float("inf")):
        raise Refusal(f"{where}: bad learning rate {lr}")
    mine_all: list[MyGroup] = []
    for i, mb in enumerate(mbs):
        at = f"{where}, micro-batch {i}"
        if not isinstance(mb, dict) or not isinstance(mb.get("groups"), list):
            raise Refusal(f"{at}: missing groups")
        owner = [-1] * world_size
        mine: MyGroup | None = None
        for gi, g in enumerate(mb["groups"]):
            gat = f"{at}, group {gi}"
            ranks = g.get("ranks") if isinstance(g, dict) else None
            degree = g.get("degree") if isinstance(g, dict) else None
            if not isinstance(ranks, list) or not _is_int(degree) or degree < 1 or len(ranks) != degree:
                n = len(ranks) if isinstance(ranks, list) else "undefined"
                raise Refusal(f"{gat}: degree {degree} does not match its {n} ranks")
            if shape.heads % degree != 0:
                raise Refusal(
                    f"{gat}: SP degree {degree} does not divide the model's {shape.heads} attention heads "
                    "(Ulysses needs heads divisible by the degree)"
                )
            kv = shape.kv_heads or shape.heads
            if kv % degree != 0 and degree % kv != 0:
                raise Refusal(
                    f"{gat}: SP degree {degree} is incompatible with the model's {kv} K/V heads (Ulysses needs "
                    "K/V heads divisible by the degree, or the degree a multiple of them for replication)"
                )
            for k, r in enumerate(ranks):
                if not _is_int(r) or r < 0 or r >= world_size:
                    raise Refusal(f"{gat}: rank {r} outside [0, {world_size})")
                if owner[r] >= 0:
                    raise Refusal(f"{gat}: rank {r} is also in group {owner[r]}")
                owner[r] = gi
                if r == rank:
                    mine = MyGroup(g, ranks, degree, k)
            seqs = g.get("sequences")
            if not isinstance(seqs, list):
                raise Refusal(f"{gat}: missing sequences")
            for s in seqs:
                ln = s.get("length") if isinstance(s, dict) else None
                sid = s.get("id") if isinstance(s, dict) else None
                if not _is_int(ln) or ln < 1 or ln > shape.max_seq:
                    raise Refusal(f"{gat}: sequence {sid} has length {ln}; the model accepts 1..{shape.max_seq}")
                off = s.get("offset")
                if not _is_int(off) or off < 0:
                    raise Refusal(f"{gat}: sequence {sid} has bad offset")
            if degree > 1 and not in_pool(ranks):
                raise Refusal(
                    f"{gat}: ranks {ranks} are not an aligned power-of-two block of the SP-group pool "
                    f"(groups of degree d must be ranks [k·d, (k+1)·d) with d a power of two)"
                )
        if plan.get("scope") == "rank":
            # A rank-local plan (core/plan_scope.ts): only this rank's group; the orchestrator checked coverage.
            if mine is None:
                raise Refusal(f"{at}: rank {rank} is in no group of its plan")
            mine_all.append(mine)
            continue
        missing = [str(r) for r, o in enumerate(owner) if o < 0]
        if missing:
            raise Refusal(
                f"{at}: rank(s) {', '.join(missing)} are in no group (groups must cover all {world_size} ranks)"
            )
        assert mine is not None
        mine_all.append(mine)
    return mine_all
