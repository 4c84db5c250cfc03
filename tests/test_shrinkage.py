"""Shrinking predicted qualities toward each model's mean: alpha 0 is the mixing baseline, alpha is
fitted on validation prompts (per-prompt shifts do not matter), clipped to [0, 1], bad input."""

import json

import numpy as np
import pytest

from lmroute.evaluation.routing import evaluate_choices
from lmroute.exceptions import ConfigError, DataError
from lmroute.shrinkage import QualityShrinkage, fit_shrinkage

MODELS = ["cheap", "mid", "dear"]


def _data(n, *, slope, seed):
    """Predictions with a per-model mean, a per-prompt difficulty shared by all models and a
    model-specific signal; scores follow the signal with ``slope`` (on the 2 x prediction scale)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 0.05, (n, 3))
    predicted = np.array([0.45, 0.5, 0.55]) + signal + rng.normal(0, 0.1, (n, 1))
    scores = np.array([0.4, 0.6, 0.7]) + slope * 2 * signal + rng.normal(0, 0.2, (n, 1))
    return scores, predicted


def test_alpha_zero_gives_each_model_its_mean_and_the_policy_the_hull_vertices():
    rng = np.random.default_rng(0)
    scores = (rng.random((400, 3)) < [0.4, 0.6, 0.7]).astype(float)
    shrink = QualityShrinkage(tuple(MODELS), scores.mean(axis=0), np.full(3, 0.5), 0.0)
    predicted = shrink.apply(rng.random((400, 3)))
    np.testing.assert_allclose(predicted, np.broadcast_to(scores.mean(axis=0), (400, 3)))
    costs = np.broadcast_to([1.0, 3.0, 10.0], (400, 3))
    ev = evaluate_choices(MODELS, scores, costs, {"shrunk": (predicted, costs)}, oracle=False)
    router, hull = ev.curves[0], ev.baseline
    # the sweep reaches every vertex of the mixing baseline, and nothing beyond it
    np.testing.assert_allclose(router.hull_cost, hull.hull_cost)
    np.testing.assert_allclose(router.hull_quality, hull.hull_quality)
    assert router.aiq == pytest.approx(hull.aiq)


def test_alpha_one_keeps_the_differences_whole():
    shrink = QualityShrinkage(("a", "b"), np.array([0.3, 0.6]), np.array([0.5, 0.5]), 1.0)
    # prediction differences count twice: 2 P(a beats b) - 1 is a's expected score gain over b
    np.testing.assert_allclose(shrink.apply(np.array([[0.55, 0.45]])), [[0.4, 0.5]])


@pytest.mark.parametrize("slope", [0.3, 0.7])
def test_fit_recovers_the_slope_on_validation_prompts(slope):
    train_s, train_p = _data(2000, slope=slope, seed=1)
    val_s, val_p = _data(4000, slope=slope, seed=2)
    shrink = fit_shrinkage(MODELS, train_s, train_p, val_s, val_p)
    assert shrink.alpha == pytest.approx(slope, abs=0.05)
    both = np.concatenate([train_s, val_s])
    np.testing.assert_allclose(shrink.mean_quality, both.mean(axis=0))


def test_fit_ignores_what_every_model_shares_on_a_prompt():
    train_s, train_p = _data(500, slope=0.5, seed=3)
    val_s, val_p = _data(500, slope=0.5, seed=4)
    shift = np.random.default_rng(5).normal(0, 0.3, (500, 1))
    a = fit_shrinkage(MODELS, train_s, train_p, val_s, val_p).alpha
    assert fit_shrinkage(MODELS, train_s, train_p, val_s + shift, val_p).alpha == pytest.approx(a)
    assert fit_shrinkage(MODELS, train_s, train_p, val_s, val_p + shift).alpha == pytest.approx(a)


def test_fit_clips_alpha_to_zero_and_one():
    train_s, train_p = _data(500, slope=0.5, seed=6)
    val_s, val_p = _data(500, slope=-0.5, seed=7)  # the router is wrong on validation prompts
    assert fit_shrinkage(MODELS, train_s, train_p, val_s, val_p).alpha == 0.0
    val_s, val_p = _data(500, slope=3.0, seed=8)
    assert fit_shrinkage(MODELS, train_s, train_p, val_s, val_p).alpha == 1.0


def test_bad_input_is_one_clear_error():
    s, p = _data(10, slope=0.5, seed=9)
    with pytest.raises(DataError, match="validation prompts"):
        fit_shrinkage(MODELS, s, p, s[:0], p[:0])
    with pytest.raises(ConfigError, match=r"\(prompts, 3\)"):
        fit_shrinkage(MODELS, s[:, :2], p[:, :2], s, p)
    bad = s.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        fit_shrinkage(MODELS, bad, p, s, p)
    with pytest.raises(DataError, match="two models"):
        fit_shrinkage(["a"], s[:, :1], p[:, :1], s[:, :1], p[:, :1])
    with pytest.raises(ConfigError, match="alpha"):
        QualityShrinkage(("a", "b"), np.zeros(2), np.zeros(2), 1.5)
    with pytest.raises(ConfigError, match=r"\(prompts, 2\)"):
        QualityShrinkage(("a", "b"), np.zeros(2), np.zeros(2), 0.5).apply(np.zeros((4, 3)))


def test_select_reorders_and_names_what_it_does_not_cover():
    s = QualityShrinkage(("a", "b", "c"), np.array([0.9, 0.5, 0.1]), np.array([0.6, 0.5, 0.4]), 0.5)
    picked = s.select(["c", "a"])
    assert picked.models == ("c", "a") and picked.mean_quality.tolist() == [0.1, 0.9]
    np.testing.assert_allclose(
        picked.apply(np.array([[0.4, 0.6]])), s.apply(np.array([[0.6, 0.5, 0.4]]))[:, [2, 0]]
    )
    with pytest.raises(ConfigError, match="fitted on a, b, c; it cannot put d"):
        s.select(["a", "d"])


def test_to_dict_and_back_and_bad_dicts():
    s = QualityShrinkage(("a", "b"), np.array([0.9, 0.5]), np.array([0.6, 0.5]), 0.25)
    back = QualityShrinkage.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.models == s.models and back.alpha == 0.25
    np.testing.assert_array_equal(back.mean_predicted, s.mean_predicted)
    for bad in (
        None,
        {},
        {**s.to_dict(), "alpha": "x"},
        {**s.to_dict(), "models": ["a", "a"]},
        {**s.to_dict(), "alpha": 2.0},
        {**s.to_dict(), "mean_quality": [float("nan"), 1]},
    ):
        with pytest.raises(ConfigError):
            QualityShrinkage.from_dict(bad)
