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


def select_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; under torchrun a bare ``cuda`` means this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (a no-op in a single process)."""
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
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
