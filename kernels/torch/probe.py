# Inventory probe of a node's Python for the torch executors: prints ONE JSON line
#   {"python", "executable", "torch", "transformers", "cuda", "cudaAvailable", "nccl", "gpus": [{"name", "memoryMb"}],
#    "error"}
# (transformers' version from its package metadata, without importing it: the executor's model code is transformers').
# and exits 0 even when torch is missing (torch null, error saying why). Standard library only until torch.
from __future__ import annotations

import json
import platform
import sys
from typing import Any


def probe() -> dict[str, Any]:
    """What this Python offers the torch executors."""
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": None,
        "transformers": None,
        "cuda": None,
        "cudaAvailable": False,
        "nccl": None,
        "gpus": [],
        "error": None,
    }
    try:
        from importlib.metadata import version

        out["transformers"] = version("transformers")
    except Exception:  # noqa: BLE001 - not installed (PackageNotFoundError) or unreadable metadata
        pass
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install raising anything
        out["error"] = str(e) or type(e).__name__
        return out
    out["torch"] = str(torch.__version__)
    out["cuda"] = torch.version.cuda
    try:
        out["cudaAvailable"] = bool(torch.cuda.is_available())
        if out["cudaAvailable"]:
            try:
                v = torch.cuda.nccl.version()
                out["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
            except Exception:  # noqa: BLE001 - a build without NCCL
                out["nccl"] = None
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                out["gpus"].append({"name": p.name, "memoryMb": int(p.total_memory // (1024 * 1024))})
    except Exception as e:  # noqa: BLE001 - a driver problem: report it, keep the versions
        out["error"] = f"CUDA: {e}"
    return out


if __name__ == "__main__":
    print(json.dumps(probe()), flush=True)
    sys.exit(0)
