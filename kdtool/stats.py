"""Spearman's rank correlation with its two-sided p-value, in torch and the standard library.

It replaces ``scipy.stats.spearmanr`` (kdtool's only use of SciPy) and gives the same values: ties
take their average rank, and the p-value is the two-sided tail of Student's t with n − 2 degrees of
freedom, ``t = ρ·√((n−2)/(1−ρ²))``.
"""

from __future__ import annotations

import math

import torch


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing the mean of their ranks."""
    ordered, order = values.double().sort(stable=True)
    _, counts = torch.unique_consecutive(ordered, return_counts=True)
    ends = counts.cumsum(0).double()
    shared = (ends - counts + 1 + ends) / 2  # mean of the ranks start..end of each run of ties
    ranks = torch.empty_like(ordered)
    ranks[order] = shared.repeat_interleave(counts)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(ρ, two-sided p-value) of two 1-D tensors of equal length.

    ρ is NaN when either is constant or has one value; the p-value is NaN below 3 values (no degree of freedom).
    """
    n = a.numel()
    ra, rb = average_ranks(a.flatten()) - (n + 1) / 2, average_ranks(b.flatten()) - (n + 1) / 2
    norm = math.sqrt(float(ra.square().sum()) * float(rb.square().sum()))
    if norm == 0.0:
        return math.nan, math.nan
    rho = max(-1.0, min(1.0, float((ra * rb).sum()) / norm))
    dof = n - 2
    if dof == 0:
        return rho, math.nan
    if abs(rho) == 1.0:
        return rho, 0.0
    t_squared = rho * rho * dof / ((1.0 - rho) * (1.0 + rho))
    return rho, regularized_beta(dof / (dof + t_squared), dof / 2, 0.5)


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz's method)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below the mean: use the symmetry
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - log_beta
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * result
