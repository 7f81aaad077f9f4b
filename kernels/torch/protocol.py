# The executor side of core/protocol.ts: newline-delimited JSON, version-stamped, validated on receipt with the
# same schemas and messages as `checkMessage` (only the executor-command channel is read here). A malformed line
# becomes an error string for the caller to report; it never raises.
from __future__ import annotations

import json
from typing import Any

#: Bumped on any incompatible change (core/protocol.ts PROTOCOL_VERSION).
PROTOCOL_VERSION = 1

#: The executor commands and the JSON type of each field (a trailing "?": the field may be absent), validated on
#: receipt: the rows of core/protocol.ts EXECUTOR_COMMANDS (tests/test_protocol_contract.py compares them).
COMMANDS: dict[str, dict[str, str]] = {
    "init": {"init": "object"},
    "peers": {"endpoints": "array"},
    "step": {"plan": "object"},
    "save": {"path": "string"},
    "load": {"path": "string", "sha256": "string?", "files": "array?"},
    "shutdown": {},
    "profile_compute": {"request": "object"},
    "profile_alltoall": {"request": "object"},
}
#: The executor events, every field of each and its JSON type ("?": optional in core/protocol.ts ExecutorEvent,
#: which the contract test compares field by field; the harness checks every event the executor sends against it).
EVENTS: dict[str, dict[str, str]] = {
    "ready": {"rank": "number", "kind": "string", "device": "string", "endpoint": "object", "attention": "string?",
              "precision": "string?"},
    "connected": {"rank": "number", "pool": "array?"},
    "step_done": {"rank": "number", "step": "number", "microBatches": "array", "ms": "number",
                  "gradNorm": "number?"},
    "step_progress": {"rank": "number", "step": "number", "microBatch": "number", "ms": "number"},
    "saved": {"rank": "number", "path": "string", "sha256": "string", "bytes": "number", "files": "array?",
              "peakHostBytes": "number?"},
    "loaded": {"rank": "number", "path": "string", "peakHostBytes": "number?"},
    "error": {"rank": "number", "message": "string", "fatal": "boolean", "echo": "boolean", "waitingFor": "number?"},
    "profile_compute_done": {"rank": "number", "result": "object"},
    "profile_alltoall_done": {"rank": "number", "result": "object"},
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
    schema = COMMANDS.get(t)
    if schema is None:
        if t in EVENTS:
            return f'message "{t}" does not belong on the executor command channel'
        return f'unknown message type "{t}"'
    return _check_fields(t, m, schema)


def _check_fields(t: str, m: dict[str, Any], schema: dict[str, str]) -> str | None:
    for k, want in schema.items():
        optional = want.endswith("?")
        base = want.rstrip("?")
        if optional and k not in m:
            continue
        if _type_of(m.get(k)) != base:
            return f'"{t}" needs {k}: {base}'
    return None


def check_event(m: Any) -> str | None:
    """Why `m` is not an executor event this package may send (unknown type, a field missing, of the wrong type or
    not in EVENTS), or None."""
    if not isinstance(m, dict) or not isinstance(m.get("type"), str) or m["type"] not in EVENTS:
        return f"not an executor event: {str(m)[:120]}"
    schema = EVENTS[m["type"]]
    extra = sorted(set(m) - set(schema) - {"type", "v"})
    if extra:
        return f'"{m["type"]}" has fields {", ".join(extra)} that core/protocol.ts does not list'
    return _check_fields(m["type"], m, schema)


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
