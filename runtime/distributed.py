"""Processes and devices: one process, or a process group started by ``torchrun`` (or by a
task's own launcher), NCCL on GPUs and gloo on the CPU."""
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError


@dataclass
class Runtime:
    """This process's place in the run: its device, rank, the number of processes and its rank on
    the node."""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process logs, writes outputs and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def all_sum(self, values: Sequence[float]) -> List[float]:
        """``values`` summed over all processes."""
        return all_reduce_sum(values, self.device).tolist()

    def barrier(self) -> None:
        if _group_ready():
            dist.barrier()

    def close(self) -> None:
        if _group_ready():
            dist.destroy_process_group()


def _group_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values, device: Optional[torch.device] = None) -> np.ndarray:
    """``values`` (numbers or an array) summed over all processes, as float64 (as given when there
    is no process group). The sum runs on ``device``, which NCCL needs to be this process's GPU."""
    array = np.asarray(values, dtype=np.float64)
    if not _group_ready():
        return array
    tensor = torch.tensor(array, dtype=torch.float64, device=device or "cpu")
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def resolve_device(request: str, local_rank: int) -> torch.device:
    """``auto`` (this process's GPU when there is one, else the CPU), ``cpu``, ``cuda`` (this
    process's GPU) or ``cuda:N``."""
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if request.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {request} asked for, but CUDA is not available")
    if request == "cuda":
        request = f"cuda:{local_rank}"
    try:
        return torch.device(request)
    except RuntimeError:
        raise UserError(f"unknown --device {request!r}") from None


def init_runtime(device: str = "auto", rank: Optional[int] = None, world: Optional[int] = None,
                 local_rank: Optional[int] = None, init_method: Optional[str] = None, backend: str = "") -> Runtime:
    """Pick this process's device and join the process group when there is more than one process.

    Ranks come from the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) unless
    ``rank`` and ``world`` are given, as by a launcher that starts its processes itself and passes
    ``init_method`` (``tcp://HOST:PORT``). The backend is NCCL on GPUs and gloo on the CPU unless named.
    """
    if rank is None or world is None:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        stop_with_launcher()
    local_rank = rank if local_rank is None else local_rank
    rt = Runtime(resolve_device(device, local_rank), rank, world, local_rank)
    if rt.device.type == "cuda":
        torch.cuda.set_device(rt.device)
    if world > 1:
        dist.init_process_group(backend or ("nccl" if rt.device.type == "cuda" else "gloo"),
                                init_method=init_method, world_size=world, rank=rank)
    return rt


def stop_with_launcher() -> None:
    """In a process started by a launcher (torchrun): :func:`die_with_parent`, so no worker trains
    on alone. Elsewhere this does nothing."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent()


def die_with_parent(parent: Optional[int] = None) -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies, however it dies (``kill -9``
    included); used by launched training processes and the renderers' worker pools. ``parent``: the
    process id the caller started with (a pool passes its own), so that a parent that died while
    this process was still starting up is noticed too. On other systems this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid() if parent is None else parent
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
