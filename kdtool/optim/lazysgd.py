"""Exact SGD for a matrix whose gradient touches few rows: LLS's Q at thousands of classes.

In a step only the rows ``Q[y]`` of the batch's labels get gradient; every other row only decays.
For such a row (gradient 0) one step of SGD with momentum μ, weight decay wd and learning rate η is
linear in the row ``r`` and its momentum ``m``::

    m' = μ·m + wd·r,   r' = r − η·m'      i.e.   [r'; m'] = A(η)·[r; m],   A(η) = [[1 − η·wd, −η·μ], [wd, μ]]

so n skipped steps are a product of n 2×2 matrices. :class:`RowLazySGD` updates the touched rows as
``torch.optim.SGD`` does, leaves the others alone and remembers the step each row was last brought up
to date with. For every step s since the oldest such step it keeps the product of the A's from s to
now (each step left-multiplies them all by its own A), so bringing a row up to date is one 2×2 product,
whatever the schedule did meanwhile (a warm-up or a cosine changes η every step). Products are only
formed forwards, like the recurrence itself: no inverses (det A = μ, so an inverse grows as μ⁻ⁿ).

Rows are brought up to date before they are read: a method reads the rows it needs through
:meth:`RowLazySGD.rows` (computed, kept for the step that follows, not stored: the step stores them
once, updated); every row at once before a state_dict, when the caller asks (:meth:`sync`: the engine
does at the end of every epoch) and when more steps are pending than the matrix has rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["RowLazySGD", "gradient_rows"]

# Elements per chunk when every row is brought up to date (two temporaries of this size, 4 MiB each).
_CHUNK_ELEMENTS = 2**20


def gradient_rows(grad: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique row indices of a row-sparse gradient (sparse COO with whole rows as entries, as
    ``F.embedding(..., sparse=True)`` gives) and each row's summed values (written into ``out`` rows
    when given, at least as many as the gradient has entries)."""
    if grad.is_coalesced():
        return grad.indices()[0], grad.values()
    rows, where = torch.unique(grad._indices()[0], return_inverse=True)
    values = grad._values()
    summed = values.new_zeros(rows.numel(), *values.shape[1:]) if out is None else out[: rows.numel()].zero_()
    return rows, summed.index_add_(0, where, values)


@dataclass
class _RowClock:
    """Which step each row of one parameter is up to date with, and the products that carry it to now."""

    rows: torch.Tensor  # K int64: the step each row is up to date with
    products: torch.Tensor  # capacity×2×2: products[j] carries a row from step base + j to the current step
    base: int


@dataclass
class _ReadRows:
    """Rows a method read since the last step, up to date with ``step`` (not stored in the parameter)."""

    step: int
    index: torch.Tensor  # sorted unique row indices
    r: torch.Tensor
    m: torch.Tensor


