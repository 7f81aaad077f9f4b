# The torch executor's logic, independent of stdin/stdout (kernels/executor.ts, ported): the model (transformers'
# modules with the Ulysses attention, causal_lm.py), its training stack (DDP or FSDP2, torch.optim.AdamW,
# trainer.py), the data plane (process group + SP-group pool) and turning each executor command into events.
#
# A step: validate the whole plan (every rank refuses a bad plan identically, nothing has started), zero the
# gradients, run each micro-batch's group on this rank (pack only this rank's slice; Ulysses over the pool group;
# forward + backward of the summed token loss scaled by 1/globalTokens; gradients synchronised only in the last
# backward), clip by the global norm and take an AdamW step. Summing gradients that are each scaled by
# 1/globalTokens is the gradient of the step's mean token loss. Nothing waits on the device between forward and
# backward: the loss sums of every micro-batch are reduced once, at the end of the step, in one all-reduce.
# Reporting: a group's summed token loss and target count come from its SP rank 0 only (others report 0, 0).
#
# Errors: init and peers failures are fatal; a refused plan, save or load is not; once a step has passed
# validation the ranks of a group depend on each other mid-collective, so any failure is fatal and the process
# exits, aborting its communicators (its sockets close, so its peers' collectives fail fast instead of waiting
# for their timeouts).
#
# Checkpoints with `checkpointAsync` in init (`training.checkpoint_async`): `save` returns once the state is staged;
# steps go on while a thread writes it, and `saved` comes only once the checkpoint is durable and renamed. A second
# save, a load and a shutdown first wait for the one in flight.
from __future__ import annotations

import json
import os
import platform
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.distributed as dist

from .attention import AttentionKernel, Segments, UlyssesContext
from .causal_lm import CausalLm, Source, transformers_config
from . import dcp_checkpoint
from .checkpoint import sha256_hex
from .comm import DataPlane, StoreListener, interface_of
from .errors import FatalError, Refusal, error_event, peer_failure
from .fault_injection import injected_fault
from .hf import TensorReader, read_config, shape_json
from .model_shape import ModelShape
from .param_init import init_mode, init_slice
from .param_layout import ParamLayout, param_layout
from .packing import FileSource, SyntheticSource, TokenSource, pack_slice
from .profiling import check_alltoall_request, check_compute_request, profile_alltoall, profile_compute
from .step_plan import MyGroup, check_plan
from .trainer import PRECISIONS, AdamWConfig, Trainer

Emit = Callable[[dict[str, Any]], None]


