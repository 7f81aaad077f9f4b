# Sharded checkpoints of the torch executor with torch.distributed.checkpoint (DCP), as torchtitan writes them.
#
# `save(dir)`: the model's and AdamW's state (get_state_dict: DTensor shards under FSDP2, plain tensors under DDP)
# goes through dcp.save into `dir.tmp/`: each rank writes only what it owns (its shards; each replicated tensor once,
# spread over the ranks by DCP's deduplication), in one file `__R_0.distcp` per rank; rank 0 adds DCP's `.metadata`
# and `flexsp.json` (format, step, model shape, layout name -> module name). Every file is fsynced, then one rank per
# filesystem renames `dir.tmp` to `dir` (rank 0, and on nodes that do not see its directory, their lowest rank; but
# loading needs every file where the loading rank can read it: a shared filesystem on a multi-node cluster). Each
# rank returns the files it wrote with their size and sha256 (the orchestrator's manifest lists them). At step 0 only
# the model is saved (AdamW has no state yet).
#
# `save(..., asynchronous=True)` (`training.checkpoint_async`): the same directory, written by DCP's async_save: the
# state is staged (copied to host memory) before it returns, so training goes on while a thread writes it, over a
# gloo group of its own (created at the first asynchronous save, collectively); the files are hashed and the
# directory renamed only once every rank's files are written and synced, and only then does the returned AsyncSave
# call back with the files. A process killed before leaves `dir.tmp/`, never `dir` (tested: FLEXSP_SAVE_FAULT=
# "RANK:exit" SIGKILLs that rank once its files are written, before the rename; at the save of step
# FLEXSP_SAVE_FAULT_STEP only, where that is set).
#
# `load(dir, files)`: every rank checks that every listed file is there with its size, hashes its share of them
# (file i on rank i mod world), and all ranks refuse together, naming the file, if any is missing, short or altered
# (nothing is loaded then; rank 0 alone reports it: RefusedByAll). Then dcp.load reads what this rank holds, whatever
# the world size and ZeRO stage of the run that wrote it (DCP reshards), and set_state_dict puts it in place. A flat
# file of the TypeScript executors' format is refused with a clear message.
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import threading
import warnings
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from .checkpoint import fsync_dir, write_atomic
from .errors import Refusal
from .fault_injection import injected_fault
from .model_shape import ModelShape
from .param_layout import ParamLayout

FORMAT_FILE = "flexsp.json"
METADATA_FILE = ".metadata"
#: Written by rank 0 into the temporary directory: the ranks that read it back share rank 0's filesystem.
OWNER_FILE = ".flexsp-owner"
FORMAT = "flexsp-dcp"
VERSION = 1
_SHAPE_KEYS = ("layers", "hidden", "heads", "vocab", "maxSeq")


class PeakHostMemory:
    """`with PeakHostMemory() as m:` ... `m.bytes`: how far this process's resident memory rose above where it was at
    the start, at its highest (the kernel's high-water mark VmHWM, reset at the start through /proc/self/clear_refs;
    where that is refused, the highest VmRSS seen by a thread sampling every millisecond). 0 where /proc is absent."""

    def __init__(self) -> None:
        self.bytes = 0
        self._base = 0
        self._hwm = False
        self._peak = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(key: str) -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _sample(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, self._status("VmRSS"))

    def __enter__(self) -> "PeakHostMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._base = self._peak = self._status("VmRSS")
        return self

    def __exit__(self, *_: Any) -> None:
        if self._thread is not None and self._stop is not None:
            self._stop.set()
            self._thread.join()
        peak = self._status("VmHWM") if self._hwm else max(self._peak, self._status("VmRSS"))
        self.bytes = max(0, peak - self._base)


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                return h.hexdigest()
            h.update(b)


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _gather(obj: Any, group: Any = None) -> list[Any]:
    """Every rank's `obj` over `group` (default: the world; just ours without a process group)."""
    if not _dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def _prepare(tmp: str, rank: int) -> bool:
    """Creates the empty directory `tmp` for every rank (collective); returns whether this rank renames it at the end:
    rank 0 for the ranks that see rank 0's directory (one filesystem, shared or not), else the lowest rank of each
    host that does not (a node-local filesystem)."""
    token = _gather(secrets.token_hex(8) if rank == 0 else None)[0]
    marker = os.path.join(tmp, OWNER_FILE)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        with open(marker, "w") as f:
            f.write(token)
    _gather(None)
    try:
        with open(marker) as f:
            sees = f.read() == token
    except OSError:
        sees = False
    host = socket.gethostname()
    every = _gather((sees, host))
    leader = rank == 0 or (not sees and next(r for r, (s, h) in enumerate(every) if not s and h == host) == rank)
    if leader and not sees:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    _gather(None)
    return leader


