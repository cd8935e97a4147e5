import math

import pytest
import torch

from kdtool.stats import average_ranks, regularized_beta, spearman

# (a, b, rho, p) from scipy.stats.spearmanr (SciPy 1.16), the function kdtool.stats replaces
SCIPY = [
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8, 0.10408803866182788),
    ([1, 1, 2, 3, 5, 8], [0, 2, 1, 3, 4, 4], 0.8823529411764706, 0.019947079177691836),
    ([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8], 0.19885368120992467, 0.6368617833253286),
]


@pytest.mark.parametrize(("a", "b", "rho", "p"), SCIPY)
def test_spearman_matches_scipy(a, b, rho, p):
    got_rho, got_p = spearman(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert got_rho == pytest.approx(rho, rel=1e-12) and got_p == pytest.approx(p, rel=1e-10)


def test_ties_share_their_mean_rank():
    assert average_ranks(torch.tensor([10.0, 20.0, 10.0, 30.0, 20.0])).tolist() == [1.5, 3.5, 1.5, 5.0, 3.5]


def test_constant_input_and_perfect_order():
    assert all(math.isnan(v) for v in spearman(torch.ones(5), torch.arange(5.0)))
    assert spearman(torch.arange(6.0), -torch.arange(6.0)) == (-1.0, 0.0)
    rho, p = spearman(torch.tensor([1.0, 2.0]), torch.tensor([5.0, 3.0]))  # scipy: -1, NaN
    assert rho == pytest.approx(-1.0) and math.isnan(p)


def test_regularized_beta_known_values():
    assert regularized_beta(0.5, 2.0, 2.0) == pytest.approx(0.5, abs=1e-14)
    assert regularized_beta(0.3, 1.0, 1.0) == pytest.approx(0.3, abs=1e-14)  # uniform CDF
    assert regularized_beta(0.2, 1.0, 3.0) == pytest.approx(1 - 0.8**3, abs=1e-14)
