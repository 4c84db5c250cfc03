"""Correlations and their permutation p-values, checked by hand."""

import math

import numpy as np
import pytest

from lmroute.evaluation.correlation import correlation, pearson, ranks, spearman
from lmroute.exceptions import ConfigError


def test_pearson_by_hand():
    # dx = (-1.5, -0.5, 0.5, 1.5), dy = (-0.5, 0.5, -0.5, 0.5): dx.dy = 1, |dx|^2 = 5, |dy|^2 = 1
    assert pearson([0, 1, 2, 3], [0, 1, 0, 1]) == pytest.approx(1 / math.sqrt(5))
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)


def test_ranks_share_ties():
    assert ranks([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    assert ranks([3, 1, 2]).tolist() == [3, 1, 2]


def test_spearman_is_pearson_of_ranks():
    # ranks of y = (1, 3, 2): dx = (-1, 0, 1), dy = (-1, 1, 0): r = 1 / 2
    assert spearman([1, 2, 3], [10, 300, 20]) == pytest.approx(0.5)
    assert spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)


def test_exact_permutation_p_value():
    # Of the 24 orderings of 4 points, two reach |rho| = 1 (the order and its reverse).
    c = correlation([1, 2, 3, 4], [2, 4, 6, 8])
    assert (c.n, c.exact, c.permutations) == (4, True, 24)
    assert c.pearson == pytest.approx(1.0) and c.spearman == pytest.approx(1.0)
    assert c.p_value == pytest.approx(2 / 24)
    # With 3 points every ordering has |rho| >= 1/2: nothing can be concluded.
    assert correlation([1, 2, 3], [10, 300, 20]).p_value == pytest.approx(1.0)


def test_sampled_permutation_p_value_is_seeded():
    x = np.arange(10.0)
    y = x + np.array([0.5, -0.3, 2.0, -1.0, 0.0, 1.5, -2.0, 0.7, 0.1, -0.4])
    a = correlation(x, y, permutations=2000, seed=1)
    assert not a.exact and a.permutations == 2000
    assert a == correlation(x, y, permutations=2000, seed=1)
    assert 1 / 2001 <= a.p_value < 0.01  # a strong rank correlation over 10 points
    assert correlation(x, 1 + x % 3, permutations=2000).p_value > 0.05  # 1 2 3 1 2 3 ...: no trend


@pytest.mark.parametrize(
    "x, y, message",
    [([1, 2], [1, 2], "at least 3"), ([1, 2, 3], [1, 2], "one length"), ([1, 1, 1], [1, 2, 3], "constant")],
)
def test_bad_input(x, y, message):
    with pytest.raises(ConfigError, match=message):
        correlation(x, y)
    with pytest.raises(ConfigError, match="finite"):
        pearson([1, 2, float("nan")], [1, 2, 3])
