# The executor process's edges (executor_main.py): bad arguments, a Python without torch, malformed and
# out-of-order commands answered with non-fatal errors, and the exit statuses of shutdown and a closed stdin.
from __future__ import annotations

import json
import subprocess
import sys
import unittest
from typing import Any

from tests.harness import MAIN, TINY, test_init


def run(lines: list[str], args: list[str] | None = None, python: list[str] | None = None) -> tuple[int, list[Any], str]:
    """Runs one executor on `lines`; returns (exit status, events, stderr)."""
    p = subprocess.run([*(python or [sys.executable]), MAIN, *(args or ["--kind", "torch-cpu", "--device", "0"])],
                       input="".join(x + "\n" for x in lines).encode(), capture_output=True, timeout=300,
                       env={"FLEXSP_THREADS": "1", "PATH": "/usr/bin:/bin"})
    events = [json.loads(x) for x in p.stdout.decode().splitlines() if x.strip()]
    return p.returncode, events, p.stderr.decode()


class ExecutorMain(unittest.TestCase):
    def test_bad_arguments_exit_2_with_a_message(self) -> None:
        code, events, err = run([], ["--kind", "cpu"])
        self.assertEqual(code, 2)
        self.assertEqual(events, [])
        self.assertIn('--kind must be cuda or torch-cpu, got "cpu"', err)

    def test_a_python_without_torch_gets_one_clear_fatal_error(self) -> None:
        # -S: no site-packages, so no torch (the standard library still imports).
        code, events, err = run([json.dumps({"type": "init", "init": test_init(0, 1, TINY)})],
                                python=[sys.executable, "-S"])
        self.assertEqual(code, 1)
        self.assertEqual(len(events), 1)
        e = events[0]
        self.assertEqual((e["type"], e["fatal"]), ("error", True))
        self.assertRegex(e["message"], r"torch-cpu executor: .*python.* cannot import torch \(No module named 'torch'\)")
        self.assertIn("pip install torch", e["message"])

    def test_bad_lines_and_early_commands_are_non_fatal_errors(self) -> None:
        lines = [
            "not json",
            json.dumps({"type": "ready", "rank": 0}),
            json.dumps({"type": "step"}),
            json.dumps({"v": 2, "type": "shutdown"}),
            json.dumps({"type": "save", "path": "/tmp/x.ckpt"}),
            json.dumps({"type": "init", "init": {**test_init(0, 1, TINY), "model": {**TINY, "hidden": 30}}}),
        ]
        code, events, _ = run(lines)
        msgs = [e["message"] for e in events]
        self.assertEqual(msgs[:5], [
            "executor stdin: not JSON: not json",
            'executor stdin: message "ready" does not belong on the executor command channel: {"type": "ready", '
            '"rank": 0}',
            'executor stdin: "step" needs plan: object: {"type": "step"}',
            'executor stdin: protocol version 2, expected 1: {"v": 2, "type": "shutdown"}',
            "save: executor is not initialised (send init first)",
        ])
        self.assertTrue(all(not e["fatal"] for e in events[:5]))
        self.assertEqual(msgs[5], "model shape: hidden 30 is not divisible by heads 4")
        self.assertTrue(events[5]["fatal"], "a failed init is fatal")
        self.assertEqual(code, 1)

    def test_shutdown_and_closed_stdin_exit_0(self) -> None:
        init = json.dumps({"type": "init", "init": test_init(0, 1, TINY)})
        code, events, _ = run([init, json.dumps({"type": "shutdown"})])
        self.assertEqual((code, [e["type"] for e in events]), (0, ["ready"]))
        code, events, err = run([init])
        self.assertEqual((code, [e["type"] for e in events]), (0, ["ready"]))
        self.assertIn("stdin closed; shutting down", err)


if __name__ == "__main__":
    unittest.main()
