# The executor's error classes, and how one becomes the protocol's `error` event (core/protocol.ts): a Refusal is
# reported with fatal false (nothing ran, the executor goes on); a FatalError with fatal true (the process exits),
# and with echo true when it only repeats another rank's failure noticed over the data plane (a peer that
# disconnected or aborted its communicators mid-collective), so the orchestrator looks for the root cause elsewhere.
from __future__ import annotations

import re


class Refusal(ValueError):
    """A command refused before it changed anything (a bad plan, request or checkpoint): `error` with fatal false."""


class FatalError(Exception):
    """An error that makes the executor unusable (init, rendezvous or mid-step failures): `error` with fatal true.
    `echo`: it only repeats another rank's failure noticed over the data plane."""

    def __init__(self, message: str, echo: bool = False) -> None:
        super().__init__(message)
        self.echo = echo


#: Words of a collective's error that mean a peer went away or aborted (gloo, NCCL, the store's sockets).
_PEER_WORDS = ("connection", "closed", "reset", "peer", "broken pipe", "timed out", "timeout", "abort",
               "ncclremoteerror", "socket")


def peer_failure(e: BaseException) -> tuple[str, bool]:
    """A collective's error in one line, and whether it says that a peer disconnected or aborted (an echo): the first
    line that says so (an error raised through a DDP hook's future ends in traceback frames, skipped), else its last
    line."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
    for ln in lines:
        if not re.search(r"\.py[(\":]", ln) and any(w in ln.lower() for w in _PEER_WORDS):
            return f"a peer rank disconnected or aborted ({ln[:400]})", True
    return lines[-1][:400], False


def error_event(rank: int, e: BaseException) -> dict[str, object]:
    """The `error` event of an exception that ended a command."""
    fatal = isinstance(e, FatalError)
    echo = isinstance(e, FatalError) and e.echo
    return {"type": "error", "rank": rank, "message": str(e) or type(e).__name__, "fatal": fatal, "echo": echo}
