"""Cost–quality metrics, checked by hand on small examples."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmroute.evaluation import cost_metrics as cm
from lmroute.evaluation.routing import evaluate_choices, format_summary, summary_rows, sweep
from lmroute.exceptions import ConfigError, DataError


def test_upper_hull_drops_points_under_a_chord_and_dearer_worse_points():
    cost = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    quality = np.array([0.5, 0.55, 0.8, 0.7, 0.2])
    hc, hq = cm.upper_hull(cost, quality)
    # (2, 0.55) lies under the chord (1, 0.5)-(3, 0.8) at 0.65; (4, 0.7) is dearer and worse than (3, 0.8)
    # (0.5, 0.2) -> (1, 0.5): slope 0.6 > (1 -> 3) slope 0.15, so (1, 0.5) stays
    assert hc.tolist() == [0.5, 1.0, 3.0] and hq.tolist() == [0.2, 0.5, 0.8]


def test_aiq_by_hand():
    hc, hq = np.array([1.0, 3.0]), np.array([0.5, 0.8])
    # over [1, 4]: trapezoid 1..3 = 2 * 0.65 = 1.3, flat 3..4 = 0.8; (1.3 + 0.8) / 3 = 0.7
    assert cm.aiq(hc, hq, 1.0, 4.0) == pytest.approx(0.7)
    # a hull starting at 2 contributes nothing over [1, 2]: (q from 2 to 3 is 0.65..0.8) ->
    assert cm.aiq(np.array([2.0, 3.0]), np.array([0.65, 0.8]), 1.0, 4.0) == pytest.approx((0.725 + 0.8) / 3)
    with pytest.raises(ConfigError, match="high > low"):
        cm.aiq(hc, hq, 2.0, 2.0)


def test_reach_cost_and_quality_at_a_cost():
    hc, hq = np.array([1.0, 3.0, 5.0]), np.array([0.5, 0.8, 0.9])
    assert cm.reach_cost(hc, hq, 0.65) == pytest.approx(2.0)
    assert cm.reach_cost(hc, hq, 0.4) == 1.0
    assert np.isnan(cm.reach_cost(hc, hq, 0.95))
    assert cm.hull_quality(hc, hq, 4.0) == pytest.approx(0.85)
    assert cm.hull_quality(hc, hq, 9.0) == pytest.approx(0.9)  # flat right of the dearest point
    assert np.isnan(cm.hull_quality(hc, hq, 0.5))


def test_evaluation_of_a_perfect_router_beats_the_mixing_baseline():
    # two models: cheap is right on half the prompts, dear on all
    scores = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    costs = np.tile([1.0, 5.0], (4, 1))
    ev = evaluate_choices(["cheap", "dear"], scores, costs, {"perfect": (scores, costs)})
    router, oracle = ev.curves
    assert ev.models[ev.best] == "dear" and ev.models[ev.cheapest] == "cheap"
    # hull: (1, 0.5) -> (5, 1.0); AIQ over [1, 5] = 0.75
    assert ev.baseline.aiq == pytest.approx(0.75)
    # the router reaches quality 1 at cost 3 (dear on the two hard prompts): hull (1, .5), (3, 1)
    assert router.reach_cost == pytest.approx(3.0) and router.saving == pytest.approx(0.4)
    assert router.aiq == pytest.approx((0.75 * 2 + 1.0 * 2) / 4)
    assert oracle.aiq == pytest.approx(router.aiq)
    assert "perfect" in format_summary(ev) and len(summary_rows(ev)) == 4
    assert ev.to_dict()["curves"][0]["points"][0].keys() == {"knob", "cost", "quality"}


def test_models_of_equal_quality_but_for_rounding_tie_and_the_cheaper_is_the_best():
    # 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in the last bit: the dear model was named the best,
    # and the mixing baseline "saved 80%" by reaching its quality with the cheap one, as good.
    scores = np.column_stack([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.0, 0.0, 0.0]])
    assert scores[:, 0].mean() > scores[:, 1].mean()
    costs = np.tile([5.0, 1.0, 0.5], (3, 1))
    ev = evaluate_choices(["dear", "cheap", "cheapest"], scores, costs, oracle=False)
    assert ev.models[ev.best] == "cheap"
    assert ev.baseline.reach_cost == 1.0 and ev.baseline.saving == 0.0
    assert "best single model cheap" in format_summary(ev)


def test_the_json_says_which_knob_each_curve_sweeps():
    # The points' "knob" was a tau under --policy quality, a lambda for the oracle and a model's index
    # for the baseline, and the file said none of it: a tau read as a lambda serves another router.
    scores = np.array([[1.0, 1.0], [0.0, 1.0]])
    costs = np.tile([1.0, 5.0], (2, 1))
    ev = evaluate_choices(["cheap", "dear"], scores, costs, {"r": (scores, costs)}, policy="quality")
    data = ev.to_dict()
    assert [c["policy"] for c in data["curves"]] == ["quality", "lambda"]
    assert data["mixing_baseline"]["policy"] is None
    assert [p["knob"] for p in data["mixing_baseline"]["points"]] == [0.0, 1.0]


@pytest.mark.parametrize("policy", ["lambda", "quality"])
def test_a_numpy_integer_count_of_knobs_is_a_count(policy):
    # np.int64(5) was taken for a list of knob values: "iteration over a 0-d array".
    predicted = np.array([[0.9, 0.2], [0.6, 0.5], [0.3, 0.4]])
    estimated = np.array([[2.0, 1.0]] * 3)
    scores, costs = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), estimated
    by_int = sweep(predicted, estimated, scores, costs, policy=policy, knobs=5)
    by_numpy = sweep(predicted, estimated, scores, costs, policy=policy, knobs=np.int64(5))
    for a, b in zip(by_int, by_numpy, strict=True):
        np.testing.assert_array_equal(a, b)


def test_evaluation_needs_two_models_and_a_cost_range():
    with pytest.raises(DataError, match="at least two models"):
        evaluate_choices(["a"], np.ones((2, 1)), np.ones((2, 1)))
    with pytest.raises(DataError, match="costs the same"):
        evaluate_choices(["a", "b"], np.ones((2, 2)), np.ones((2, 2)))


def _mixed(cost: np.ndarray, quality: np.ndarray, budget: float) -> float:
    """By brute force: the best quality of one point or a mix of two costing at most ``budget``."""
    best = -np.inf
    for i in range(len(cost)):
        if cost[i] <= budget:
            best = max(best, quality[i])
        for j in range(len(cost)):
            if cost[i] <= budget < cost[j]:
                share = (budget - cost[i]) / (cost[j] - cost[i])
                best = max(best, quality[i] + share * (quality[j] - quality[i]))
    return best


# Costs and qualities on a grid of 0.01: the hull's tolerance is absolute (1e-12), so costs a
# hundred orders of magnitude apart would test the tolerance, not the mixing.
_POINTS = st.integers(1, 7).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 500).map(lambda k: k / 100), min_size=n, max_size=n),
        st.lists(st.integers(0, 100).map(lambda k: k / 100), min_size=n, max_size=n),
    )
)


@settings(max_examples=300, deadline=None)
@given(_POINTS, st.floats(-1, 4), st.floats(0.1, 4), st.floats(0, 1))
def test_hull_aiq_and_reach_cost_match_mixing_by_brute_force(points, low, width, target):
    # duplicate points, tied costs, one point dominating: the hull is the best mix within a budget
    cost, quality = map(np.array, points)
    hc, hq = cm.upper_hull(cost, quality)
    budgets = np.unique(np.concatenate([cost, np.linspace(cost.min(), cost.max() + 1, 9)]))
    want = [_mixed(cost, quality, b) for b in budgets]
    np.testing.assert_allclose(cm.hull_quality(hc, hq, budgets), want, atol=1e-9)
    # AIQ: the mix's quality (0 where nothing is affordable) is linear between the points' costs
    high = low + width
    start = max(low, cost.min())
    xs = np.unique(np.concatenate([[start, high], cost[(cost > start) & (cost < high)]]))
    area = np.trapezoid([_mixed(cost, quality, x) for x in xs], xs) if start < high else 0.0
    assert cm.aiq(hc, hq, low, high) == pytest.approx(area / width, abs=1e-9)
    # the least budget whose best mix reaches the target
    reach = cm.reach_cost(hc, hq, target)
    if quality.max() < target - 1e-12:
        assert np.isnan(reach)
    else:
        assert _mixed(cost, quality, reach + 1e-9) >= target - 1e-9
        assert reach == cost.min() or _mixed(cost, quality, reach - 1e-6) < target
