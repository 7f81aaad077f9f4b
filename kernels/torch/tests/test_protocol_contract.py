# The executor's protocol tables (protocol.py) against core/protocol.ts, read from its source: the command rows
# (EXECUTOR_COMMANDS, what each side validates) must be equal, and every event type of the ExecutorEvent union must
# have the same fields, each optional on both sides or on neither. A field added on one side only fails here.
from __future__ import annotations

import os
import re
import unittest

from ..protocol import COMMANDS, EVENTS
from .harness import ROOT

PROTOCOL_TS = os.path.join(ROOT, "core", "protocol.ts")


def _source() -> str:
    with open(PROTOCOL_TS) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # doc comments (they mention fields in prose)
    return re.sub(r"//[^\n]*", "", text)


def _block(text: str, start: str) -> str:
    """The text between the first `{` after `start` and its matching `}`."""
    i = text.index(start)
    i = text.index("{", i)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    raise AssertionError(f"unbalanced braces after {start}")


def _top_level(body: str, sep: str) -> list[str]:
    """`body` split at `sep` outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in body:
        depth += {"{": 1, "[": 1, "(": 1, "<": 1, "}": -1, "]": -1, ")": -1, ">": -1}.get(ch, 0)
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def ts_rows(name: str) -> dict[str, dict[str, str]]:
    """A validation table of core/protocol.ts (`const NAME: Rows<...> = { type: { field: "json type" } }`)."""
    rows: dict[str, dict[str, str]] = {}
    for entry in _top_level(_block(_source(), f"const {name}:"), ","):
        m = re.fullmatch(r"(\w+)\s*:\s*\{(.*)\}", entry, flags=re.S)
        assert m, f"{name}: cannot read {entry!r}"
        rows[m.group(1)] = {k: v for k, v in re.findall(r'(\w+)\s*:\s*"([\w?]+)"', m.group(2))}
    return rows


def ts_union_fields(name: str) -> dict[str, dict[str, bool]]:
    """Every member of a message union of core/protocol.ts: type -> field -> optional."""
    text = _source()
    i = text.index(f"export type {name} =")
    end = text.index(";\n\n", i)
    out: dict[str, dict[str, bool]] = {}
    for member in _top_level(text[i + len(f"export type {name} =") : end], "|"):
        body = member.strip()
        assert body.startswith("{") and body.endswith("}"), f"{name}: cannot read {member!r}"
        fields: dict[str, bool] = {}
        kind = None
        for f in _top_level(body[1:-1], ";"):
            m = re.match(r"(\w+)(\??)\s*:\s*(.*)", f, flags=re.S)
            assert m, f"{name}: cannot read field {f!r}"
            if m.group(1) == "type":
                kind = m.group(3).strip().strip('"')
            else:
                fields[m.group(1)] = m.group(2) == "?"
        assert kind, f"{name}: a member without a type: {member!r}"
        out[kind] = fields
    return out


class ProtocolContract(unittest.TestCase):
    def test_command_rows_equal_core_protocol_ts(self) -> None:
        self.assertEqual(COMMANDS, ts_rows("EXECUTOR_COMMANDS"))

    def test_commands_have_the_fields_of_the_union(self) -> None:
        union = ts_union_fields("ExecutorCommand")
        self.assertEqual(set(COMMANDS), set(union))
        for t, fields in union.items():
            self.assertEqual({k: v.endswith("?") for k, v in COMMANDS[t].items()}, fields, t)

    def test_events_have_the_fields_of_the_union(self) -> None:
        union = ts_union_fields("ExecutorEvent")
        self.assertEqual(set(EVENTS), set(union))
        for t, fields in union.items():
            self.assertEqual({k: v.endswith("?") for k, v in EVENTS[t].items()}, fields, t)

    def test_event_rows_agree_with_the_event_table(self) -> None:
        # The TypeScript receiver validates some fields of each event: each with the JSON type protocol.py sends.
        rows = ts_rows("EXECUTOR_EVENTS")
        self.assertEqual(set(rows), set(EVENTS))
        for t, row in rows.items():
            for k, want in row.items():
                self.assertIn(k, EVENTS[t], f"{t}.{k}")
                self.assertEqual(EVENTS[t][k].rstrip("?"), want.rstrip("?"), f"{t}.{k}")

    def test_the_reader_reads_fields_and_their_optionality(self) -> None:
        # The reader itself, on members whose fields are known (a nested type, a `?`).
        union = ts_union_fields("ExecutorEvent")
        self.assertEqual({k: v for k, v in union["saved"].items() if k != "peakHostBytes"},
                         {"rank": False, "path": False, "sha256": False, "bytes": False, "files": True})
        self.assertEqual(union["step_done"]["gradNorm"], True)


if __name__ == "__main__":
    unittest.main()
