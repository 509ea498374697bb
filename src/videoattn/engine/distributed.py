"""Process-group set-up for ``torchrun`` (DistributedDataParallel) and small collective helpers.

``torchrun`` exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (``gloo`` on CPU, ``nccl`` on CUDA).
Without them everything runs as a single process and every helper is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "all_gather_objects", "all_reduce_sum", "barrier", "init_distributed", "pick_device"]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    initialized_here: bool = False
    store: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialized_here = False
            if self.store is not None:  # the store's host waits (bounded) until every client is done
                with contextlib.suppress(Exception):
                    left = self.store.add("videoattn/closed", 1)
                    deadline = time.monotonic() + 30
                    while self.rank == 0 and left < self.world_size and time.monotonic() < deadline:
                        time.sleep(0.05)
                        left = self.store.add("videoattn/closed", 0)


def _check_gpus_per_node(device: str, local_rank: int) -> None:
    """Refuse more processes on this node than visible GPUs, before any CUDA call.

    ``torchrun`` exports ``LOCAL_WORLD_SIZE`` (processes on this node); every rank compares it with
    ``torch.cuda.device_count()`` so that all of them stop with the same message, instead of the
    surplus ranks dying in ``torch.cuda.set_device`` ("invalid device ordinal") while the others
    wait in the process-group rendezvous. Without ``LOCAL_WORLD_SIZE`` (another launcher) the
    local rank alone is checked.
    """
    from ..errors import ConfigError

    visible = torch.cuda.device_count()
    local_world = os.environ.get("LOCAL_WORLD_SIZE")
    processes = int(local_world) if local_world else local_rank + 1
    if processes <= visible and local_rank < visible:
        return
    counted = (f"LOCAL_WORLD_SIZE={processes} processes on this node" if local_world
               else f"LOCAL_RANK={local_rank} (at least {local_rank + 1} processes on this node)")
    raise ConfigError(f"config key 'train.device': got {device!r} with {counted} (this is local rank "
                      f"{local_rank}) but torch.cuda.device_count() is {visible}; one GPU per process is "
                      f"needed: start at most {visible} process(es) per node (torchrun --nproc-per-node "
                      f"{visible}) or train on CPU with gloo (train.device=cpu)")


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """The device of ``train.device`` = ``device`` (``auto``, ``cuda``, ``cpu``) for the process of
    ``local_rank``: its own GPU (made current) when CUDA is asked for or available, else the CPU."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from ..errors import ConfigError

            raise ConfigError("config key 'train.device': got 'cuda' but no CUDA device is available; "
                              "use 'auto' or 'cpu'")
        _check_gpus_per_node(device, local_rank)
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group if the environment asks for one; return who we are."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    initialized_here = False
    store = None
    if not dist.is_initialized():
        store = _rendezvous_store(rank, world_size)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, store=store)
        initialized_here = True
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen,
                       backend=backend, initialized_here=initialized_here, store=store)


def _rendezvous_store(rank: int, world_size: int) -> dist.Store:
    """The c10d store of torchrun's ``MASTER_ADDR:MASTER_PORT``, kept by the context so :meth:`DistContext.close`
    can make the process that hosts it (rank 0, when torchrun runs with
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``) leave last: a client whose store server vanished while it
    was still tearing its process group down aborts (exit -6) and fails an otherwise finished run."""
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                         is_master=rank == 0 and not agent_hosts_it, timeout=timedelta(minutes=30))


def all_reduce_sum(values: list[float] | torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a vector of numbers over all processes (float64; returned on CPU)."""
    tensor = torch.as_tensor(values, dtype=torch.float64)
    if ctx.enabled:
        on_device = tensor.to(ctx.device)
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        tensor = on_device.cpu()
    return tensor


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's ``obj`` in rank order (a one-element list when single-process)."""
    if not ctx.enabled:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
