# The executor side of core/protocol.ts: newline-delimited JSON, version-stamped, validated on receipt with the
# same schemas and messages as `checkMessage` (only the executor-command channel is read here). A malformed line
# becomes an error string for the caller to report; it never raises.
from __future__ import annotations

import json
from typing import Any

#: Bumped on any incompatible change (core/protocol.ts PROTOCOL_VERSION).
PROTOCOL_VERSION = 1

_COMMANDS: dict[str, dict[str, str]] = {
    "init": {"init": "object"},
    "peers": {"endpoints": "array"},
    "step": {"plan": "object"},
    "save": {"path": "string"},
    "load": {"path": "string"},
    "shutdown": {},
    "profile_compute": {"request": "object"},
    "profile_alltoall": {"request": "object"},
}
_EVENTS = {
    "ready", "connected", "step_progress", "step_done", "saved", "loaded", "error", "profile_compute_done",
    "profile_alltoall_done",
}


def _type_of(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "undefined"


def parse_command(line: str, source: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parses one executor-command line: (message, None) or (None, why it is refused)."""
    try:
        m = json.loads(line)
    except (json.JSONDecodeError, ValueError):
        return None, f"{source}: not JSON: {line[:120]}"
    err = _check(m)
    if err:
        return None, f"{source}: {err}: {line[:120]}"
    return m, None


def _check(m: Any) -> str | None:
    if not isinstance(m, dict):
        return "not a JSON object"
    if "v" in m and m["v"] != PROTOCOL_VERSION:
        return f"protocol version {m['v']}, expected {PROTOCOL_VERSION}"
    t = m.get("type")
    if not isinstance(t, str):
        return 'missing "type"'
    schema = _COMMANDS.get(t)
    if schema is None:
        if t in _EVENTS:
            return f'message "{t}" does not belong on the executor command channel'
        return f'unknown message type "{t}"'
    for k, want in schema.items():
        if _type_of(m.get(k)) != want:
            return f'"{t}" needs {k}: {want}'
    return None


def _js(v: Any) -> Any:
    """NaN and ±Infinity become null, as JavaScript's JSON.stringify writes them."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if isinstance(v, dict):
        return {k: _js(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_js(x) for x in v]
    return v


def encode_event(ev: dict[str, Any]) -> str:
    """One protocol line (version stamp first, trailing newline; non-finite numbers as null, like JSON.stringify)."""
    msg = {"v": PROTOCOL_VERSION, **ev}
    try:
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_js(msg), separators=(",", ":"), allow_nan=False)
    return text + "\n"
