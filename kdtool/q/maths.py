"""The target maths shared by LLS (``losses/lls.py``) and Q artifacts (``q/matrix.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mixture_log_target(q_logits_rows: torch.Tensor, labels: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """``log((1-α)·e_y + α·softmax(q))`` row-wise, computed without ever taking ``log(0)``; ``α`` a number
    or one per row (B×1, in (0, 1)).

    Off the label it is ``log α + log_softmax(q)``; on the label the two mixture parts are
    combined with log-sum-exp (one value per row, scattered back: no B×K mask is built).
    """
    index = labels[:, None]
    if torch.is_tensor(alpha):
        log_mix = F.log_softmax(q_logits_rows.float(), dim=1) + alpha.log()
        return log_mix.scatter(1, index, torch.logaddexp(log_mix.gather(1, index), torch.log1p(-alpha)))
    log_mix = F.log_softmax(q_logits_rows.float(), dim=1) + math.log(alpha)
    on_label = log_mix.gather(1, index)
    # full_like fills on the device: no host-to-device copy of the constant per step
    on_label = torch.logaddexp(on_label, torch.full_like(on_label, math.log1p(-alpha)))
    return log_mix.scatter(1, index, on_label)
