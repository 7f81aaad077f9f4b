# Test harness that plays the agent for real torch executor processes (executor_main.py): spawns them with one
# torch thread each, speaks the protocol on their stdin/stdout, acts as the rendezvous (collects `ready`
# endpoints, sends `peers`) and waits for events with timeouts, so a broken executor fails a test, never hangs it.
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from ..protocol import check_event

#: The package under test (`kernels.torch`) and the directory that must be on PYTHONPATH to import it.
PACKAGE = (__package__ or "kernels.torch.tests").rsplit(".", 1)[0]
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * (PACKAGE.count(".") + 2)))


def package_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the package's root first on PYTHONPATH, for `python3 -m` of its modules."""
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = os.pathsep.join([ROOT, *([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])])
    return e


def module_argv(module: str) -> list[str]:
    """The command line that runs `module` of the package as a script (`python3 -m kernels.torch.<module>`)."""
    return [sys.executable, "-m", f"{PACKAGE}.{module}"]


MAIN = module_argv("executor_main")
#: How long a start (torch import, initialisation, rendezvous) may take: seconds, but minutes on a busy machine.
START_S = 180.0
TINY: dict[str, int] = {"layers": 2, "hidden": 64, "heads": 4, "vocab": 256, "maxSeq": 1024}


def test_init(rank: int, world_size: int, model: dict[str, int], **over: Any) -> dict[str, Any]:
    """Default init fields of a test run (those of tests/kernels/executor_harness.ts)."""
    return {
        "rank": rank,
        "worldSize": world_size,
        "model": model,
        "seed": 1234,
        "optimizer": {"lr": 1e-3, "weightDecay": 0.1, "gradClip": 1.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8},
        "secret": "test-secret-0123456789",
        "bindHost": "127.0.0.1",
        **over,
    }


class Proc:
    """One executor process."""

    def __init__(self, rank: int, env: dict[str, str] | None = None) -> None:
        self.rank = rank
        e = package_env({**os.environ, "FLEXSP_THREADS": "1", "FLEXSP_DP_CONNECT_TIMEOUT_MS": "20000", **(env or {})})
        self.p = subprocess.Popen(
            [*MAIN, "--kind", "torch-cpu", "--device", str(rank)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.pending: list[dict[str, Any]] = []
        #: The `connected` event once the rendezvous is done (it carries the pool's creation times).
        self.connected: dict[str, Any] = {}
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            line = raw.decode().strip()
            if line:
                self.events.put(json.loads(line))
        self.events.put(None)

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for raw in self.p.stderr:
            self.stderr.append(raw.decode(errors="replace"))

    def send(self, cmd: dict[str, Any]) -> None:
        """Sends one command line."""
        assert self.p.stdin is not None
        self.p.stdin.write((json.dumps({"v": 1, **cmd}) + "\n").encode())
        self.p.stdin.flush()

    def next(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first not-yet-consumed event satisfying `pred`; raises on timeout or exit."""
        for i, ev in enumerate(self.pending):
            if pred(ev):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"rank {self.rank}: timed out waiting for {what}; {self.pending}; "
                                     f"stderr {''.join(self.stderr)[-2000:]}")
            try:
                got = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if got is None:
                self.events.put(None)
                raise AssertionError(f"rank {self.rank} exited waiting for {what}; {self.pending}; "
                                     f"stderr {''.join(self.stderr)[-2000:]}")
            why = check_event(got)
            if why is not None:  # every event the executor sends is one of protocol.py EVENTS, field for field
                raise AssertionError(f"rank {self.rank}: {why}")
            if pred(got):
                return got
            self.pending.append(got)

    def of(self, t: str, timeout: float = 60) -> dict[str, Any]:
        """The next event of type `t`."""
        return self.next(lambda e: e["type"] == t, timeout, t)

    def close(self, timeout: float = 10) -> int:
        """Shuts down (if alive), closes stdin, waits; kills after `timeout`."""
        try:
            if self.p.poll() is None:
                self.send({"type": "shutdown"})
            assert self.p.stdin is not None
            self.p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


def start_run(n: int, model: dict[str, int] = TINY, env: dict[str, str] | None = None,
              init: Callable[[int], dict[str, Any]] | None = None) -> list[Proc]:
    """Spawns `n` executors, inits them, runs the rendezvous, waits until all are connected."""
    procs = [Proc(r, env) for r in range(n)]
    try:
        for p in procs:
            p.send({"type": "init", "init": test_init(p.rank, n, model, **(init(p.rank) if init else {}))})
        ready = [p.of("ready", START_S) for p in procs]
        endpoints = [e["endpoint"] for e in ready]
        for p in procs:
            p.send({"type": "peers", "endpoints": endpoints})
        for p in procs:
            p.connected = p.of("connected", START_S)
        return procs
    except BaseException:
        stop_all(procs)
        raise


def stop_all(procs: list[Proc]) -> None:
    """Shuts every executor down."""
    for p in procs:
        p.close()


def step_all(procs: list[Proc], plan: dict[str, Any], timeout: float = 60) -> list[dict[str, Any]]:
    """Sends one step to every rank and collects the step_done events."""
    for p in procs:
        p.send({"type": "step", "plan": plan})
    return [p.of("step_done", timeout) for p in procs]


def group(ranks: list[int], sequences: list[dict[str, int]]) -> dict[str, Any]:
    """A group assignment."""
    return {"degree": len(ranks), "ranks": ranks, "sequences": sequences}


def plan(step: int, micro_batches: list[list[dict[str, Any]]], lr: float = 1e-3) -> dict[str, Any]:
    """A step plan whose globalTokens is the target count of all its sequences."""
    total = sum(s["length"] - 1 for mb in micro_batches for g in mb for s in g["sequences"])
    return {"step": step, "microBatches": [{"groups": mb} for mb in micro_batches], "globalTokens": total, "lr": lr}


def seqs(lengths: list[int], first_id: int = 0, offset: int = 0) -> list[dict[str, int]]:
    """Sequence refs with consecutive ids and offsets."""
    out = []
    for i, n in enumerate(lengths):
        out.append({"id": first_id + i, "offset": offset, "length": n})
        offset += n
    return out


def save_all(procs: list[Proc], path: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every rank saves into the checkpoint directory `path`; their `saved` events in rank order."""
    for p in procs:
        p.send({"type": "save", "path": path})
    return [p.of("saved", timeout) for p in procs]


def files_of(saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every file of a checkpoint (as the orchestrator's manifest lists them), from the ranks' `saved` events."""
    return [f for s in saved for f in s["files"]]


def load_all(procs: list[Proc], saved: list[dict[str, Any]], timeout: float = 60) -> None:
    """Every rank loads the checkpoint of `saved` (its directory and files)."""
    for p in procs:
        p.send({"type": "load", "path": saved[0]["path"], "files": files_of(saved)})
    for p in procs:
        p.of("loaded", timeout)


def data_files(saved: list[dict[str, Any]]) -> dict[str, str]:
    """name -> sha256 of a checkpoint's tensor data files (DCP's .metadata holds a save id, so it differs)."""
    return {f["name"]: f["sha256"] for f in files_of(saved) if f["name"].endswith(".distcp")}