class RowLazySGD(torch.optim.SGD):
    """``torch.optim.SGD`` (momentum, no dampening, no Nesterov) whose param groups marked
    ``row_lazy=True`` take row-sparse gradients and are updated row-lazily, to the same result.

    A row-lazy parameter's momentum is a dense tensor like SGD's (``state[p]["momentum_buffer"]``), and
    ``state[p]["step"]`` counts its updates. A step that a gradient scaler skips (fp16 overflow) is not
    a step for any parameter, as with SGD. ``state_dict()`` brings every row up to date first, so a
    checkpoint needs nothing more. Read a row-lazy parameter through :meth:`rows`, or after :meth:`sync`;
    change it only through this optimizer (or right after a sync).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self._clocks: dict[torch.Tensor, _RowClock] = {}
        self._read: dict[torch.Tensor, _ReadRows] = {}
        self._scratch = _Scratch()
        for group in self._lazy_groups():
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("row_lazy parameters must be matrices (one row per label)")

    def _lazy_groups(self) -> list[dict]:
        return [g for g in self.param_groups if g.get("row_lazy")]

    def _lazy_params(self) -> list[torch.Tensor]:
        return [p for g in self._lazy_groups() for p in g["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lazy = [(g, p, p.grad) for g in self._lazy_groups() for p in g["params"] if p.grad is not None]
        for _, p, _ in lazy:
            p.grad = None  # torch's SGD skips parameters without a gradient: the dense groups only
        super().step()
        for group, p, grad in lazy:
            self._step_rows(p, grad, group)
            p.grad = grad
        return loss

    @torch.no_grad()
    def rows(self, param: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The rows ``index`` of a row-lazy ``param`` (repeats allowed) brought up to date, as a new tensor."""
        if not self.state[param]:
            return torch.index_select(param, 0, index)  # never stepped: nothing pending
        unique, where = torch.unique(index, return_inverse=True)
        read = self._read.get(param)
        if read is None or read.step != self.state[param]["step"] or not torch.equal(read.index, unique):
            read = self._read[param] = self._up_to_date(param, unique, "read")
        return torch.index_select(read.r, 0, where)

    @torch.no_grad()
    def sync(self, param: torch.Tensor | None = None) -> None:
        """Bring every row of ``param`` (default: of every row-lazy parameter) up to date."""
        for p in self._lazy_params() if param is None else [param]:
            if self.state[p]:  # else never stepped: nothing pending
                self._sync_all(p)

    def state_dict(self) -> dict:
        self.sync()  # every row up to date: the momentum and the step count are the whole lazy state
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._clocks.clear()  # a saved state has every row up to date with its step
        self._read.clear()

    # -- the lazy rows ---------------------------------------------------------------------------
    def _clock(self, p: torch.Tensor) -> _RowClock:
        state = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)  # SGD's first step sets it to g = μ·0 + g
            state["step"] = 0
        clock = self._clocks.get(p)
        if clock is None:
            # float64 keeps the products exact to ~1e-16 per step; MPS has no float64
            dtype = torch.float32 if p.device.type == "mps" else torch.float64
            products = torch.empty(p.shape[0] + 2, 2, 2, dtype=dtype, device=p.device)
            products[0] = torch.eye(2, dtype=dtype, device=p.device)
            rows = torch.full((p.shape[0],), state["step"], dtype=torch.int64, device=p.device)
            clock = self._clocks[p] = _RowClock(rows, products, state["step"])
        return clock

    def _up_to_date(self, p: torch.Tensor, index: torch.Tensor, name: str) -> _ReadRows:
        """Rows ``index`` (unique) of ``p`` and their momentum, brought up to date in ``name`` scratch buffers."""
        clock, buf = self._clock(p), self.state[p]["momentum_buffer"]
        n = index.numel()
        r = torch.index_select(p, 0, index, out=self._scratch.rows(name + "_r", p, n))
        m = torch.index_select(buf, 0, index, out=self._scratch.rows(name + "_m", buf, n))
        _advance(r, m, clock.products[clock.rows[index] - clock.base].to(p.dtype), self._scratch)
        return _ReadRows(self.state[p]["step"], index, r, m)

    def _sync_all(self, p: torch.Tensor) -> None:
        clock, state = self._clock(p), self.state[p]
        self._read.pop(p, None)
        if clock.base == state["step"]:
            return  # nothing pending
        buf = state["momentum_buffer"]
        chunk = max(1, _CHUNK_ELEMENTS // max(1, p[0].numel()))
        for start in range(0, p.shape[0], chunk):
            window = slice(start, start + chunk)
            product = clock.products[clock.rows[window] - clock.base].to(p.dtype)
            _advance(p[window], buf[window], product, self._scratch)
        clock.rows.fill_(state["step"])
        clock.base = state["step"]
        clock.products[0] = torch.eye(2, dtype=clock.products.dtype, device=p.device)

    def _step_rows(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        """One SGD step: the gradient's rows as torch.optim.SGD updates them, the others by their clock."""
        clock, state = self._clock(p), self.state[p]
        rows, values = gradient_rows(grad, self._scratch.rows("grad", p, grad._nnz()))
        # The rows are brought up to date as one batch of exactly these rows (a read is reused only if it
        # holds them all), the same batch on every torchrun rank: the ranks get the same bits.
        read = self._read.pop(p, None)
        if read is None or read.step != state["step"] or not torch.equal(read.index, rows):
            read = self._up_to_date(p, rows, "step")
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        r, m = read.r, read.m
        g = values
        if wd != 0:  # the same operations as torch.optim.SGD
            g = torch.add(values, r, alpha=wd, out=self._scratch.rows("g", p, rows.numel()))
        m.mul_(mu).add_(g)
        r.add_(m, alpha=-lr)
        p.index_copy_(0, rows, r)
        state["momentum_buffer"].index_copy_(0, rows, m)
        # every pending product moves on by this step's matrix; a row brought up to date now needs none
        pending = state["step"] - clock.base + 1
        step_matrix = torch.tensor([[1.0 - lr * wd, -lr * mu], [wd, mu]], dtype=clock.products.dtype)
        clock.products[:pending] = step_matrix.to(p.device) @ clock.products[:pending]
        clock.products[pending] = torch.eye(2, dtype=clock.products.dtype, device=p.device)
        state["step"] += 1
        clock.rows[rows] = state["step"]
        if pending + 1 >= clock.products.shape[0]:
            self._sync_all(p)  # bounds the products kept: one full pass per K steps, O(K) a step


class _Scratch:
    """Row buffers reused from step to step: a fresh B×K tensor costs its page faults on every step."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def rows(self, name: str, like: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` rows shaped like ``like``'s (contents undefined)."""
        buffer = self._buffers.get(name)
        fits = buffer is not None and buffer.shape[0] >= n and buffer.shape[1:] == like.shape[1:]
        if not fits or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffers[name] = like.new_empty(n, *like.shape[1:])
        return buffer[:n]


def _advance(
    r: torch.Tensor, m: torch.Tensor, product: torch.Tensor, scratch: _Scratch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[r; m]`` times each row's 2×2 ``product`` (n×2×2), in place; returns ``r, m``."""
    p00, p01, p10, p11 = (product[:, i, j, None] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    from_r = torch.mul(r, p10, out=scratch.rows("from_r", r, r.shape[0]))
    r.mul_(p00).addcmul_(m, p01)
    m.mul_(p11).add_(from_r)
    return r, m
