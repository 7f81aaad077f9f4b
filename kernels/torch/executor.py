# The torch executor's logic, independent of stdin/stdout (kernels/executor.ts, ported): holds the flat parameter,
# gradient and AdamW buffers on the device, the GPT, the data plane (process group + SP-group pool) and turns each
# executor command into events.
#
# A step: validate the whole plan (every rank refuses a bad plan identically, nothing has started), zero the
# gradients, run each micro-batch's group on this rank (Ulysses over the pool group; forward + backward of the
# summed token loss scaled by 1/globalTokens), sum the gradients over all ranks (bucketed, fixed order, started
# during the last backward), clip by the global norm and apply AdamW (weight decay on matrices and embeddings).
# Summing gradients that are each scaled by 1/globalTokens is the gradient of the step's mean token loss.
# Reporting: a group's summed token loss and target count come from its SP rank 0 only (others report 0, 0).
#
# Errors: init and peers failures are fatal; a refused plan, save or load is not; once a step has passed
# validation the ranks of a group depend on each other mid-collective, so any failure is fatal and the process
# exits (its sockets close, so its peers' collectives fail fast instead of waiting for their timeouts).
from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from checkpoint import decode_state, encode_state, sha256_hex, write_atomic
from comm import DataPlane, GradReducer, StoreListener, interface_of
from fault_injection import injected_fault
from gpt import Gpt
from hf import TensorReader, load_weights, read_config, shape_json
from llama import Llama
from model import ModelShape, ParamLayout, init_mode, init_params, param_layout
from optim import AdamWConfig, adamw, clip_factor, sum_squares
from packing import FileSource, SyntheticSource, TokenSource, pack_group
from profiling import check_alltoall_request, check_compute_request, profile_alltoall, profile_compute
from step_plan import MyGroup, check_plan
from zero3 import Zero3Llama

Emit = Callable[[dict[str, Any]], None]


class FatalError(Exception):
    """An error that makes the executor unusable (init, rendezvous or mid-step failures)."""


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
    params: torch.Tensor
    grads: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    model: Gpt | Llama
    source: TokenSource
    listener: StoreListener | None
    bind_host: str
    dp: DataPlane | None = None
    reducer: GradReducer | None = None
    step: int = 0
    #: ZeRO-3 (planner.zero_stage 3, llama family, several ranks): the FSDP2-sharded model, created at `peers`;
    #: `params`/`grads`/`m`/`v` are then empty and `fill` loads the shards (initialisation or model.from).
    zero3: Zero3Llama | None = None
    fill: Callable[[Zero3Llama], None] | None = None


