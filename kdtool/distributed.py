"""Multi-process training through torchrun and PyTorch's DistributedDataParallel.

kdtool detects the variables torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``), joins the
process group (NCCL on CUDA, gloo on CPU) and otherwise runs as a single process. ``--batch-size``
is per process: the global batch is ``batch_size × world_size``, and with the usual linear
scaling rule the learning rate should grow in proportion to the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kdtool.errors import KdtoolError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """True unless this is a torchrun process of rank > 0 (only rank 0 writes files)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_env(device_name: str) -> tuple[DistEnv, torch.device]:
    """Join the torchrun process group if there is one; return this process's env and device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv(), select_device(device_name)
    env = DistEnv(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = select_device(device_name, env.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return env, device


_DEVICE_CHOICES = "auto, cpu, cuda, cuda:N (N = GPU index), mps or xpu"


def select_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; under torchrun a bare ``cuda`` means this rank's GPU.

    A device this machine does not have (``cuda`` without a GPU, ``cuda:3`` with one GPU, ``mps``
    off Apple silicon) or a malformed name is a :class:`KdtoolError`, so the command line stops with
    one line before it reads data or writes anything.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise KdtoolError(f"unknown --device {name!r}: use {_DEVICE_CHOICES}") from None
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    _check_available(device, name)
    return device


def check_device(name: str) -> None:
    """Fail with one line unless ``--device name`` exists here (for this torchrun rank, under torchrun)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    select_device(name, local_rank)


def _check_available(device: torch.device, name: str) -> None:
    if device.type == "cpu":
        return
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise KdtoolError(f"--device {name}: Apple's MPS backend is not available on this machine; use cpu or auto")
        return
    backend = getattr(torch, device.type, None) if device.type in ("cuda", "xpu") else None
    if backend is None:
        raise KdtoolError(f"--device {name}: kdtool does not train on {device.type!r} devices; use {_DEVICE_CHOICES}")
    kind = device.type.upper()
    count = backend.device_count() if backend.is_available() else 0
    if count == 0:
        built = device.type != "cuda" or torch.version.cuda is not None
        why = "no GPU is visible" if built else f"this torch ({torch.__version__}) is built without CUDA"
        raise KdtoolError(f"--device {name}: no {kind} device here ({why}); use --device cpu, or auto to take a "
                          f"GPU when there is one")  # fmt: skip
    if device.index is not None and device.index >= count:
        which = f"{device.type}:0" if count == 1 else f"{device.type}:0 to {device.type}:{count - 1}"
        raise KdtoolError(f"--device {device}: this machine has {count} {kind} device{'s' if count > 1 else ''} "
                          f"({which})")  # fmt: skip


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (a no-op in a single process)."""
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """The largest value of ``tensor`` over all processes, in place (a no-op in a single process)."""
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def average_gradients(params: Iterable[torch.nn.Parameter], env: DistEnv) -> None:
    """Average gradients of parameters that live outside the DDP-wrapped model (e.g. LLS's Q),
    exactly as DDP averages the model's, so they stay identical on every rank."""
    if not env.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(env.world_size)


def max_divergence(params: Iterable[torch.Tensor], env: DistEnv) -> float:
    """Largest absolute difference between any rank's tensors (parameters, method buffers such as
    OLS's soft labels) and rank 0's (0.0 in one process)."""
    params = list(params)
    if not env.enabled or not params:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=params[0].device)
    for p in params:
        reference = p.detach().clone()
        dist.broadcast(reference, src=0)
        worst = torch.maximum(worst, (p.detach() - reference).abs().max().double())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
