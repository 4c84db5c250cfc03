"""N-model policies: hand-checked choices, ties, the fallback, the two-model special case."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmroute.exceptions import ConfigError
from lmroute.policies import (
    choose,
    choose_by_lambda,
    choose_by_quality,
    lambda_grid,
    ranked,
    tau_grid,
    threshold_for_lambda,
)

# three models: cheap (1), mid (4), dear (10) dollars per 1,000 requests
COST = np.array([[1.0, 4.0, 10.0]] * 3)
QUALITY = np.array(
    [
        [0.50, 0.60, 0.90],  # hard: only the dear model is good
        [0.80, 0.82, 0.83],  # easy: all about equal
        [0.40, 0.70, 0.72],  # medium: mid is nearly as good as dear
    ]
)


def test_lambda_by_hand():
    # lambda 0: the best predicted model on each prompt
    assert choose_by_lambda(QUALITY, COST, 0.0).tolist() == [2, 2, 2]
    # lambda 0.02: q - 0.02c -> hard (0.48, 0.52, 0.70), easy (0.78, 0.74, 0.63), medium (0.38, 0.62, 0.52)
    assert choose_by_lambda(QUALITY, COST, 0.02).tolist() == [2, 0, 1]
    # large lambda: the cheapest everywhere
    assert choose_by_lambda(QUALITY, COST, 10.0).tolist() == [0, 0, 0]


def test_numpy_knobs_are_numbers():
    """A knob read from a numpy array (a grid, a sweep) is a number like any other; np.int64(0) was
    refused as 'must be a finite number'."""
    assert choose_by_lambda(QUALITY, COST, np.int64(0)).tolist() == [2, 2, 2]
    assert choose_by_quality(QUALITY, COST, np.int64(1)).tolist() == [2, 2, 2]
    assert choose_by_lambda(QUALITY, COST, np.float32(10.0)).tolist() == [0, 0, 0]


def test_quality_by_hand():
    # tau 0.7: hard -> dear (only 0.9 >= 0.7), easy -> cheap (0.8), medium -> mid (0.70)
    assert choose_by_quality(QUALITY, COST, 0.7).tolist() == [2, 0, 1]
    # tau 0.95: no model qualifies anywhere -> the best predicted one
    assert choose_by_quality(QUALITY, COST, 0.95).tolist() == [2, 2, 2]
    assert choose_by_quality(QUALITY, COST, 0.0).tolist() == [0, 0, 0]


def test_ties_go_to_the_cheaper_model():
    quality = np.array([[0.7, 0.7, 0.7]])
    cost = np.array([[5.0, 2.0, 2.0]])
    assert choose_by_lambda(quality, cost, 0.0).tolist() == [1]  # cheaper, then the earlier
    assert choose_by_quality(quality, cost, 0.9).tolist() == [1]  # fallback: best, cheaper on a tie


def test_of_equally_cheap_models_reaching_tau_the_better_predicted_one_is_taken():
    # Two models at one price (two 7B models at a host's rate), both above tau: the earlier one,
    # predicted worse, was taken; it costs as much and is expected to do worse.
    quality = np.array([[0.6, 0.8, 0.95]])
    cost = np.array([[0.2, 0.2, 5.0]])
    assert choose_by_quality(quality, cost, 0.5).tolist() == [1]
    assert choose_by_lambda(quality, cost, 1.0).tolist() == [1]  # as lambda does
    assert ranked("quality", quality, cost, 0.5).tolist() == [[1, 0, 2]]


def test_the_two_model_threshold_is_the_special_case():
    """With two models and one cost each, lambda routes to the strong model exactly where the
    quality gap exceeds lambda times the cost gap: a threshold on the gap."""
    rng = np.random.default_rng(0)
    q = rng.uniform(size=(200, 2))
    cost = np.tile([8.0, 1.0], (200, 1))  # strong, weak
    for lam in (0.0, 0.01, 0.05, 0.2):
        gap = threshold_for_lambda(lam, 8.0, 1.0)
        strong = choose_by_lambda(q, cost, lam) == 0
        np.testing.assert_array_equal(strong, q[:, 0] - q[:, 1] > gap)


def test_ranked_gives_fallbacks_in_the_policy_order():
    order = ranked("lambda", QUALITY, COST, 0.02)
    assert order[:, 0].tolist() == [2, 0, 1]
    assert sorted(order[0].tolist()) == [0, 1, 2]
    assert order[0].tolist() == [2, 1, 0]  # hard: dear, then mid (0.52 > 0.48), then cheap


def _policy_order(policy: str, q: list[float], c: list[float], knob: float) -> list[int]:
    """The models in order of preference, from the definitions (ties: the cheaper, then the earlier)."""
    k = range(len(q))
    if policy == "lambda":
        return sorted(k, key=lambda j: (-(q[j] - knob * c[j]), c[j], j))
    good = sorted((j for j in k if q[j] >= knob), key=lambda j: (c[j], -q[j], j))
    return good + sorted((j for j in k if q[j] < knob), key=lambda j: (-q[j], c[j], j))


# Shrunk qualities (lmroute shrink) are not clipped to [0, 1]: -1.5 and 2 occur.
_QUALITIES = st.sampled_from([-1.5, -1.0, 0.0, 0.3, 0.5, 0.9, 1.0, 2.0])
_COSTS = st.sampled_from([0.0, 1.0, 2.0, 10.0])


@given(
    st.integers(1, 5).flatmap(lambda k: st.tuples(*[st.tuples(_QUALITIES, _COSTS)] * k)),
    st.sampled_from(["lambda", "quality"]),
    st.sampled_from([0.0, 0.05, 0.5, 1.0, 1e6]),
)
def test_ranked_is_the_policy_order_and_each_model_once(models, policy, knob):
    q, c = [m[0] for m in models], [m[1] for m in models]
    knob = min(knob, 1.0) if policy == "quality" else knob
    order = ranked(policy, np.array([q]), np.array([c]), knob)[0].tolist()
    assert order == _policy_order(policy, q, c, knob)


def test_ranked_falls_back_to_a_model_predicted_below_minus_one():
    # A shrunk quality of -1.5: ranking the first model again in place of the second one sent a
    # failed request back to the model that had just failed, and never to the other one.
    assert ranked("lambda", np.array([[0.0, -1.5]]), np.array([[0.0, 0.0]]), 0.0).tolist() == [[0, 1]]


def test_grids_cover_every_choice():
    lams = lambda_grid(QUALITY, COST, points=50)
    assert lams[0] == 0 and np.all(np.diff(lams) > 0)
    assert choose_by_lambda(QUALITY, COST, lams[-1]).tolist() == [0, 0, 0]
    taus = tau_grid(QUALITY, points=20)
    assert taus[0] == 0 and taus[-1] == 1


def test_lambda_grid_does_not_hold_arrays_of_every_model_pair_at_once():
    # It built dq, dc and their ratio as (prompts, models, models) arrays at once, over 3x the
    # bytes of one such array: gigabytes on a file of 100k prompts and 30 models.
    rng = np.random.default_rng(0)
    n, k = 300, 40
    quality, cost = rng.uniform(size=(n, k)), rng.uniform(0, 10, size=(n, k))
    tracemalloc.start()
    try:
        lambda_grid(quality, cost)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * n * k * k * 8


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: choose_by_lambda(QUALITY, COST, -1), "lambda must be at least 0"),
        (lambda: choose_by_quality(QUALITY, COST, 1.5), r"tau must be in \[0, 1\]"),
        (lambda: choose_by_lambda(QUALITY, COST[:, :2], 0.1), "arrays of one shape"),
        (lambda: choose_by_lambda(QUALITY, -COST, 0.1), "must not be negative"),
        (lambda: choose_by_lambda(QUALITY * np.nan, COST, 0.1), "finite"),
        (lambda: choose("budget", QUALITY, COST, 1.0), "unknown policy 'budget'"),
        (lambda: choose_by_lambda(QUALITY, COST, float("nan")), "finite number"),
        # numpy's own TypeError and ValueError, not the ConfigError the contract names
        (lambda: choose_by_lambda([[0.5, {"q": 1}]], [[1.0, 2.0]], 0.1), "arrays of numbers"),
        (lambda: choose_by_quality([[0.5, 0.6], [0.7]], [[1.0, 2.0], [1.0]], 0.5), "arrays of numbers"),
        (lambda: ranked("lambda", [["0.5", "high"]], [[1.0, 2.0]], 0.1), "arrays of numbers"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.parametrize("policy, knob", [("lambda", 0.1), ("quality", 0.5)])
def test_ranked_of_no_prompts_is_empty(policy, knob):
    # choose() gives () for an empty batch; ranked() raised numpy's "zero-size array to reduction
    # operation minimum which has no identity" (a ValueError, not an lmroute error).
    empty = np.zeros((0, 3))
    order = ranked(policy, empty, empty, knob)
    assert order.shape == (0, 3) and order.dtype == np.int64


def test_ranked_of_no_prompts_still_checks_the_knob():
    with pytest.raises(ConfigError, match="lambda must be at least 0"):
        ranked("lambda", np.zeros((0, 3)), np.zeros((0, 3)), -1.0)
