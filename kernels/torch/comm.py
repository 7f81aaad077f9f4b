# The data plane of the torch executors: rendezvous through a TCPStore on global rank 0's endpoint, the process
# group (gloo for torch-cpu, NCCL with device-bound init for cuda), the pool of SP groups and barriers. Gradient
# reduction is DDP's or FSDP2's (trainer.py).
#
# Security: the store, gloo and NCCL are unauthenticated, as in every PyTorch job. The store listens only on
# the init's bindHost (a socket we bind ourselves and hand to TCPStore), gloo/NCCL are pinned to the interface
# that carries that address, and everything lives only as long as the executors. The run secret is checked
# through the store (each rank publishes a digest of it) so a rank of another run is refused with a clear error;
# this catches mistakes, it is not authentication against an attacker on the cluster network.
#
# SP-group pool: at `peers` every rank creates, in one fixed order (degree 2, 4, ..., world size; blocks in rank
# order), every aligned block [k·d, (k+1)·d) of every power-of-two degree d: N−1 groups for N ranks, the only
# groups the planner emits. NCCL uses split_group (one call per degree, from the device-bound world group);
# gloo uses new_group(use_local_synchronization=True), which torch has for both; both with the run's collective
# timeout. Each group is warmed with one all-to-all (the collective steps use, so NCCL sets up its all-to-all
# connections here, not in the first step), creation is timed per degree, and a step looks groups up by (degree,
# first rank). On a fatal error the process groups are aborted, not destroyed: destroying waits for pending work,
# which can hang on NCCL when a peer is gone.
from __future__ import annotations

import datetime
import fcntl
import hashlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


def interface_of(address: str) -> str | None:
    """The name of the network interface carrying IPv4 `address` (e.g. "lo" for 127.0.0.1), if any."""
    try:
        want = socket.inet_aton(socket.gethostbyname(address))
    except OSError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                got = fcntl.ioctl(s.fileno(), 0x8915, req)[20:24]  # SIOCGIFADDR
            except OSError:
                continue
            if got == want:
                return name
    return None


class StoreListener:
    """Rank 0's store: a socket bound to bindHost only, served by a TCPStore (created at `init`)."""

    def __init__(self, bind_host: str, world_size: int, timeout_s: float) -> None:
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((bind_host, 0))
        except OSError as e:
            self.sock.close()
            raise RuntimeError(f"rendezvous: cannot listen on {bind_host}: {e.strerror or e}") from None
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.store = dist.TCPStore(
            bind_host,
            self.port,
            world_size,
            True,
            datetime.timedelta(seconds=timeout_s),
            wait_for_workers=False,
            master_listen_fd=self.sock.fileno(),
        )

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class PoolDegree:
    """Creation of the pool's groups of one degree."""

    degree: int
    groups: int
    ms: float