class RefusedByAll(Refusal):
    """A refusal every rank raises identically after a collective (a bad checkpoint, a file-system error DCP gathered):
    the executor lets rank 0 alone report it."""


def _unwrap(e: BaseException, what: str) -> Exception:
    """DCP's CheckpointException (a BaseException gathering every rank's failure) as its first rank's exception:
    RefusedByAll when every rank failed on the file system (a full disk), else a RuntimeError naming it."""
    failures = getattr(e, "failures", None) or {}
    errs = [f[0] if isinstance(f, tuple) else f for _, f in sorted(failures.items())]
    if errs and all(isinstance(x, OSError) for x in errs):
        x = errs[0]
        return RefusedByAll(f"{what}: {x.filename or ''} failed: {x.strerror or x}")
    first = errs[0] if errs else e
    return RuntimeError((str(first) or type(first).__name__).strip().splitlines()[-1])


def _dcp(f: Any, state: dict[str, Any], **kw: Any) -> None:
    """dcp.save or dcp.load, with DCP's CheckpointException unwrapped (`_unwrap`)."""
    try:
        with warnings.catch_warnings():  # one process without a process group is what we mean: no warning
            warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
            f(state, no_dist=not _dist(), **kw)
    except CheckpointException as e:
        raise _unwrap(e, "save: writing" if f is dcp.save else "load: reading") from None


def tied_names(inner: torch.nn.Module) -> dict[str, str]:
    """Every parameter name that is another's tensor (a tied head: `lm_head.weight` -> the token embedding's name),
    mapped to the first name of that tensor. The model's state dict lists both; the checkpoint holds it once
    (AdamW's state is per tensor, so only under the first name already)."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for n, p in inner.named_parameters(remove_duplicate=False):
        if id(p) in first:
            out[n] = first[id(p)]
        else:
            first[id(p)] = n
    return out


def _state(inner: torch.nn.Module, optim: torch.optim.Optimizer, with_optim: bool) -> dict[str, Any]:
    """The state dict DCP writes or reads: {"model"} (and {"optim"} when `with_optim`), tied duplicates left out."""
    if not with_optim:
        m = get_model_state_dict(inner)
        o = None
    else:
        # Without AdamW state (a fresh or step-0 optimizer) get_state_dict creates it with one zero-gradient step at
        # lr 0, which changes nothing, but only when no parameter has a gradient: drop them (the next step zeroes
        # them anyway).
        optim.zero_grad(set_to_none=True)
        m, o = get_state_dict(inner, optim)
    for dup in tied_names(inner):
        m.pop(dup, None)
    return {"model": m} if o is None else {"model": m, "optim": o}


def _retie(inner: torch.nn.Module, model_state: dict[str, Any]) -> dict[str, Any]:
    """A loaded model state with each tied duplicate named again (set_state_dict expects every name)."""
    for dup, first in tied_names(inner).items():
        model_state[dup] = model_state[first]
    return model_state


Files = list[dict[str, Any]]


class AsyncSave:
    """A checkpoint being written in the background (`save(..., asynchronous=True)`): a thread waits for DCP's
    future, finishes the directory (hashes, flexsp.json, rename) and calls `done` with this rank's files, or with the
    exception (RefusedByAll for a file-system error every rank had)."""

    def __init__(self, future: Any, finish: Callable[[], Files], done: Callable[[Files | Exception], None],
                 rank: int, step: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(future, finish, done, rank, step), daemon=True,
                                        name="flexsp-async-save")
        self._thread.start()

    @staticmethod
    def _run(future: Any, finish: Callable[[], Files], done: Callable[[Files | Exception], None], rank: int,
             step: int) -> None:
        try:
            try:
                future.result()
            except CheckpointException as e:
                raise _unwrap(e, "save: writing") from None
            at = os.environ.get("FLEXSP_SAVE_FAULT_STEP")
            if injected_fault("FLEXSP_SAVE_FAULT", rank) == "exit" and (not at or at == str(step)):
                os.kill(os.getpid(), signal.SIGKILL)
            out: Files | Exception = finish()
        except Exception as e:  # noqa: BLE001 - reported through `done`
            out = e
        done(out)

    def wait(self) -> None:
        """Returns once the save is durable (or failed) and `done` was called."""
        self._thread.join()


_async_group: Any = None


def _save_group() -> Any:
    """The gloo group of asynchronous saves (created by every rank at its first one); None without a process
    group."""
    global _async_group
    if _dist() and _async_group is None:
        _async_group = dist.new_group(backend="gloo")
    return _async_group


def save(path: str, inner: torch.nn.Module, optim: torch.optim.Optimizer, step: int, shape: ModelShape,
         names: dict[str, str], rank: int,
         done: Callable[[Files | Exception], None] | None = None) -> Files | AsyncSave:
    """Writes the checkpoint directory `path` (collective: every rank calls it); returns this rank's files as
    {name, bytes, sha256}, names relative to `path`. With `done`, asynchronously: returns once the state is staged,
    and `done` gets the files once the checkpoint is durable and renamed (see the file header)."""
    tmp = path + ".tmp"
    leader = _prepare(tmp, rank)
    state = _state(inner, optim, step > 0)
    writer = dcp.FileSystemWriter(tmp, single_file_per_rank=True, sync_files=True)
    if done is None:
        _dcp(dcp.save, state, storage_writer=writer)
        return _finish(path, tmp, leader, rank, step, shape, names, None)
    group = _save_group()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        future = dcp.async_save(state, storage_writer=writer, process_group=group, no_dist=not _dist())
    return AsyncSave(future, lambda: _finish(path, tmp, leader, rank, step, shape, names, group), done, rank, step)


def _finish(path: str, tmp: str, leader: bool, rank: int, step: int, shape: ModelShape, names: dict[str, str],
            group: Any) -> Files:
    """After DCP wrote every rank's files into `tmp`: this rank's files with their hashes, flexsp.json (rank 0),
    then the rename to `path` (collective over `group`)."""
    mine = sorted(f for f in os.listdir(tmp) if f.startswith(f"__{rank}_"))
    if rank == 0:
        info = {"format": FORMAT, "version": VERSION, "step": step, "shape": shape.to_json(), "names": names}
        write_atomic(os.path.join(tmp, FORMAT_FILE), (json.dumps(info, indent=1) + "\n").encode())
        mine += [METADATA_FILE, FORMAT_FILE]
    files = [{"name": f, "bytes": os.path.getsize(os.path.join(tmp, f)), "sha256": file_sha256(os.path.join(tmp, f))}
             for f in mine]
    _gather(None, group)  # every rank's files are whole and synced
    if leader:
        if os.path.exists(os.path.join(tmp, OWNER_FILE)):
            os.unlink(os.path.join(tmp, OWNER_FILE))
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    _gather(None, group)
    return files


def _check_file(path: str, f: Any, hash_it: bool) -> str | None:
    if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "/" in f["name"]:
        return f"bad file entry {f!r}"
    p = os.path.join(path, f["name"])
    try:
        size = os.path.getsize(p)
    except OSError as e:
        return f"{p} is missing ({e.strerror or e})"
    if size != f.get("bytes"):
        return f"{p} has {size} bytes, the manifest says {f.get('bytes')}"
    if hash_it:
        got = file_sha256(p)
        if got != f.get("sha256"):
            return f"{p}: sha256 {got[:12]}… is not {str(f.get('sha256'))[:12]}… (the file was altered)"
    return None


def check(path: str, files: Any, shape: ModelShape, rank: int, world_size: int) -> dict[str, Any]:
    """Checks a checkpoint before loading it (collective); returns its flexsp.json. Raises ValueError (the same on
    every rank) naming what is wrong."""
    errors: list[str] = []
    info: dict[str, Any] = {}
    if os.path.isfile(path):
        errors.append(f"{path} is a flat checkpoint of the TypeScript executors (cpu, webgpu); the torch executors "
                      "read sharded DCP checkpoint directories: resume it with executor: cpu, or start a new run")
    elif not isinstance(files, list) or not files:
        errors.append(f"{path}: the load command lists no files (a DCP checkpoint needs its manifest's files)")
    else:
        for i, f in enumerate(files):
            e = _check_file(path, f, i % world_size == rank)
            if e:
                errors.append(e)
                break
        if not errors:
            try:
                with open(os.path.join(path, FORMAT_FILE)) as fh:
                    info = json.load(fh)
            except (OSError, ValueError) as e:
                errors.append(f"{path}/{FORMAT_FILE} unreadable ({e})")
        if info and info.get("format") != FORMAT:
            errors.append(f"{path}: not a flexsp DCP checkpoint (format {info.get('format')!r})")
        elif info:
            got, want = info.get("shape") or {}, shape.to_json()
            for k in _SHAPE_KEYS:
                if got.get(k) != want[k]:
                    errors.append(f"{path}: model {k} is {got.get(k)}, this run has {want[k]}")
                    break
    every = [e for per_rank in _gather(errors[:1]) for e in per_rank]
    if every:
        raise RefusedByAll(f"load: {every[0]}")
    return info


def load(path: str, info: dict[str, Any], inner: torch.nn.Module, optim: torch.optim.Optimizer) -> int:
    """Loads a checked checkpoint into the model and optimizer (collective); returns its step."""
    step = int(info["step"])
    state = _state(inner, optim, step > 0)
    _dcp(dcp.load, state, storage_reader=dcp.FileSystemReader(path))
    if step == 0:
        set_model_state_dict(inner, _retie(inner, state["model"]))
        optim.state.clear()
        return 0
    set_state_dict(inner, optim, model_state_dict=_retie(inner, state["model"]), optim_state_dict=state["optim"])
    return step


def layout_names(inner: Any, layout: ParamLayout) -> dict[str, str]:
    """Layout (Hugging Face) name -> module name of every parameter (flexsp.json's `names`, read by the export)."""
    return {lname: mname for lname, mname, _ in inner.named_layout_params(layout)}


def read_info(path: str) -> dict[str, Any]:
    """A checkpoint directory's flexsp.json."""
    with open(os.path.join(path, FORMAT_FILE)) as f:
        info: dict[str, Any] = json.load(f)
    return info


def read_tensors(path: str, keys: list[str]) -> dict[str, torch.Tensor]:
    """Whole tensors of a checkpoint directory by their DCP keys ("model.<module name>", "optim.state.<module
    name>.exp_avg"), read in this process (no process group), only those asked for."""
    md = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        m = md.get(k)
        if not isinstance(m, TensorStorageMetadata):
            raise ValueError(f"{path}: the checkpoint has no tensor {k}")
        out[k] = torch.empty(tuple(m.size), dtype=m.properties.dtype)
    _dcp(dcp.load, out, storage_reader=dcp.FileSystemReader(path))
    return out


def read_flat(path: str, layout: ParamLayout) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(step, parameters, m, v) of a checkpoint directory as flat float32 tensors in layout order (tests)."""
    info = read_info(path)
    names: dict[str, str] = info["names"]
    step = int(info["step"])
    n = layout.total
    p, m, v = (torch.zeros(n, dtype=torch.float32) for _ in range(3))
    for sl in layout.slices:
        mod = names[sl.name]
        keys = [f"model.{mod}"] + ([f"optim.state.{mod}.exp_avg", f"optim.state.{mod}.exp_avg_sq"] if step else [])
        got = read_tensors(path, keys)
        for buf, k in zip((p, m, v), keys):
            buf[sl.offset : sl.offset + sl.length] = got[k].reshape(-1).float()
    return step, p, m, v
