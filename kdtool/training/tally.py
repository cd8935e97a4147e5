"""What an epoch's training steps leave for its metrics row, kept on the device until the epoch ends.

A GPU step must not wait for the host, and every extra kernel launch is host time a bare loop does not
pay (bench/gpu.sh, part ``overhead``). So a step adds no running sums: it keeps a reference to its loss
and its number of correct predictions (device scalars it computed anyway), and the host reads them in
one stacked copy at the end of the epoch. Diverged losses (non-finite, or above :func:`loss_limit`) are
looked for every :data:`DIVERGENCE_CHECK_STEPS` steps in the same way, and the gradient norm is measured on every
:data:`GRAD_NORM_EVERY`-th step only (``grad_norm`` in ``metrics.csv`` is the mean over those steps,
``grad_norm_steps`` says how many they were).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from kdtool.distributed import DistEnv, all_reduce_max, all_reduce_sum
from kdtool.errors import RunDiverged, divergence_line

# Steps between two host reads of the losses for a diverged one: a diverged run stops within this many
# steps, and a GPU run pays one synchronisation per this many steps, not one per step.
DIVERGENCE_CHECK_STEPS = 50
# A finite loss this many times the run's first one (at least 1) has diverged too: a LeNet-5 NKD student whose loss
# went from 6.4 to 2e20 in its second epoch trained on to the end at chance accuracy, a finished run like any other.
# No method's loss grows this much while it trains (a warmed-up DKD or a weighted KD term: tens of times at most).
EXPLOSION_FACTOR = 1e4
# Steps between two gradient-norm measurements (the first step of every epoch is one): the norm of a
# whole network's gradient is a reduction over every parameter, launched per step for a figure that a
# sample of the steps estimates as well (the PLS analysis reads an epoch's mean).
GRAD_NORM_EVERY = 10


def loss_limit(first_loss: float | None) -> float:
    """The largest loss of a run whose first step's loss was ``first_loss`` that is not a divergence (no limit
    before the first step, or when it was not finite: that step diverged already)."""
    if first_loss is None or not math.isfinite(first_loss):
        return math.inf
    return EXPLOSION_FACTOR * max(1.0, abs(first_loss))


class EpochTally:
    """One epoch's per-step losses, hits, sizes, learning rates and sampled gradient norms.

    :meth:`check` raises :class:`~kdtool.errors.RunDiverged` at the first loss seen on any rank that is not
    finite or is above ``first_loss``'s :func:`loss_limit` (the ranks agree on the earliest step over all of
    them), so every rank stops at the same step. ``first_loss``: the run's first step's loss, None before it.
    """

    def __init__(self, epoch: int, steps_per_epoch: int, device: torch.device, env: DistEnv,
                 first_loss: float | None = None) -> None:  # fmt: skip
        self.epoch, self.steps_per_epoch, self.device, self.env = epoch, steps_per_epoch, device, env
        self.first_loss = first_loss
        self.losses: list[torch.Tensor] = []
        self.hits: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.lr_sum = 0.0
        self.grad_norms: list[torch.Tensor] = []
        self.checked = 0  # losses already looked at by check()

    @staticmethod
    def wants_grad_norm(step: int) -> bool:
        return step % GRAD_NORM_EVERY == 0

    def record(self, loss: torch.Tensor, hits: torch.Tensor, size: int, lr: float) -> None:
        """One step: its (detached) loss, correct predictions, samples trained on and learning rate."""
        self.losses.append(loss)
        self.hits.append(hits)
        self.sizes.append(size)
        self.lr_sum += lr

    @property
    def steps(self) -> int:
        return len(self.losses)

    def check(self, lr_at: Callable[[int], float]) -> None:
        """Raise RunDiverged if a loss recorded since the last check (on any rank) is not finite or above the
        limit."""
        new = self.losses[self.checked :]
        if not new and not self.env.enabled:
            return
        flags = torch.zeros(1, dtype=torch.long, device=self.device)
        if new:
            steps = torch.arange(self.checked, self.checked + len(new), device=self.device)
            # steps_per_epoch + 1 - step for a bad step, 0 for none: the largest over steps and ranks is the earliest
            losses = torch.stack(new)
            bad = ~torch.isfinite(losses) | (losses > loss_limit(self.first_loss))
            flags = torch.where(bad, self.steps_per_epoch + 1 - steps, 0)
        flag = int(all_reduce_max(flags.max(), self.env).item())
        self.checked += len(new)
        if flag == 0:
            return
        step = self.steps_per_epoch + 1 - flag
        run_step = self.epoch * self.steps_per_epoch + step
        value = self.losses[step].item() if step < len(self.losses) else math.nan  # another rank's step: its loss
        record = {"epoch": self.epoch + 1, "step": run_step + 1, "lr": lr_at(run_step),
                  "loss": "nan" if math.isnan(value) else f"{value:.4g}"}  # fmt: skip
        if math.isfinite(value) and self.first_loss is not None:
            record["first_loss"] = self.first_loss
        raise RunDiverged(divergence_line(record), record)

    def row(self) -> dict[str, float]:
        """The epoch's training metrics, summed over the ranks (one host read)."""
        steps, device = self.steps, self.device
        if steps:
            sizes = torch.tensor(self.sizes, dtype=torch.float32).to(device, non_blocking=True)
            loss_sum = torch.dot(torch.stack(self.losses).float(), sizes)
            correct = torch.stack(self.hits).float().sum()
        else:
            loss_sum = correct = torch.zeros((), device=device)
        totals = all_reduce_sum(torch.stack([loss_sum, correct, torch.tensor(float(sum(self.sizes)), device=device)]),
                                self.env)  # fmt: skip
        # The network's gradient is the same on every rank (DDP averages it), as is the number of steps: no reduction.
        norm = torch.stack(self.grad_norms).float().mean() if self.grad_norms else torch.zeros((), device=device)
        loss_total, correct_total, n, grad_norm = torch.cat([totals, norm.view(1)]).tolist()
        return {"lr_mean": self.lr_sum / max(1, steps), "train_loss": loss_total / max(1.0, n),
                "train_acc": correct_total / max(1.0, n), "grad_norm": grad_norm,
                "grad_norm_steps": len(self.grad_norms)}  # fmt: skip
