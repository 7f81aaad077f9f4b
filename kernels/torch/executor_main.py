# The torch executor process: `python3 -m kernels.torch.executor_main --kind cuda|torch-cpu --device N`. Reads
# executor command lines on stdin, writes event lines on stdout (core/protocol.ts), logs to stderr. Exits 0
# after `shutdown` or when stdin closes (the agent went away), 1 after a fatal error, 2 on bad arguments.
#
# stdout is the protocol channel: the process keeps a private copy of it and points file descriptor 1 at stderr,
# so stray prints (ours, torch's, gloo's or NCCL's) never corrupt the protocol.
#
# Environment: FLEXSP_DP_CONNECT_TIMEOUT_MS (default 60000) bounds the rendezvous, FLEXSP_DP_OP_TIMEOUT_MS
# (default 600000) every collective; FLEXSP_THREADS sets the intra-op threads (default: the node's cores divided
# by the executors on it, at least 1); FLEXSP_TORCH_INIT=exact|fast chooses the initialisation (param_init.py; default
# exact, bit-identical to the TypeScript executors, up to 16M parameters).
from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    """Runs the executor loop; returns the exit status."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    proto = os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr
    p = argparse.ArgumentParser(prog="python3 -m kernels.torch.executor_main", add_help=True)
    p.add_argument("--kind", default="torch-cpu")
    p.add_argument("--device", default="0")
    args = p.parse_args()
    kind = args.kind
    if kind not in ("cuda", "torch-cpu"):
        print(f'executor: --kind must be cuda or torch-cpu, got "{kind}"', file=sys.stderr)
        return 2
    if not args.device.isdigit():
        print(f'executor: --device must be a non-negative integer, got "{args.device}"', file=sys.stderr)
        return 2
    device = int(args.device)
    prefix = f"[executor {kind}:{device}]"

    def log(line: str) -> None:
        print(f"{prefix} {line}", file=sys.stderr, flush=True)

    try:
        import torch
    except ImportError as e:
        msg = (f"{kind} executor: {sys.executable} cannot import torch ({e}); install it with "
               "`pip install torch` (a CPU wheel or a CUDA build, see https://pytorch.org/get-started/locally/)")
        log(msg)
        proto.write('{"v":1,"type":"error","rank":-1,"message":%s,"fatal":true,"echo":false}\n' % _json_str(msg))
        return 1
    from .protocol import encode_event, parse_command

    threads = os.environ.get("FLEXSP_THREADS")
    if threads is not None:
        if not threads.isdigit() or int(threads) < 1:
            log(f'FLEXSP_THREADS must be a positive integer, got "{threads}"')
            return 2
        torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    def emit(ev: dict) -> None:  # type: ignore[type-arg]
        proto.write(encode_event(ev))
        proto.flush()

    from .executor import Executor

    try:
        exe = Executor(kind, device, emit, log)
    except ValueError as e:
        log(str(e))
        return 2
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        cmd, err = parse_command(line, "executor stdin")
        if cmd is None:
            log(str(err))
            emit({"type": "error", "rank": exe.rank, "message": err, "fatal": False, "echo": False})
            continue
        if exe.handle(cmd) == "exit":
            return 0 if cmd["type"] == "shutdown" else 1
    log("stdin closed; shutting down")
    exe.close()
    return 0


def _json_str(s: str) -> str:
    import json

    return json.dumps(s)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Skip interpreter teardown: process-group and store threads may block it; everything is flushed.
    os._exit(code)
