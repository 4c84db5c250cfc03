"""Weighted Bradley–Terry with ties, the anchor of same-player battles, and Elo tiers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _bradley_terry_reference import LN10, direct_logistic_fit, reference_design

from lmroute.exceptions import DataError
from lmroute.training import bradley_terry as bt


def random_battles(rng, n, num_players, *, same=0.0):
    a = rng.integers(num_players, size=n)
    b = (a + rng.integers(1, num_players, size=n)) % num_players
    b = np.where(rng.random(n) < same, a, b)
    strength = np.linspace(1.0, -1.0, num_players)
    p_a = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n)
    outcome = np.where(u < 0.2, bt.TIE, np.where(rng.random(n) < p_a, bt.A_WINS, bt.B_WINS))
    return a, b, outcome


def test_outcome_codes():
    assert bt.outcome_codes(["model_a", "model_b", "tie", "tie (bothbad)"]).tolist() == [0, 1, 2, 2]
    with pytest.raises(DataError, match="unknown battle winner 'draw'"):
        bt.outcome_codes(["model_a", "draw"])


def test_tie_counts_half_a_win_each_way():
    # one win of 0 over 1 and one tie: 1.5 wins against 0.5, so P(0 beats 1) = 0.75
    counts = bt.count_wins(np.array([0, 0]), np.array([1, 1]), np.array([bt.A_WINS, bt.TIE]), 2)
    assert counts.tolist() == [[0, 1.5, 0], [0.5, 0, 0], [0, 0, 0]]
    r = bt.fit_ratings(counts)
    assert r[0] - r[1] == pytest.approx(math.log(3), abs=1e-9)
    assert r.sum() == pytest.approx(0.0, abs=1e-12)


def test_same_player_battles_play_the_anchor():
    # model_a won 3 of 4 battles inside one tier: in the reference's design that is the anchor
    # beating the tier 3 times out of 4, so sigmoid(r) = 1/4
    a = np.zeros(4, dtype=int)
    outcome = np.array([bt.A_WINS] * 3 + [bt.B_WINS])
    counts = bt.count_wins(a, a, outcome, 1)
    assert counts.tolist() == [[0, 1], [3, 0]]
    assert bt.fit_ratings(counts)[0] == pytest.approx(-math.log(3), abs=1e-9)
    assert bt.count_wins(a, a, outcome, 1, same_player="drop").sum() == 0


@pytest.mark.parametrize("same", [0.0, 0.3])
def test_fit_equals_the_reference_weighted_regression(same):
    rng = np.random.default_rng(7)
    num_players = 5
    a, b, outcome = random_battles(rng, 400, num_players, same=same)
    weights = 10 * 10 ** rng.uniform(-0.5, 1.0, size=a.size)
    coef = direct_logistic_fit(*reference_design(a, b, outcome, num_players, weights))
    ratings = bt.fit_ratings(bt.count_wins(a, b, outcome, num_players, weights=weights))
    if same == 0.0:  # free up to a shift: compare differences
        coef = coef - coef.mean()
    np.testing.assert_allclose(ratings, LN10 * coef, atol=1e-8)
    np.testing.assert_allclose(bt.to_elo(ratings), 1000 + 400 * coef, atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # penalty=None is what the reference passes
def test_fit_matches_sklearn_like_the_reference():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    a, b, outcome = random_battles(rng, 300, 4, same=0.2)
    weights = rng.uniform(1, 100, size=a.size)
    X, Y, w = reference_design(a, b, outcome, 4, weights)
    lr = sklearn.LogisticRegression(fit_intercept=False, penalty=None, tol=1e-12, max_iter=10_000)
    lr.fit(X, Y, sample_weight=w)
    ratings = bt.fit_ratings(bt.count_wins(a, b, outcome, 4, weights=weights))
    np.testing.assert_allclose(ratings, LN10 * lr.coef_[0], atol=1e-5)


def test_batched_fit_equals_separate_fits():
    rng = np.random.default_rng(1)
    a, b, outcome = random_battles(rng, 200, 4, same=0.1)
    batch = np.stack([bt.count_wins(a, b, outcome, 4, weights=rng.uniform(0.1, 5, a.size)) for _ in range(6)])
    together = bt.fit_ratings(batch.reshape(2, 3, 5, 5))
    assert together.shape == (2, 3, 4)
    separate = np.stack([bt.fit_ratings(c) for c in batch])
    np.testing.assert_allclose(together.reshape(6, 4), separate, atol=1e-10)


def test_l2_keeps_an_unbeaten_player_finite():
    counts = np.zeros((4, 4))
    counts[0, 1] = counts[0, 2] = 5.0  # player 0 never loses
    counts[1, 2] = counts[2, 1] = 3.0
    r = bt.fit_ratings(counts, l2=1e-6)
    assert np.all(np.isfinite(r)) and r[0] - r[1] > 5
    balanced = np.array([[0, 4, 0], [2, 0, 0], [0, 0, 0.0]])
    assert bt.fit_ratings(balanced, l2=1e-6)[0] - bt.fit_ratings(balanced, l2=1e-6)[1] == pytest.approx(
        math.log(2), abs=1e-4
    )


def test_empty_counts_give_zero_ratings():
    assert bt.fit_ratings(np.zeros((2, 4, 4))).tolist() == [[0.0] * 3] * 2


def brute_force_tiers(values, num_tiers):
    """Best contiguous split of sorted values into at most num_tiers groups (sum of variances)."""
    n = len(values)
    best = (math.inf, None)
    for k in range(1, min(num_tiers, n) + 1):
        for cuts in itertools.combinations(range(1, n), k - 1):
            bounds = [0, *cuts, n]
            cost = sum(np.var(values[s:e]) for s, e in itertools.pairwise(bounds))
            if cost < best[0] - 1e-12:
                best = (cost, bounds)
    return best[1]


@pytest.mark.parametrize(("n", "num_tiers"), [(7, 3), (8, 4), (5, 2), (4, 10)])
def test_tiers_are_the_least_variance_split(n, num_tiers):
    rng = np.random.default_rng(n * 10 + num_tiers)
    ratings = rng.normal(0, 1, size=n)
    tiers = bt.compute_tiers(ratings, num_tiers)
    order = np.argsort(-ratings)
    bounds = brute_force_tiers(ratings[order], num_tiers)
    expected = np.empty(n, dtype=int)
    for tier, (s, e) in enumerate(itertools.pairwise(bounds)):
        expected[order[s:e]] = tier
    assert tiers.tolist() == expected.tolist()
    assert tiers[np.argmax(ratings)] == 0 and set(tiers.tolist()) == set(range(tiers.max() + 1))


def test_more_tiers_than_players_gives_each_its_own():
    assert bt.compute_tiers(np.array([0.1, 2.0, -1.0]), 10).tolist() == [1, 0, 2]
