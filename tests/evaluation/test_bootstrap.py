"""Paired bootstrap intervals: the same resamples for every router, seeds averaged per resample."""

import numpy as np
import pytest

from lmroute.data.benchmarks import Benchmark
from lmroute.evaluation import metrics
from lmroute.evaluation.bootstrap import APGR, CPT, bootstrap_metrics, interval
from lmroute.evaluation.transfer import compare_on_pair, transfer_markdown
from lmroute.exceptions import ConfigError
from lmroute.workflows.results import bootstrap_apgr_ci

RNG = np.random.default_rng(3)
N = 200
STRONG = (RNG.random(N) < 0.8).astype(float)
WEAK = (RNG.random(N) < 0.5).astype(float)
GOOD = STRONG - WEAK + 0.3 * RNG.random(N)  # close to the oracle
NOISE = [RNG.random(N) for _ in range(3)]


def test_one_resample_is_the_metrics_on_the_drawn_items():
    got = bootstrap_metrics({"good": [GOOD]}, STRONG, WEAK, samples=1, seed=7)["good"]
    idx = np.random.default_rng(7).integers(0, N, N)
    s, w = STRONG[idx], WEAK[idx]
    cur = metrics.curve(GOOD[idx], s, w, protocol="paper")
    assert got[0, APGR] == pytest.approx(metrics.apgr(cur.c, cur.quality, s.mean(), w.mean()))
    assert got[0, CPT] == pytest.approx(metrics.cpt(cur.c, cur.quality, 0.5, s.mean(), w.mean()))


def test_every_router_sees_the_same_resamples():
    both = bootstrap_metrics({"good": [GOOD], "noise": [NOISE[0]]}, STRONG, WEAK, samples=50)
    alone = bootstrap_metrics({"noise": [NOISE[0]]}, STRONG, WEAK, samples=50)
    assert np.array_equal(both["noise"], alone["noise"])
    same = bootstrap_metrics({"a": [GOOD], "b": [GOOD]}, STRONG, WEAK, samples=50)
    assert np.array_equal(same["a"][:, APGR] - same["b"][:, APGR], np.zeros(50))


def test_seeds_are_averaged_on_each_resample():
    together = bootstrap_metrics({"r": NOISE}, STRONG, WEAK, samples=40)["r"]
    each = [bootstrap_metrics({"r": [s]}, STRONG, WEAK, samples=40)["r"] for s in NOISE]
    assert together == pytest.approx(np.mean(each, axis=0))


def test_resamples_where_the_models_tie_are_left_out_for_every_router():
    strong = np.zeros(5)
    strong[0] = 1.0  # the models differ on one item only
    got = bootstrap_metrics({"a": [np.arange(5.0)], "b": [np.ones(5)]}, strong, np.zeros(5), samples=100)
    assert 0 < len(got["a"]) < 100 and len(got["a"]) == len(got["b"])
    with pytest.raises(ConfigError, match="equal"):
        bootstrap_metrics({"a": [np.arange(3.0)]}, np.ones(3), np.ones(3), samples=5)


def test_bad_input():
    with pytest.raises(ConfigError, match="at least 1"):
        bootstrap_metrics({"a": [GOOD]}, STRONG, WEAK, samples=0)
    with pytest.raises(ConfigError, match="one value per item"):
        bootstrap_metrics({"a": [GOOD[:-1]]}, STRONG, WEAK)
    with pytest.raises(ConfigError, match="at least one array"):
        bootstrap_metrics({"a": []}, STRONG, WEAK)


def test_interval():
    assert interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert interval(np.array([1.0, np.nan, 3.0]), level=0.5) == pytest.approx((1.5, 2.5))
    assert all(np.isnan(interval(np.array([np.nan]))))
    with pytest.raises(ConfigError):
        interval(np.arange(3.0), level=1.0)


def bench() -> Benchmark:
    return Benchmark("toy", tuple(f"p{i}" for i in range(N)), {"s": STRONG, "w": WEAK}, "s", "w", scale=100.0)


def test_compare_on_pair_marks_what_a_router_beats():
    sets = {"good": [GOOD], "good (pair-aware)": [NOISE[1]], "random": NOISE, "length": [NOISE[2]]}
    pair = compare_on_pair(
        bench(), sets, baselines=["random", "length"], aware_of={"good (pair-aware)": "good"}, samples=200
    )
    assert [r.router for r in pair.rows] == list(sets)
    good, aware, random = pair.row("good"), pair.row("good (pair-aware)"), pair.row("random")
    assert good.beats("random") and good.beats("length")
    assert not aware.beats("random") and aware.versus["good"][0] < 0 and aware.beats("good") is False
    assert random.seeds == 3 and "random" not in random.versus and random.beats("length") is not None
    assert good.apgr_ci[0] <= good.apgr <= good.apgr_ci[1]
    assert pair.strong_quality == pytest.approx(100 * STRONG.mean()) and pair.resamples == 200
    assert [r.router for r in pair.evaluation.results] == list(sets)
    table = transfer_markdown([pair], baselines=["random", "length"])
    lines = table.splitlines()
    assert lines[2].startswith(
        f"| toy: s / w ({100 * STRONG.mean():.1f} / {100 * WEAK.mean():.1f}) | good | "
    )
    assert "**+" in lines[2] and "random (3 seeds)" in table
    assert lines[3].count("|") == lines[0].count("|") and lines[3].split("|")[-2].strip() != ""


def test_resamples_equal_but_for_rounding_are_left_out():
    # Equal sums in another order: on every resample that keeps one copy of each item the means
    # differ in the last bit only, and PGR would divide by that.
    strong, weak = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1])
    got = bootstrap_metrics({"a": [np.arange(3.0)]}, strong, weak, samples=200)["a"]
    assert np.abs(got).max() < 10
    bench = Benchmark("b", ("x", "y", "z"), {"s": strong, "w": weak}, "s", "w")
    low, high = bootstrap_apgr_ci(np.arange(3.0), bench, protocol="exact", samples=200, seed=0)
    assert -10 < low <= high < 10


def test_no_interval_when_every_resample_has_equal_models():
    # The models differ on one item of 40; both resamples (seed 2) miss it. The interval was an
    # IndexError from an empty percentile, ending an experiment before it wrote any result.
    n = 40
    strong, weak = np.r_[1.0, np.zeros(n - 1)], np.zeros(n)
    bench = Benchmark("b", tuple(f"p{i}" for i in range(n)), {"s": strong, "w": weak}, "s", "w")
    assert bootstrap_apgr_ci(np.arange(float(n)), bench, protocol="paper", samples=2, seed=2) is None
