# The executor process's edges (`python3 -m kernels.torch.executor_main`): bad arguments, a Python without torch,
# malformed and out-of-order commands answered with non-fatal errors, the exit statuses of shutdown and a closed
# stdin, and the injected step faults (fault_injection.py).
from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
import unittest.mock
from typing import Any

from ..fault_injection import injected_fault
from ..protocol import check_event
from .harness import MAIN, TINY, group, package_env, plan, seqs, test_init


def run(lines: list[str], args: list[str] | None = None, python: list[str] | None = None,
        env: dict[str, str] | None = None) -> tuple[int, list[Any], str]:
    """Runs one executor on `lines`; returns (exit status, events, stderr)."""
    p = subprocess.run([*(python or [sys.executable]), *MAIN[1:], *(args or ["--kind", "torch-cpu", "--device", "0"])],
                       input="".join(x + "\n" for x in lines).encode(), capture_output=True, timeout=300,
                       env=package_env({"FLEXSP_THREADS": "1", "PATH": "/usr/bin:/bin", **(env or {})}))
    events = [json.loads(x) for x in p.stdout.decode().splitlines() if x.strip()]
    for e in events:
        why = check_event(e)
        assert why is None, why
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
        self.assertRegex(e["message"],
                         r"torch-cpu executor: .*python.* cannot import torch \(No module named 'torch'\)")
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


    def test_an_injected_step_fault_is_a_fatal_error_naming_the_micro_batch(self) -> None:
        init = json.dumps({"type": "init", "init": test_init(0, 1, TINY)})
        step = json.dumps({"type": "step", "plan": plan(0, [[group([0], seqs([64]))]])})
        code, events, _ = run([init, step], env={"FLEXSP_STEP_FAULT": "0:error"})
        self.assertEqual([e["type"] for e in events], ["ready", "error"])
        self.assertTrue(events[1]["fatal"])
        self.assertFalse(events[1]["echo"], "this rank's own failure, not a peer's")
        self.assertRegex(events[1]["message"],
                         r"^step 0, micro-batch 0, SP group of degree 1 ranks \[0\] .*: injected fault "
                         r"\(FLEXSP_STEP_FAULT\) in step 0$")
        self.assertEqual(code, 1)
        # Another rank's fault leaves this one alone; "exit" ends the process with status 3 and no event.
        code, events, _ = run([init, step, json.dumps({"type": "shutdown"})], env={"FLEXSP_STEP_FAULT": "1:exit"})
        self.assertEqual(([e["type"] for e in events], code), (["ready", "step_progress", "step_done"], 0))
        self.assertEqual({k: events[1][k] for k in ("rank", "step", "microBatch")},
                         {"rank": 0, "step": 0, "microBatch": 0})
        self.assertGreater(events[1]["ms"], 0)
        code, events, err = run([init, step], env={"FLEXSP_STEP_FAULT": "0:exit"})
        self.assertEqual(([e["type"] for e in events], code), (["ready"], 3))
        self.assertIn("rank 0: injected fault (FLEXSP_STEP_FAULT) in step 0: exiting", err)


class FaultInjection(unittest.TestCase):
    def test_the_variable_names_one_rank_and_a_mode(self) -> None:
        cases = [(None, 0, None), ("", 0, None), ("1:exit", 1, "exit"), ("1:exit", 0, None), ("2", 2, "error"),
                 ("2:error", 2, "error"), ("2:other", 2, "error"), ("x:exit", 0, None)]
        for spec, rank, want in cases:
            with unittest.mock.patch.dict("os.environ", {} if spec is None else {"FLEXSP_TEST_FAULT": spec}):
                if spec is None:
                    os.environ.pop("FLEXSP_TEST_FAULT", None)
                self.assertEqual(injected_fault("FLEXSP_TEST_FAULT", rank), want, f"{spec!r} for rank {rank}")


if __name__ == "__main__":
    unittest.main()