def cpu_model() -> str:
    """The CPU model name, as the OS tells it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def node_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cuda_index(device: int, count: int, where: str) -> int:
    """
    torch's index of the node's GPU `device`: its position in CUDA_VISIBLE_DEVICES when that lists it (the agent
    sets CUDA_VISIBLE_DEVICES=N, so the one visible GPU is 0), else `device` itself.
    """
    visible = [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    if str(device) in visible:
        i = visible.index(str(device))
    else:
        i = device
    if not 0 <= i < count:
        raise RuntimeError(f"cuda executor: GPU {device} is not visible ({where} sees {count} GPU(s), "
                           f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')})")
    return i


def env_ms(name: str, fallback: float) -> float:
    """A positive number of milliseconds from the environment."""
    v = os.environ.get(name)
    try:
        n = fallback if v is None else float(v)
    except ValueError:
        n = -1
    if not n > 0:
        raise ValueError(f'{name} must be a positive number of milliseconds, got "{v}"')
    return n


@dataclass
class _State:
    init: dict[str, Any]
    rank: int
    world_size: int
    shape: ModelShape
    layout: ParamLayout
    opt: AdamWConfig
    source: TokenSource
    listener: StoreListener | None
    bind_host: str
    kernel: AttentionKernel
    #: The model on the meta device until the trainer materialises it (at init for one rank, at peers otherwise).
    model: CausalLm
    #: Full host tensors to start from: (layout name, module name) -> tensor (seeded init or model.from).
    start: Source | None
    start_close: Callable[[], None] | None
    zero_stage: int
    precision: str
    dp: DataPlane | None = None
    trainer: Trainer | None = None
    step: int = 0
    #: `checkpointAsync` of init: saves are written in the background (dcp_checkpoint.AsyncSave).
    checkpoint_async: bool = False
    #: The asynchronous save in flight, if any.
    saving: dcp_checkpoint.AsyncSave | None = None


class Executor:
    """One executor: feed it commands, it emits events."""

    def __init__(self, kind: str, device_index: int, emit: Emit, log: Callable[[str], None]) -> None:
        self.kind = kind
        self.device_index = device_index
        lock = threading.Lock()

        def locked(ev: dict[str, Any]) -> None:  # an asynchronous save reports from its own thread
            with lock:
                emit(ev)

        self.emit = locked
        self.log = log
        self.s: _State | None = None
        self.device = torch.device("cpu")
        self.device_name = ""
        self.connect_timeout_s = env_ms("FLEXSP_DP_CONNECT_TIMEOUT_MS", 60_000) / 1000
        self.op_timeout_s = env_ms("FLEXSP_DP_OP_TIMEOUT_MS", 600_000) / 1000

    @property
    def rank(self) -> int:
        """The rank (or -1 before init)."""
        return self.s.rank if self.s else -1

    def handle(self, cmd: dict[str, Any]) -> str:
        """Runs one command to completion; errors become `error` events. Returns "exit" after shutdown or a fatal
        error."""
        t = cmd["type"]
        try:
            if t == "init":
                self._fatal_on_error(lambda: self._init(cmd["init"]))
            elif t == "peers":
                self._fatal_on_error(lambda: self._peers(cmd["endpoints"]))
            elif t == "step":
                self._run_step(cmd["plan"])
            elif t == "save":
                self._save(cmd["path"])
            elif t == "load":
                self._load(cmd["path"], cmd.get("files"))
            elif t == "profile_compute":
                self._profile_compute(cmd["request"])
            elif t == "profile_alltoall":
                self._profile_alltoall(cmd["request"])
            elif t == "shutdown":
                self.close()
                return "exit"
            else:
                raise Refusal(f"unknown command {t}")
        except Exception as e:  # noqa: BLE001 - every failure becomes an error event (errors.py)
            fatal = isinstance(e, FatalError)
            if isinstance(e, dcp_checkpoint.RefusedByAll) and self.rank != 0:
                # Every rank refused the same checkpoint together: rank 0 reports it, so that no late refusal of
                # another rank is taken for one of the orchestrator's next request.
                self.log(f"refused with rank 0: {e}")
                return "continue"
            if fatal and e.__cause__ is not None and not isinstance(e.__cause__, (ValueError, RuntimeError)):
                self.log("".join(traceback.format_exception(e.__cause__)))
            self.emit(error_event(self.rank, e))
            if fatal:
                self.close(abort=True)
                return "exit"
        return "continue"

    def _fatal_on_error(self, f: Callable[[], None], collective: bool = False) -> None:
        """Runs `f`; any failure is fatal. `collective`: `f` runs collectives of the data plane, so a failure that
        says a peer went away is an echo of that peer's."""
        try:
            f()
        except FatalError:
            raise
        except Exception as e:  # noqa: BLE001
            echo = collective and peer_failure(e)[1]
            raise FatalError(str(e) or type(e).__name__, echo=echo) from e

    def _ready(self, what: str) -> _State:
        if self.s is None:
            raise Refusal(f"{what}: executor is not initialised (send init first)")
        return self.s

    # ---------- init and rendezvous ----------

    def _select_device(self) -> None:
        if self.kind == "cuda":
            where = f"host {socket.gethostname()}, Python {sys.executable}"
            if not torch.cuda.is_available():
                what = (f"torch {torch.__version__} is a CPU build" if torch.version.cuda is None
                        else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU")
                raise RuntimeError(
                    f"cuda executor: {what} ({where}); install a CUDA build of torch "
                    "(https://pytorch.org/get-started/locally/) or use executor: torch-cpu"
                )
            self.device = torch.device("cuda", cuda_index(self.device_index, torch.cuda.device_count(), where))
            torch.cuda.set_device(self.device)
            self.device_name = torch.cuda.get_device_name(self.device)
        else:
            self.device = torch.device("cpu")
            self.device_name = f"torch-cpu ({cpu_model()})"

    def _init(self, init: Any) -> None:
        if self.s is not None:
            raise ValueError("init: executor is already initialised")
        if not isinstance(init, dict):
            raise ValueError("init: expected an object")
        shape = ModelShape.from_json(init.get("model"))
        ws, rank = init.get("worldSize"), init.get("rank")
        if not isinstance(ws, int) or ws < 1:
            raise ValueError(f"init: bad worldSize {ws}")
        if not isinstance(rank, int) or rank < 0 or rank >= ws:
            raise ValueError(f"init: rank {rank} outside [0, {ws})")
        o = init.get("optimizer") or {}
        opt = AdamWConfig(float(o["weightDecay"]), float(o["gradClip"]), float(o["beta1"]), float(o["beta2"]),
                          float(o["eps"]))
        zero_stage = init.get("zeroStage", 0)
        if zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"init: zeroStage must be 0, 1, 2 or 3, got {zero_stage}")
        self._select_device()
        precision = str(init.get("precision") or ("bf16" if self.device.type == "cuda" else "fp32"))
        if precision not in PRECISIONS:
            raise ValueError(f"init: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        layout = param_layout(shape)
        ds = init.get("dataset")
        source: TokenSource = (FileSource(ds["tokensPath"], ds["tokenBytes"]) if ds else SyntheticSource(shape.vocab))
        bind_host = str(init.get("bindHost") or "127.0.0.1")
        checkpointing = str(init.get("checkpointing") or "none")
        model_from = init.get("modelFrom")
        config_json = None
        start_close: Callable[[], None] | None = None
        if model_from is not None:
            self._check_hf_shape(str(model_from), shape)
            config_json = read_config(str(model_from))
            reader = TensorReader(str(model_from), layout)
            start: Source = lambda name, _m, rows: reader(name, rows)  # noqa: E731
            total = sum(4 * sl.length for sl in layout.slices)

            def close_reader() -> None:
                reader.close()
                self.log(f"model.from: read {reader.bytes_read()} bytes of tensors for this rank's part "
                         f"(the model is {total} bytes in float32)")

            start_close = close_reader
            how = f"from {model_from}"
        else:
            # Each tensor is generated on its own when its turn comes (every slice has its own stream), so no rank
            # holds the whole model on the host; each keeps the rows it holds.
            mode = init_mode(layout)
            seed, index = int(init.get("seed", 0)), {sl.name: i for i, sl in enumerate(layout.slices)}

            def start(name: str, _m: str, rows: tuple[int, int] | None) -> torch.Tensor:
                t = init_slice(layout, index[name], seed, mode).view(layout.slices[index[name]].shape)
                return t if rows is None or t.dim() == 0 else t[rows[0] : rows[1]]

            how = f"initialised ({mode}), one tensor at a time"
        kernel = AttentionKernel(self.device, PRECISIONS[precision], shape.heads, shape.kv_heads or shape.heads,
                                 shape.head_dim or shape.hidden // shape.heads,
                                 bool(init.get("allowQuadraticAttention", False)), self.log)
        with torch.device("meta"):
            model = CausalLm(shape, transformers_config(shape, config_json), checkpointing)
        listener = None
        if ws > 1:
            iface = interface_of(bind_host)
            if iface:
                os.environ.setdefault("GLOO_SOCKET_IFNAME", iface)
                os.environ.setdefault("NCCL_SOCKET_IFNAME", iface)
            else:
                self.log(f"no interface carries {bind_host}; gloo/NCCL pick their own")
            if rank == 0:
                listener = StoreListener(bind_host, ws, self.connect_timeout_s)
        self.s = _State(init, rank, ws, shape, layout, opt, source, listener, bind_host, kernel, model, start,
                        start_close, zero_stage, precision)
        checkpoint_async = init.get("checkpointAsync", False)
        if not isinstance(checkpoint_async, bool):
            raise ValueError(f"init: checkpointAsync must be true or false, got {checkpoint_async!r}")
        self.s.checkpoint_async = checkpoint_async
        if ws == 1:
            self._materialise(self.s)
        self.log(f"{layout.count} parameters {how}; precision {precision}; attention {kernel.describe()}; "
                 f"checkpointing {checkpointing}")
        self.emit({
            "type": "ready",
            "rank": rank,
            "kind": self.kind,
            "device": self.device_name,
            "attention": kernel.describe(),
            "precision": precision,
            "endpoint": {"rank": rank, "host": bind_host, "port": listener.port if listener else 0},
        })

    def _materialise(self, s: _State) -> None:
        """Builds the trainer: wraps the meta model (DDP or FSDP2), materialises this rank's part, the optimizer."""
        assert s.start is not None
        t0 = time.perf_counter()
        try:
            s.trainer = Trainer(s.model, s.layout, self.device, s.world_size, s.zero_stage, s.precision, s.opt,
                                s.start, s.kernel)
        finally:
            if s.start_close is not None:
                s.start_close()
            s.start, s.start_close = None, None
        if s.trainer.sharded:
            local = sum(p.to_local().numel() for p in s.trainer.params)  # type: ignore[attr-defined]
            self.log(f"ZeRO-{s.zero_stage} (FSDP2): {local} of {s.layout.count} parameters on this rank, "
                     f"loaded in {time.perf_counter() - t0:.2f} s")

    @staticmethod
    def _check_hf_shape(model_dir: str, shape: ModelShape) -> None:
        if shape.family != "llama":
            raise ValueError(f"init: modelFrom {model_dir} needs a llama-family model shape")
        mine = ModelShape.from_json(shape_json(read_config(model_dir), model_dir))
        # model.max_seq may cap training below the checkpoint's context (RoPE has no position table to match).
        if shape.max_seq > mine.max_seq:
            raise ValueError(f"init: model.max_seq {shape.max_seq} is above the {mine.max_seq} tokens of "
                             f"{model_dir}/config.json")
        mine = replace(mine, max_seq=shape.max_seq)
        if mine != shape or mine.rope_scaling != shape.rope_scaling:
            raise ValueError(f"init: {model_dir}/config.json gives the shape {mine.to_json()}, the orchestrator sent "
                             f"{shape.to_json()} (core/hf_config.ts and kernels/torch/hf.py disagree)")

    def _peers(self, endpoints: Any) -> None:
        s = self._ready("peers")
        if not isinstance(endpoints, list):
            raise ValueError("peers: endpoints must be a list")
        if "FLEXSP_THREADS" not in os.environ and self.device.type == "cpu":
            here = sum(1 for e in endpoints if isinstance(e, dict) and e.get("host") == s.bind_host) or 1
            torch.set_num_threads(max(1, node_cores() // here))
        pool: list[dict[str, Any]] = []
        if s.world_size > 1:
            backend = "nccl" if self.kind == "cuda" else "gloo"
            t0 = time.perf_counter()
            s.dp = DataPlane(s.rank, s.world_size, backend, self.device, str(s.init.get("secret", "")), s.listener,
                             endpoints, self.connect_timeout_s, self.op_timeout_s, self.log)
            self._materialise(s)
            pool = [{"degree": p.degree, "groups": p.groups, "ms": round(p.ms, 3)} for p in s.dp.pool_times]
            self.log(f"rendezvous + pool in {time.perf_counter() - t0:.2f} s: {pool}; "
                     f"threads {torch.get_num_threads()}")
        self.emit({"type": "connected", "rank": s.rank, "pool": pool})

    # ---------- steps ----------

    def _in_pool(self, s: _State) -> Callable[[list[int]], bool]:
        if s.dp is not None:
            return s.dp.in_pool
        return lambda ranks: False

    def _run_step(self, plan: Any) -> None:
        s = self._ready("step")
        if s.world_size > 1 and s.dp is None:
            raise Refusal("step: data plane not connected (send peers first)")
        mine = check_plan(plan, s.rank, s.world_size, s.shape, self._in_pool(s))
        self._fatal_on_error(lambda: self._execute(s, plan, mine))

    def _execute(self, s: _State, plan: dict[str, Any], mine: list[MyGroup]) -> None:
        t0 = time.perf_counter()
        dev = self.device
        tr = s.trainer
        assert tr is not None
        tr.zero_grad()
        scale = 1 / plan["globalTokens"]
        cuda = dev.type == "cuda"
        losses: list[torch.Tensor] = []
        spans: list[tuple[Any, Any]] = []
        host_ms: list[float] = []
        targets: list[int] = []
        for i, mg in enumerate(mine):
            tm = time.perf_counter()
            if cuda:
                ev = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                ev[0].record()
            packed = None
            try:
                packed = pack_slice(mg.group["sequences"], s.source, mg.degree, mg.sp_rank, s.shape.max_seq,
                                    s.shape.vocab)
                tok, pos, tgt = (x.pin_memory().to(dev, non_blocking=True) if cuda else x
                                 for x in (packed.tokens, packed.positions, packed.targets))
                group = s.dp.group(mg.ranks) if mg.degree > 1 and s.dp is not None else None
                ctx = UlyssesContext(group, mg.degree, Segments(packed.cu_seqlens), s.kernel)
                if i == 0:
                    self._step_fault(s.rank, plan["step"])
                with tr.sync(i == len(mine) - 1):
                    with tr.autocast():
                        loss = tr.module(tok, pos, tgt, ctx)
                    (loss * scale).backward()
                losses.append(loss.detach().double())
            except Exception as e:  # noqa: BLE001
                per_device = packed.seq_len // mg.degree if packed is not None else 0
                raise FatalError(self._describe(e, plan["step"], i, mg, per_device),
                                 echo=peer_failure(e)[1] and not self._out_of_memory(e)) from e
            if cuda:
                ev[1].record()
                spans.append(ev)
            targets.append(packed.target_count)
            host_ms.append((time.perf_counter() - tm) * 1000)
            # The hang watch's per-micro-batch report (orchestrator/run/observe/hang_watch.ts).
            self.emit({"type": "step_progress", "rank": s.rank, "step": plan["step"], "microBatch": i,
                       "ms": host_ms[-1]})
        try:
            sums = self._loss_sums(s, torch.stack(losses))
            norm = float(tr.clip())
        except Exception as e:  # noqa: BLE001
            msg, echo = peer_failure(e)
            raise FatalError(f"step {plan['step']}: gradient reduction failed: {msg}", echo=echo) from e
        if norm != norm or norm == float("inf"):
            what = "NaN" if norm != norm else "Infinity"
            raise FatalError(f"step {plan['step']}: gradient norm is {what}; update skipped")
        s.step += 1
        tr.step(float(plan["lr"]))
        if cuda:
            torch.cuda.synchronize(dev)
        ms = [float(a.elapsed_time(b)) for a, b in spans] if cuda else host_ms
        reports = []
        for i, mg in enumerate(mine):
            first = mg.sp_rank == 0
            reports.append({
                "ms": ms[i],
                "lossSum": sum(float(sums[i, r]) for r in mg.ranks) if first else 0,
                "tokens": targets[i] if first else 0,
            })
        self.emit({"type": "step_done", "rank": s.rank, "step": plan["step"], "microBatches": reports,
                   "ms": (time.perf_counter() - t0) * 1000, "gradNorm": norm})

    @staticmethod
    def _loss_sums(s: _State, mine: torch.Tensor) -> torch.Tensor:
        """[micro-batches, world] float64 on the host: every rank's loss sum of every micro-batch, in one all-reduce
        at the end of the step (nothing waits on the device between forward and backward)."""
        n = mine.shape[0]
        if s.world_size == 1:
            return mine.reshape(n, 1).cpu()
        table = torch.zeros(n, s.world_size, dtype=torch.float64, device=mine.device)
        table[:, s.rank] = mine
        dist.all_reduce(table)
        return table.cpu()

    @staticmethod
    def _step_fault(rank: int, step: int) -> None:
        """Tests only: FLEXSP_STEP_FAULT="RANK:exit" makes that rank exit (code 3) inside its first micro-batch, while
        its group's peers are in their first collective; "RANK:error" makes it raise there (a fatal step error)."""
        fault = injected_fault("FLEXSP_STEP_FAULT", rank)
        if fault == "exit":
            print(f"rank {rank}: injected fault (FLEXSP_STEP_FAULT) in step {step}: exiting", file=sys.stderr,
                  flush=True)
            os._exit(3)
        if fault == "error":
            raise RuntimeError(f"injected fault (FLEXSP_STEP_FAULT) in step {step}")

    @staticmethod
    def _out_of_memory(e: BaseException) -> bool:
        oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                      getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
        text = str(e)
        return isinstance(e, oom_types) or "out of memory" in text.lower() or "can't allocate memory" in text

    def _describe(self, e: BaseException, step: int, i: int, mg: MyGroup, per_device: int) -> str:
        ids = [q.get("id") for q in mg.group["sequences"]][:12]
        where = (f"step {step}, micro-batch {i}, SP group of degree {mg.degree} ranks {mg.ranks} "
                 f"({per_device} tokens per device, sequences {ids})")
        if self._out_of_memory(e):
            if self.device.type == "cuda":
                total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
                return (f"CUDA out of memory on cuda:{self.device_index} ({self.device_name}, {total:.1f} GiB) at "
                        f"{where}; the plan assumed this fits: lower planner.memory_budget_gb or "
                        "cluster.nodes[].device_memory_gb, or use activation checkpointing")
            return f"out of host memory at {where}; lower planner.memory_budget_gb"
        return f"{where}: {peer_failure(e)[0]}"

    # ---------- profiling ----------

    def _profile_compute(self, req: Any) -> None:
        s = self._ready("profile_compute")
        tr = s.trainer
        if tr is None:
            raise Refusal("profile_compute: the model is created at peers (send peers first)")
        check_compute_request(req, s.shape)
        res: dict[str, Any] = {}
        model, kernel = tr.inner, s.kernel
        # Storages of the parameters, so saved-activation accounting leaves them out; under ZeRO also the unsharded
        # weights FSDP2 gathers for each layer's forward (recorded when the layer starts, after FSDP's own hook).
        ptrs: set[int] = set()

        def record(m: torch.nn.Module, _a: Any = None) -> None:
            for p in m.parameters(recurse=False):
                try:
                    ptrs.add(p.untyped_storage().data_ptr())
                except RuntimeError:  # a sharded parameter's storage FSDP2 has freed
                    pass

        for m in model.modules():
            record(m)
        hooks = [m.register_forward_pre_hook(record) for m in model.modules()] if tr.sharded else []

        def forward(tok: torch.Tensor, pos: torch.Tensor, tgt: torch.Tensor, cu: list[int]) -> torch.Tensor:
            loss: torch.Tensor = model(tok, pos, tgt, UlyssesContext(None, 1, Segments(cu), kernel))
            return loss

        def run() -> None:
            res.update(profile_compute(
                req, rank=s.rank, world_size=s.world_size, shape=s.shape, forward=forward, param_ptrs=ptrs,
                zero_grad=tr.zero_grad, source=s.source, dp=s.dp, device=self.device, device_name=self.device_name,
                autocast=tr.autocast, model_state_bytes=tr.model_state_bytes(),
            ))

        try:
            self._fatal_on_error(run, collective=True)
        finally:
            for h in hooks:
                h.remove()
        self.emit({"type": "profile_compute_done", "rank": s.rank, "result": res})

    def _profile_alltoall(self, req: Any) -> None:
        s = self._ready("profile_alltoall")
        if s.world_size > 1 and s.dp is None:
            raise Refusal("profile_alltoall: data plane not connected")
        check_alltoall_request(req, s.world_size, self._in_pool(s))
        res: dict[str, Any] = {}
        self._fatal_on_error(lambda: res.update(
            profile_alltoall(req, rank=s.rank, world_size=s.world_size, dp=s.dp, device=self.device)), collective=True)
        self.emit({"type": "profile_alltoall_done", "rank": s.rank, "result": res})

    # ---------- checkpoints ----------

    def _trainer(self, what: str) -> tuple[_State, Trainer]:
        s = self._ready(what)
        if s.trainer is None:
            raise Refusal(f"{what}: the model is created at peers (send peers first)")
        return s, s.trainer

    def _save(self, path: Any) -> None:
        """A sharded DCP checkpoint in the directory `path` (dcp_checkpoint.py): this rank's files in `saved`."""
        s, tr = self._trainer("save")
        if not isinstance(path, str) or not path:
            raise Refusal("save: path must be a directory path")
        self._wait_saving(s)
        mem = dcp_checkpoint.PeakHostMemory()

        def saved(files: Any) -> None:
            if isinstance(files, dcp_checkpoint.RefusedByAll) and s.rank != 0:
                self.log(f"refused with rank 0: {files}")
            elif isinstance(files, Exception):  # from the save's thread: the pending save request takes it
                self.emit(error_event(s.rank, self._checkpoint_error("save", path, files)))
            else:
                digest = sha256_hex(json.dumps(files, sort_keys=True).encode())
                self.emit({"type": "saved", "rank": s.rank, "path": path, "files": files, "sha256": digest,
                           "bytes": sum(f["bytes"] for f in files), "peakHostBytes": mem.bytes})

        with mem:  # with checkpointAsync: up to the staged copy
            out = self._checkpoint_io("save", path, lambda: dcp_checkpoint.save(
                path, tr.inner, tr.optim, s.step, s.shape, dcp_checkpoint.layout_names(tr.inner, s.layout), s.rank,
                saved if s.checkpoint_async else None))
        if isinstance(out, dcp_checkpoint.AsyncSave):
            s.saving = out
        else:
            saved(out)

    @staticmethod
    def _wait_saving(s: _State) -> None:
        """Waits for the asynchronous save in flight (it has reported `saved` or its error when this returns)."""
        if s.saving is not None:
            s.saving.wait()
            s.saving = None

    def _load(self, path: Any, files: Any) -> None:
        """Loads the DCP checkpoint directory `path` whose files the manifest lists (checked first, see
        dcp_checkpoint.check); refused, with nothing loaded, if any is missing or altered."""
        s, tr = self._trainer("load")
        self._wait_saving(s)
        with dcp_checkpoint.PeakHostMemory() as mem:
            info = self._checkpoint_io("load", str(path),
                                       lambda: dcp_checkpoint.check(str(path), files, s.shape, s.rank, s.world_size))
            step = self._checkpoint_io("load", str(path),
                                       lambda: dcp_checkpoint.load(str(path), info, tr.inner, tr.optim))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        s.step = step
        self.emit({"type": "loaded", "rank": s.rank, "path": path, "peakHostBytes": mem.bytes})

    def _checkpoint_io(self, what: str, path: str, f: Callable[[], Any]) -> Any:
        """Runs a collective save or load: a file-system error (the same on every rank: DCP gathers them) is refused,
        anything else (a peer gone mid-collective) is fatal."""
        try:
            return f()
        except Exception as e:  # noqa: BLE001
            raise self._checkpoint_error(what, path, e) from (None if isinstance(e, OSError) else e)

    @staticmethod
    def _checkpoint_error(what: str, path: str, e: Exception) -> Exception:
        """What a failed save or load raises (or, from an asynchronous save's thread, reports): a refusal as it is,
        a file-system error (the same on every rank: DCP gathers them) as a refusal, anything else (a peer gone
        mid-collective) as fatal, an echo when it only repeats a peer's failure."""
        if isinstance(e, (Refusal, FatalError)):
            return e
        if isinstance(e, OSError):
            verb = "writing" if what == "save" else "reading"
            return Refusal(f"{what}: {verb} {e.filename or path} failed: {e.strerror or e}")
        msg, echo = peer_failure(e)
        return FatalError(f"{what} {path}: {msg}", echo=echo)

    def close(self, abort: bool = False) -> None:
        """Closes the process groups (aborts them after a fatal error), the store and the token source. Idempotent."""
        s = self.s
        if s is None:
            return
        self.s = None
        if not abort:  # a shutdown lets the checkpoint in flight become durable (and report `saved`) first
            self._wait_saving(s)
        if s.dp is not None:
            s.dp.close(abort)
        if s.listener is not None:
            s.listener.close()
        s.source.close()
