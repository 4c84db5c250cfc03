"""Battle outcomes as classifier targets, and the frozen-feature cache (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from lmroute.data.battles import Battle
from lmroute.exceptions import DataError
from lmroute.training.labels import STRONG, TIE, WEAK, outcome_targets, score_targets
from lmroute.training.prefix_cache import PrefixCache

S, W = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def test_direct_pair_maps_either_order_and_both_ties():
    battles = [
        Battle("p1", S, W, "model_a"),
        Battle("p1", W, S, "model_a"),  # the weak model, listed first, won
        Battle("p2", W, S, "model_b"),
        Battle("p2", S, W, "tie"),
        Battle("p3", S, W, "tie (bothbad)"),
    ]
    t = outcome_targets(battles, strong_model=S, weak_model=W)
    assert t.prompts == ["p1", "p2", "p3"]
    np.testing.assert_array_equal(t.counts, [[1, 0, 1], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_allclose(t.probabilities(), [[0.5, 0, 0.5], [0.5, 0.5, 0], [0, 1, 0]])
    assert (t.used, t.dropped) == (5, 0)


def test_direct_pair_wins_over_ratings():
    # the weak model wins every direct battle, so it is rated higher; the pair still maps by name
    battles = [Battle(f"p{i}", S, W, "model_b") for i in range(5)]
    t = outcome_targets(battles, strong_model=S, weak_model=W)
    assert t.ratings[W] > t.ratings[S]
    assert (t.counts[:, WEAK] == 1).all()


def test_other_pairs_are_oriented_by_ratings():
    # "big" beats "small" 4 times out of 5, so "big" is the strong side of their battles
    battles = [Battle(f"q{i}", "small", "big", "model_b") for i in range(4)]
    battles.append(Battle("q4", "big", "small", "model_b"))
    t = outcome_targets(battles, strong_model=S, weak_model=W)
    assert t.ratings["big"] > t.ratings["small"]
    assert t.counts[:, STRONG].sum() == 4 and t.counts[:, WEAK].sum() == 1
    assert t.counts[t.prompts.index("q4"), WEAK] == 1


def test_close_ratings_are_dropped_and_explained():
    battles = [Battle("a", "x", "y", "model_a"), Battle("b", "x", "y", "model_b")]  # x and y tie
    with pytest.raises(DataError, match="min_rating_gap"):
        outcome_targets(battles, strong_model=S, weak_model=W)
    battles += [Battle("c", S, W, "model_a")]
    t = outcome_targets(battles, strong_model=S, weak_model=W, min_rating_gap=0.5)
    assert t.prompts == ["c"] and (t.used, t.dropped) == (1, 2)


def test_gap_keeps_clearly_separated_pairs():
    battles = [Battle(f"p{i}", "x", "y", "model_a") for i in range(9)] + [Battle("p9", "x", "y", "model_b")]
    kept = outcome_targets(battles, strong_model=S, weak_model=W, min_rating_gap=1.0)
    assert kept.used == 10
    more = [*battles, Battle("z", S, W, "tie")]
    dropped = outcome_targets(more, strong_model=S, weak_model=W, min_rating_gap=50.0)
    assert dropped.used == 1 and dropped.prompts == ["z"]


def test_no_battles_is_an_error():
    with pytest.raises(DataError, match="no training battles"):
        outcome_targets([], strong_model=S, weak_model=W)


def test_score_targets_share_ties():
    probs = np.array([[0.2, 0.6, 0.2]])
    assert score_targets(probs, tie_share=0.0)[0] == pytest.approx(0.2)
    assert score_targets(probs, tie_share=0.5)[0] == pytest.approx(0.5)
    assert TIE == 1


def test_prefix_cache_computes_missing_once_and_evicts_lru():
    calls: list[list[str]] = []

    def compute(prompts):
        calls.append(list(prompts))
        return [np.full(4, len(p), dtype=np.float32) for p in prompts]

    cache = PrefixCache(max_bytes=3 * 16)  # three 16-byte arrays
    out = cache.lookup("ns", ["aa", "b", "aa"], compute)
    assert [v[0] for v in out] == [2, 1, 2] and calls == [["aa", "b"]]
    cache.lookup("ns", ["b", "ccc"], compute)
    assert calls[-1] == ["ccc"] and cache.nbytes == 48
    cache.lookup("ns", ["dddd"], compute)  # evicts the least recently used: "aa"
    assert cache.get("ns", "aa") is None and cache.get("ns", "b") is not None
    assert cache.get("other", "b") is None
    cache.lookup("ns", ["aa"], compute)
    assert calls[-1] == ["aa"]


def test_prefix_cache_skips_values_larger_than_budget():
    cache = PrefixCache(max_bytes=8)
    out = cache.lookup("ns", ["x"], lambda ps: [np.zeros(10)])
    assert out[0].shape == (10,) and len(cache) == 0
