"""A method's gradients averaged over torchrun ranks, row-sparse ones (LLS's Q) by their rows only.

The network's gradient is averaged by DistributedDataParallel; a method's own parameters live outside
it. A dense gradient goes through one all-reduce (:func:`kdtool.distributed.average_gradients`). A
row-sparse one (sparse COO with whole rows as entries: the rows ``Q[y]`` of a batch's labels) would
all-reduce K×K numbers of which at most ``batch`` rows are non-zero, so instead each rank contributes
its rows (indices and values), the rows are summed per index and divided by the number of ranks, in
rank order, so that every rank gets the same bits and applies the same update.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist

from kdtool.distributed import DistEnv, average_gradients
from kdtool.optim.lazysgd import gradient_rows


def average_method_gradients(params: Iterable[torch.nn.Parameter], env: DistEnv) -> None:
    """Average the gradients of a method's parameters over the ranks (a no-op in one process)."""
    if not env.enabled:
        return
    params = [p for p in params if p.grad is not None]
    average_gradients([p for p in params if not p.grad.is_sparse], env)
    for p in params:
        if p.grad.is_sparse:
            p.grad = average_rows(p.grad, env)


def average_rows(grad: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """The mean over the ranks of a row-sparse gradient, as a coalesced sparse tensor of the rows any
    rank touched (the same on every rank)."""
    rows, values = gradient_rows(grad)
    counts = [int(n) for n in _all_gather(torch.tensor([rows.numel()], device=rows.device), env)]
    longest = max(counts)  # all_gather takes one size: every rank pads its rows to the longest
    padded_rows = rows.new_zeros(longest)
    padded_rows[: rows.numel()] = rows
    padded_values = values.new_zeros(longest, *values.shape[1:])
    padded_values[: rows.numel()] = values
    all_rows = [r[:n] for r, n in zip(_all_gather(padded_rows, env), counts, strict=True)]
    all_values = [v[:n] for v, n in zip(_all_gather(padded_values, env), counts, strict=True)]
    union, where = torch.unique(torch.cat(all_rows), return_inverse=True)
    total = values.new_zeros(union.numel(), *values.shape[1:])
    start = 0
    for rank_rows, rank_values in zip(all_rows, all_values, strict=True):
        # one rank at a time, each with distinct rows: a fixed order of additions on every device
        total.index_add_(0, where[start : start + rank_rows.numel()], rank_values)
        start += rank_rows.numel()
    total.div_(env.world_size)
    return torch.sparse_coo_tensor(union[None], total, grad.shape, check_invariants=False, is_coalesced=True)


def _all_gather(tensor: torch.Tensor, env: DistEnv) -> list[torch.Tensor]:
    gathered = [torch.empty_like(tensor) for _ in range(env.world_size)]
    dist.all_gather(gathered, tensor.contiguous())
    return gathered