class Executor:
    """One executor: feed it commands, it emits events."""

    def __init__(self, kind: str, device_index: int, emit: Emit, log: Callable[[str], None]) -> None:
        self.kind = kind
        self.device_index = device_index
        self.emit = emit
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
        """Runs one command to completion; errors become `error` events. Returns "exit" after shutdown or a fatal error."""
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
                self._load(cmd["path"], cmd.get("sha256"))
            elif t == "profile_compute":
                self._profile_compute(cmd["request"])
            elif t == "profile_alltoall":
                self._profile_alltoall(cmd["request"])
            elif t == "shutdown":
                self.close()
                return "exit"
            else:
                raise ValueError(f"unknown command {t}")
        except Exception as e:  # noqa: BLE001 - every failure becomes an error event
            fatal = isinstance(e, FatalError)
            message = str(e) or type(e).__name__
            if fatal and e.__cause__ is not None and not isinstance(e.__cause__, (ValueError, RuntimeError)):
                self.log("".join(traceback.format_exception(e.__cause__)))
            self.emit({"type": "error", "rank": self.rank, "message": message, "fatal": fatal})
            if fatal:
                self.close()
                return "exit"
        return "continue"

    def _fatal_on_error(self, f: Callable[[], None]) -> None:
        try:
            f()
        except FatalError:
            raise
        except Exception as e:  # noqa: BLE001
            raise FatalError(str(e) or type(e).__name__) from e

    def _ready(self, what: str) -> _State:
        if self.s is None:
            raise ValueError(f"{what}: executor is not initialised (send init first)")
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
        self._select_device()
        layout = param_layout(shape)
        ds = init.get("dataset")
        source: TokenSource = (FileSource(ds["tokensPath"], ds["tokenBytes"]) if ds else SyntheticSource(shape.vocab))
        bind_host = str(init.get("bindHost") or "127.0.0.1")
        t0 = time.perf_counter()
        model_from = init.get("modelFrom")
        checkpointing = str(init.get("checkpointing") or "none")
        zero_stage = init.get("zeroStage", 0)
        if zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"init: zeroStage must be 0, 1, 2 or 3, got {zero_stage}")
        zero3 = zero_stage == 3 and shape.family == "llama" and ws > 1
        fill: Callable[[Zero3Llama], None] | None = None
        if shape.family == "llama" and zero_stage in (1, 2):
            raise ValueError(f"init: planner.zero_stage {zero_stage} is not implemented by the torch executor: use 0 "
                             "(full replicas, gradient all-reduce) or 3 (FSDP2 over all ranks)")
        if shape.family == "gpt" and zero_stage != 0:
            self.log(f"zero_stage {zero_stage}: the gpt family keeps full replicas (ZeRO-3 is the llama family's)")
        if zero3 and model_from is not None:
            self._check_hf_shape(str(model_from), shape)
            src = str(model_from)

            def fill_hf(z: Zero3Llama) -> None:
                reader = TensorReader(src, layout)
                try:
                    z.load_full(reader)
                finally:
                    reader.close()

            fill, params = fill_hf, torch.zeros(0)
        elif zero3:
            mode = init_mode(layout)
            host = init_params(layout, int(init.get("seed", 0)), mode)
            fill, params = (lambda z: z.load_flat(host)), torch.zeros(0)
        elif model_from is not None:
            params = self._load_hf(str(model_from), shape, layout)
            self.log(f"loaded {layout.count} parameters from {model_from} in {time.perf_counter() - t0:.2f} s")
        else:
            mode = init_mode(layout)
            params = init_params(layout, int(init.get("seed", 0)), mode, self.device)
            self.log(f"initialised {layout.count} parameters ({mode}) in {time.perf_counter() - t0:.2f} s")
        grads = torch.zeros_like(params)
        m, v = torch.zeros_like(params), torch.zeros_like(params)
        model: Gpt | Llama
        if zero3:
            model = Llama(layout, None, None, self.log, checkpointing, device=self.device)
        elif shape.family == "llama":
            model = Llama(layout, params, grads, self.log, checkpointing)
        else:
            if checkpointing != "none":
                self.log(f"checkpointing {checkpointing}: the gpt family keeps every activation")
            model = Gpt(layout, params, grads, self.log)
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
        self.s = _State(init, rank, ws, shape, layout, opt, params, grads, m, v, model, source, listener, bind_host,
                        fill=fill)
        self.emit({
            "type": "ready",
            "rank": rank,
            "kind": self.kind,
            "device": self.device_name,
            "endpoint": {"rank": rank, "host": bind_host, "port": listener.port if listener else 0},
        })

    def _load_hf(self, model_dir: str, shape: ModelShape, layout: ParamLayout) -> torch.Tensor:
        """The parameters of a Hugging Face directory, read tensor by tensor into a host buffer, then moved."""
        self._check_hf_shape(model_dir, shape)
        host = torch.zeros(layout.total, dtype=torch.float32)
        load_weights(model_dir, layout, host)
        return host.to(self.device)

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
            if s.fill is not None:
                t1 = time.perf_counter()
                s.zero3 = Zero3Llama(s.layout, s.world_size, self.device, self.log, s.model.checkpointing)
                s.fill(s.zero3)
                s.fill = None
                self.log(f"ZeRO-3: {s.zero3.local_elements()} of {s.layout.count} parameters on this rank, "
                         f"loaded in {time.perf_counter() - t1:.2f} s")
            else:
                slices = [(x.offset, x.offset + x.length) for x in s.layout.slices]
                s.reducer = GradReducer(s.grads, slices, s.model.params)
            pool = [{"degree": p.degree, "groups": p.groups, "ms": round(p.ms, 3)} for p in s.dp.pool_times]
            self.log(f"rendezvous + pool in {time.perf_counter() - t0:.2f} s: {pool}; threads {torch.get_num_threads()}")
        self.emit({"type": "connected", "rank": s.rank, "pool": pool})

    # ---------- steps ----------

    def _autocast(self) -> Any:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _in_pool(self, s: _State) -> Callable[[list[int]], bool]:
        if s.dp is not None:
            return s.dp.in_pool
        return lambda ranks: False

    def _run_step(self, plan: Any) -> None:
        s = self._ready("step")
        if s.world_size > 1 and s.dp is None:
            raise ValueError("step: data plane not connected (send peers first)")
        mine = check_plan(plan, s.rank, s.world_size, s.shape, self._in_pool(s))
        self._fatal_on_error(lambda: self._execute(s, plan, mine))

    def _execute(self, s: _State, plan: dict[str, Any], mine: list[MyGroup]) -> None:
        t0 = time.perf_counter()
        dev = self.device
        z = s.zero3
        if z is not None:
            z.zero_grad()
        else:
            s.grads.zero_()
        forward = z.forward if z is not None else s.model.forward
        scale = 1 / plan["globalTokens"]
        reports: list[dict[str, Any]] = []
        for i, mg in enumerate(mine):
            tm = time.perf_counter()
            packed = pack_group([s.source.read(q) for q in mg.group["sequences"]], mg.degree, s.shape.max_seq,
                                s.shape.vocab)
            a, b = packed.bounds[mg.sp_rank], packed.bounds[mg.sp_rank + 1]
            try:
                tok, pos, tgt = (x[a:b].to(dev) for x in (packed.tokens, packed.positions, packed.targets))
                group = s.dp.group(mg.ranks) if mg.degree > 1 and s.dp is not None else None
                if i == 0:
                    self._step_fault(s.rank, plan["step"])
                if s.reducer is not None and i == len(mine) - 1:
                    s.reducer.arm()
                with self._autocast():
                    losses = forward(tok, pos, tgt, packed.cu_seqlens, group, mg.degree)
                loss_sum = losses.detach().double().sum().reshape(1)
                if group is not None:  # the members' sums, added in SP-rank order
                    parts = [torch.zeros_like(loss_sum) for _ in range(mg.degree)]
                    torch.distributed.all_gather(parts, loss_sum, group=group)
                    group_loss = sum(float(p.item()) for p in parts)
                else:
                    group_loss = float(loss_sum.item())
                (losses.sum() * scale).backward()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
            except Exception as e:  # noqa: BLE001
                raise FatalError(self._describe(e, plan["step"], i, mg, packed.seq_len // mg.degree)) from e
            reports.append({
                "ms": (time.perf_counter() - tm) * 1000,
                "lossSum": group_loss if mg.sp_rank == 0 else 0,
                "tokens": packed.target_count if mg.sp_rank == 0 else 0,
            })
            # The hang watch's per-micro-batch report (orchestrator/run/observe/hang_watch.ts).
            self.emit({"type": "step_progress", "rank": s.rank, "step": plan["step"], "microBatch": i,
                       "ms": (time.perf_counter() - tm) * 1000})
        if s.reducer is not None:
            try:
                s.reducer.finish()
            except Exception as e:  # noqa: BLE001
                raise FatalError(f"step {plan['step']}: gradient all-reduce failed: {self._peer_hint(e)}") from e
        if z is not None:
            try:
                norm = z.grad_norm()
            except Exception as e:  # noqa: BLE001
                raise FatalError(f"step {plan['step']}: gradient norm all-reduce failed: {self._peer_hint(e)}") from e
        else:
            ranges = [(x.offset, x.offset + x.length) for x in s.layout.slices]
            norm = sum_squares(s.grads, ranges) ** 0.5
        if norm != norm or norm == float("inf"):
            raise FatalError(f"step {plan['step']}: gradient norm is {'NaN' if norm != norm else 'Infinity'}; update skipped")
        clip = clip_factor(norm, s.opt.grad_clip)
        s.step += 1
        lr = float(plan["lr"])
        for x in s.layout.slices if z is None else []:
            sl = slice(x.offset, x.offset + x.length)
            adamw(s.params[sl], s.grads[sl], s.m[sl], s.v[sl], lr, s.opt, s.opt.weight_decay if x.decay else 0.0,
                  s.step, clip)
        if z is not None:
            z.apply(lr, s.opt, norm, s.step)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        self.emit({"type": "step_done", "rank": s.rank, "step": plan["step"], "microBatches": reports,
                   "ms": (time.perf_counter() - t0) * 1000})

    @staticmethod
    def _step_fault(rank: int, step: int) -> None:
        """Tests only: FLEXSP_STEP_FAULT="RANK:exit" makes that rank exit (code 3) inside its first micro-batch, while
        its group's peers are in their first collective; "RANK:error" makes it raise there (a fatal step error)."""
        fault = injected_fault("FLEXSP_STEP_FAULT", rank)
        if fault == "exit":
            print(f"rank {rank}: injected fault (FLEXSP_STEP_FAULT) in step {step}: exiting", file=sys.stderr, flush=True)
            os._exit(3)
        if fault == "error":
            raise RuntimeError(f"injected fault (FLEXSP_STEP_FAULT) in step {step}")

    @staticmethod
    def _peer_hint(e: BaseException) -> str:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:400]
        low = msg.lower()
        if any(w in low for w in ("connection", "closed", "reset", "peer", "broken pipe", "timed out", "timeout",
                                  "abort", "ncclremoteerror", "socket")):
            return f"a peer rank disconnected or aborted ({msg})"
        return msg

    def _describe(self, e: BaseException, step: int, i: int, mg: MyGroup, per_device: int) -> str:
        ids = [q.get("id") for q in mg.group["sequences"]][:12]
        where = (f"step {step}, micro-batch {i}, SP group of degree {mg.degree} ranks {mg.ranks} "
                 f"({per_device} tokens per device, sequences {ids})")
        oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                      getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
        text = str(e)
        if isinstance(e, oom_types) or "out of memory" in text.lower() or "can't allocate memory" in text:
            if self.device.type == "cuda":
                total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
                return (f"CUDA out of memory on cuda:{self.device_index} ({self.device_name}, {total:.1f} GiB) at "
                        f"{where}; the plan assumed this fits: lower planner.memory_budget_gb or "
                        "cluster.nodes[].device_memory_gb, or use activation checkpointing")
            return f"out of host memory at {where}; lower planner.memory_budget_gb"
        return f"{where}: {self._peer_hint(e)}"

    # ---------- profiling ----------

    def _profile_compute(self, req: Any) -> None:
        s = self._ready("profile_compute")
        if s.zero3 is not None or s.fill is not None:
            raise ValueError("profile_compute: this executor shards the model (zeroStage 3); profile with zeroStage 0")
        check_compute_request(req, s.shape)
        res: dict[str, Any] = {}

        def run() -> None:
            res.update(profile_compute(
                req, rank=s.rank, world_size=s.world_size, shape=s.shape, model=s.model, grads=s.grads,
                source=s.source, dp=s.dp, device=self.device, device_name=self.device_name,
                autocast=self._autocast, model_state_bytes=4 * s.layout.total * 4,
            ))

        self._fatal_on_error(run)
        self.emit({"type": "profile_compute_done", "rank": s.rank, "result": res})

    def _profile_alltoall(self, req: Any) -> None:
        s = self._ready("profile_alltoall")
        if s.world_size > 1 and s.dp is None:
            raise ValueError("profile_alltoall: data plane not connected")
        check_alltoall_request(req, s.world_size, self._in_pool(s))
        res: dict[str, Any] = {}
        self._fatal_on_error(lambda: res.update(
            profile_alltoall(req, rank=s.rank, world_size=s.world_size, dp=s.dp, device=self.device)))
        self.emit({"type": "profile_alltoall_done", "rank": s.rank, "result": res})

    # ---------- checkpoints ----------

    def _save(self, path: Any) -> None:
        s = self._ready("save")
        if s.fill is not None:
            raise ValueError("save: the ZeRO-3 shards are created at peers (send peers first)")
        if s.zero3 is not None:
            p, m, v = s.zero3.gather_flat()
            data = encode_state(s.shape, s.step, p, m, v)
        else:
            data = encode_state(s.shape, s.step, s.params, s.m, s.v)
        write_atomic(str(path), data)
        self.emit({"type": "saved", "rank": s.rank, "path": path, "sha256": sha256_hex(data), "bytes": len(data)})

    def _load(self, path: Any, sha256: Any) -> None:
        s = self._ready("load")
        try:
            with open(str(path), "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"load: cannot read {path}: {e.strerror or e}") from None
        if sha256 is not None:
            got = sha256_hex(data)
            if got != sha256:
                raise ValueError(f"load: {path}: sha256 {got[:12]}… is not {str(sha256)[:12]}…")
        st = decode_state(data, s.shape, str(path))
        if st.params.numel() != s.layout.total:
            raise ValueError(f"load: {path} holds {st.params.numel()} values, layout has {s.layout.total}")
        if s.fill is not None:
            raise ValueError("load: the ZeRO-3 shards are created at peers (send peers first)")
        if s.zero3 is not None:
            s.zero3.load_flat(st.params, st.m, st.v)
        else:
            with torch.no_grad():
                s.params.copy_(st.params)
                s.m.copy_(st.m)
                s.v.copy_(st.v)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        s.step = st.step
        self.emit({"type": "loaded", "rank": s.rank, "path": path})

    def close(self) -> None:
        """Closes the process groups, the store and the token source. Idempotent."""
        s = self.s
        if s is None:
            return
        self.s = None
        if s.dp is not None:
            s.dp.close()
        if s.listener is not None:
            s.listener.close()
        s.source.close()
