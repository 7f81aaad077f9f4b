# Fault injection for tests (kernels/fault_injection.ts, ported): an environment variable `RANK:MODE` (e.g.
# FLEXSP_STEP_FAULT="1:exit") makes that one rank fail at a known point, so tests provoke a failure mid-operation
# without sleeping and killing from outside. FLEXSP_PROFILE_FAULT (profiling.py) and FLEXSP_STEP_FAULT (executor.py)
# use it, and FLEXSP_SAVE_FAULT (dcp_checkpoint.py: a SIGKILL while an asynchronous save is in flight).
from __future__ import annotations

import os


def injected_fault(variable: str, rank: int) -> str | None:
    """The fault mode `variable` asks of `rank` (`error` unless it says `exit`), or None when none."""
    spec = os.environ.get(variable)
    if not spec:
        return None
    r, _, mode = spec.partition(":")
    if not r.strip().lstrip("-").isdigit() or int(r) != rank:
        return None
    return "exit" if mode == "exit" else "error"