class DataPlane:
    """The process group, the SP-group pool and the collectives the executor needs."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        backend: str,
        device: torch.device,
        secret: str,
        listener: StoreListener | None,
        endpoints: list[dict[str, Any]],
        connect_timeout_s: float,
        op_timeout_s: float,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.log = log
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.backend = backend
        by_rank = {int(e["rank"]): e for e in endpoints if isinstance(e, dict) and "rank" in e}
        missing = [r for r in range(world_size) if r not in by_rank]
        if missing:
            raise RuntimeError(f"peers: no endpoint for rank(s) {', '.join(map(str, missing))}")
        host, port = str(by_rank[0]["host"]), int(by_rank[0]["port"])
        if listener is not None:
            store = listener.store
        else:
            try:
                store = dist.TCPStore(host, port, world_size, False, datetime.timedelta(seconds=connect_timeout_s))
            except Exception as e:  # noqa: BLE001 - torch raises several types here
                raise RuntimeError(
                    f"rendezvous: cannot reach rank 0's store at {host}:{port} within {connect_timeout_s:.0f} s "
                    f"({str(e).splitlines()[0]})"
                ) from None
        self.store = store
        self._check_secret(secret, connect_timeout_s)
        kw: dict[str, Any] = {}
        if backend == "nccl":
            kw["device_id"] = device
        dist.init_process_group(
            backend,
            store=dist.PrefixStore("pg", store),
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=op_timeout_s),
            **kw,
        )
        self.timeout = datetime.timedelta(seconds=op_timeout_s)
        self.pool: dict[tuple[int, int], Any] = {}
        self.pool_times: list[PoolDegree] = []
        self._create_pool()

    def _check_secret(self, secret: str, timeout_s: float) -> None:
        # A rank reads rank 0's digest before publishing its own, so it has its answer before rank 0 can give up.
        digest = hashlib.sha256(("flexsp-run:" + secret).encode()).hexdigest()[:32]
        self.store.set_timeout(datetime.timedelta(seconds=timeout_s))

        def get(r: int) -> str:
            try:
                return self.store.get(f"auth/{r}").decode()
            except Exception:  # noqa: BLE001 - a timeout or a lost store
                raise RuntimeError(f"rendezvous: rank(s) {r} did not join within {timeout_s:.0f} s") from None

        if self.rank == 0:
            self.store.set("auth/0", digest)
            for r in range(1, self.world_size):
                if get(r) != digest:
                    raise RuntimeError(f"rendezvous: rank {r} presented another run's secret (wrong data-plane secret)")
        else:
            theirs = get(0)
            self.store.set(f"auth/{self.rank}", digest)
            if theirs != digest:
                raise RuntimeError(
                    "rendezvous: rank 0 rejected this rank: wrong data-plane secret (another run's store)")

    def _create_pool(self) -> None:
        n = self.world_size
        d = 2
        use_split = self.backend == "nccl" and hasattr(dist, "split_group")
        while d <= n:
            blocks = [list(range(k * d, (k + 1) * d)) for k in range(n // d)]
            t0 = time.perf_counter()
            mine: Any = None
            if use_split:
                try:
                    mine = dist.split_group(split_ranks=blocks, timeout=self.timeout, group_desc=f"flexsp_sp{d}")
                except (RuntimeError, ValueError, TypeError) as e:  # refused up front, the same on every rank
                    self.log(f"SP-group pool: split_group refused ({str(e).splitlines()[0][:200]}); using new_group")
                    use_split = False
            if not use_split:
                for b in blocks:
                    if self.rank in b:
                        mine = dist.new_group(b, timeout=self.timeout, use_local_synchronization=True,
                                              group_desc=f"flexsp_sp{d}_{b[0]}")
            if mine is not None:
                first = self.rank - self.rank % d
                x = torch.full((d,), float(self.rank), device=self.device)
                y = torch.empty_like(x)
                dist.all_to_all_single(y, x, group=mine)
                want = torch.arange(first, first + d, dtype=y.dtype, device=self.device)
                if not torch.equal(y, want):
                    raise RuntimeError(f"SP-group pool: warm-up all-to-all of group ({d}, {first}) gave {y.tolist()}")
                self.pool[(d, first)] = mine
            self.pool_times.append(PoolDegree(d, len(blocks), (time.perf_counter() - t0) * 1000))
            d *= 2

    def in_pool(self, ranks: list[int]) -> bool:
        """Whether `ranks` is an aligned power-of-two block the pool holds (checked the same way on every rank)."""
        d = len(ranks)
        if d < 2 or d & (d - 1) or d > self.world_size or ranks[0] % d:
            return False
        return ranks == list(range(ranks[0], ranks[0] + d)) and ranks[0] + d <= self.world_size

    def group(self, ranks: list[int]) -> Any:
        """The pool's process group of `ranks` (this rank must be a member)."""
        g = self.pool.get((len(ranks), ranks[0]))
        if g is None:
            raise RuntimeError(f"SP-group pool has no group ({len(ranks)}, {ranks[0]}) for this rank")
        return g

    def barrier(self) -> None:
        """All ranks wait for each other (an all-reduce on the world group: works on gloo and NCCL alike)."""
        x = torch.zeros(1, device=self.device)
        dist.all_reduce(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self, abort: bool = False) -> None:
        """Tears the process groups down (best effort); `abort` (a fatal error) aborts them without waiting for
        pending collectives (NCCL's abort), where this torch has it."""
        try:
            if not dist.is_initialized():
                return
            if abort:
                groups = [*self.pool.values(), dist.group.WORLD]
                for g in groups:
                    try:
                        backend = g._get_backend(self.device) if hasattr(g, "_get_backend") else None
                        if backend is not None and hasattr(backend, "abort"):
                            backend.abort()
                    except Exception:  # noqa: BLE001
                        pass
                return
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass
