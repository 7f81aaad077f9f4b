# The executor's error classes, and how one becomes the protocol's `error` event (core/protocol.ts): a Refusal is
# reported with fatal false (nothing ran, the executor goes on); a FatalError with fatal true (the process exits),
# and with echo true when it only repeats another rank's failure noticed over the data plane (a peer that
# disconnected or aborted its communicators mid-collective), so the orchestrator looks for the root cause elsewhere.
from __future__ import annotations


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
    """The last line of a collective's error, and whether it says that a peer disconnected or aborted (an echo)."""
    msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:400]
    low = msg.lower()
    if any(w in low for w in _PEER_WORDS):
        return f"a peer rank disconnected or aborted ({msg})", True
    return msg, False


def error_event(rank: int, e: BaseException) -> dict[str, object]:
    """The `error` event of an exception that ended a command."""
    fatal = isinstance(e, FatalError)
    echo = isinstance(e, FatalError) and e.echo
    return {"type": "error", "rank": rank, "message": str(e) or type(e).__name__, "fatal": fatal, "echo": echo}
