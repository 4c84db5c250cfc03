"""The paper's metrics on hand-computed toy cases, ties, non-monotone curves and bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmroute.evaluation import metrics
from lmroute.exceptions import ConfigError

SCORES = np.array([0.1, 0.2, 0.3, 0.4])
STRONG = np.array([1.0, 1.0, 0.0, 1.0])
WEAK = np.array([0.0, 1.0, 0.0, 0.0])
# By hand: routing the highest scores first gains 1, 0, 0, 1 correct answers out of 4.
EXACT_C = [0.0, 0.25, 0.5, 0.75, 1.0]
EXACT_Q = [0.25, 0.5, 0.5, 0.5, 0.75]


def test_exact_curve_by_hand():
    cur = metrics.exact_curve(SCORES, STRONG, WEAK)
    np.testing.assert_allclose(cur.c, EXACT_C)
    np.testing.assert_allclose(cur.quality, EXACT_Q)
    np.testing.assert_allclose(cur.thresholds[1:], [0.4, 0.3, 0.2, 0.1])


def test_apgr_cpt_auc_by_hand():
    c, q = np.array(EXACT_C), np.array(EXACT_Q)
    # PGR = 0, .5, .5, .5, 1; trapezoids of width .25: .0625 + .125 + .125 + .1875.
    assert metrics.apgr(c, q, 0.75, 0.25) == pytest.approx(0.5)
    assert metrics.auc(c, q) == pytest.approx(0.5)
    assert metrics.cpt(c, q, 0.5, 0.75, 0.25) == pytest.approx(0.25)
    # 80% PGR = quality .65, reached between c=.75 (.5) and c=1 (.75): .75 + .6 * .25.
    assert metrics.cpt(c, q, 0.8, 0.75, 0.25) == pytest.approx(0.9)
    assert metrics.cpt(c, q, 0.0, 0.75, 0.25) == 0.0
    assert metrics.quality_at(c, q, 0.125) == pytest.approx(0.375)
    np.testing.assert_allclose(metrics.pgr(np.array([0.25, 0.5, 0.75]), 0.75, 0.25), [0, 0.5, 1])


def test_paper_curve_uses_quantile_edges_and_strict_last_edge():
    cur = metrics.paper_curve(SCORES, STRONG, WEAK)
    # Linear-interpolated deciles of 0.1..0.4 are evenly spaced.
    np.testing.assert_allclose(np.sort(cur.thresholds), np.linspace(0.1, 0.4, 11))
    # c per edge: >=.1 all; .13-.19 three; .22-.28 two; .31-.37 one; >.4 none.
    np.testing.assert_allclose(cur.c, [0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 1])
    assert cur.quality[0] == pytest.approx(0.25) and cur.quality[-1] == pytest.approx(0.75)


def test_paper_curve_equals_exact_when_every_edge_is_a_score():
    scores = np.arange(11, dtype=float)
    strong = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=float)
    weak = np.array([0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1], dtype=float)
    paper = metrics.paper_curve(scores, strong, weak)
    exact = metrics.exact_curve(scores, strong, weak)
    # Eleven edges on eleven distinct scores: the same points as every threshold (plus c = 0).
    assert set(np.round(paper.c, 9)) <= set(np.round(exact.c, 9))
    assert metrics.apgr(paper.c, paper.quality, strong.mean(), weak.mean()) == pytest.approx(
        metrics.apgr(exact.c, exact.quality, strong.mean(), weak.mean()), abs=0.1
    )


def test_ties_do_not_crash_and_route_together():
    scores = np.zeros(20)
    rng = np.random.default_rng(0)
    strong, weak = rng.integers(0, 2, 20).astype(float), np.zeros(20)
    strong[0] = 1.0
    for protocol in metrics.PROTOCOLS:
        cur = metrics.curve(scores, strong, weak, protocol=protocol)
        assert set(cur.c) == {0.0, 1.0}
        # A single tie group is a straight line from weak to strong: APGR exactly 0.5.
        assert metrics.apgr(cur.c, cur.quality, strong.mean(), weak.mean()) == pytest.approx(0.5)


def test_paper_curve_keeps_a_tie_group_whole_unlike_breaking_the_ties():
    # 11 prompts tied at 0 (no gain) and 9 at 1 (gain 1 each): the only thresholds a router
    # offers take none, the 9 or all 20, so the curve has a vertex at c = .45 and PGR rises
    # linearly to 1 there: APGR = .45 / 2 + .55 = .775, as the exact curve's.
    scores = np.array([0.0] * 11 + [1.0] * 9)
    strong, weak = scores.copy(), np.zeros(20)
    paper = metrics.paper_curve(scores, strong, weak)
    np.testing.assert_allclose(np.unique(paper.c), [0.0, 0.45, 1.0])
    assert metrics.apgr(paper.c, paper.quality, 0.45, 0.0) == pytest.approx(0.775)
    # Broken in any order, the deciles fall at c = 0, .1, ..., 1 and cut the corner at .45:
    # PGR .4/.45 at c = .4, so APGR = .4 * (8/9) / 2 + .1 * (8/9 + 1) / 2 + .5 = .7722...
    broken = metrics.paper_curve(scores + 1e-9 * np.arange(20), strong, weak)
    cut_corner = 0.4 * 4 / 9 + 0.05 * 17 / 9 + 0.5
    assert metrics.apgr(broken.c, broken.quality, 0.45, 0.0) == pytest.approx(cut_corner)


def test_partial_ties_exact_curve_groups():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    cur = metrics.exact_curve(scores, np.ones(4), np.zeros(4))
    np.testing.assert_allclose(cur.c, [0, 0.25, 0.75, 1.0])


def test_cpt_on_non_monotone_curve_is_first_crossing():
    c = np.array([0.0, 0.2, 0.4, 0.6, 1.0])
    q = np.array([0.0, 0.6, 0.3, 0.7, 1.0])
    # 50% PGR is first crossed between c=0 and c=.2 even though the curve dips afterwards.
    assert metrics.cpt(c, q, 0.5, 1.0, 0.0) == pytest.approx(0.2 * 0.5 / 0.6)
    # 65% is first reached between .4 (.3) and .6 (.7).
    assert metrics.cpt(c, q, 0.65, 1.0, 0.0) == pytest.approx(0.4 + 0.2 * 0.35 / 0.4)


def test_cpt_unreachable_is_nan():
    assert np.isnan(metrics.cpt(np.array([0.0, 1.0]), np.array([0.0, 0.5]), 0.8, 1.0, 0.0))


def test_oracle_beats_every_ordering():
    rng = np.random.default_rng(1)
    strong, weak = rng.integers(0, 2, 200).astype(float), rng.integers(0, 2, 200).astype(float)
    oracle = metrics.exact_curve(metrics.oracle_scores(strong, weak), strong, weak)
    o = metrics.apgr(oracle.c, oracle.quality, strong.mean(), weak.mean())
    for seed in range(5):
        cur = metrics.exact_curve(np.random.default_rng(seed).random(200), strong, weak)
        assert metrics.apgr(cur.c, cur.quality, strong.mean(), weak.mean()) <= o


@pytest.mark.parametrize(
    "scores, strong, weak",
    [
        ([0.1, 0.2], [1.0], [0.0, 1.0]),
        ([], [], []),
        ([np.nan, 0.2], [1.0, 0.0], [0.0, 0.0]),
        ([[0.1, 0.2]], [[1.0, 0.0]], [[0.0, 0.0]]),
    ],
)
def test_bad_input_is_a_config_error(scores, strong, weak):
    with pytest.raises(ConfigError):
        metrics.exact_curve(scores, strong, weak)
    with pytest.raises(ConfigError):
        metrics.paper_curve(scores, strong, weak)


def test_undefined_pgr_and_unknown_protocol():
    with pytest.raises(ConfigError, match="equal quality"):
        metrics.pgr(0.5, 0.7, 0.7)
    with pytest.raises(ConfigError, match="unknown protocol"):
        metrics.curve([0.1], [1.0], [0.0], protocol="nope")


def test_cpt_when_the_weak_model_is_better_reads_pgr_not_quality():
    # Weak 0.8, strong 0.6: quality falls as strong calls rise; PGR = 0, .25, 1.
    c, q = np.array([0.0, 0.5, 1.0]), np.array([0.8, 0.75, 0.6])
    # 50% PGR is first reached between c=.5 (.25) and c=1 (1): .5 + .5 * .25 / .75.
    assert metrics.cpt(c, q, 0.5, 0.6, 0.8) == pytest.approx(0.5 + 0.5 / 3)
    assert metrics.cpt(c, q, 0.0, 0.6, 0.8) == 0.0


_LEVELS = st.sampled_from([0.0, 0.25, 0.5, 1.0])


@st.composite
def _routings(draw):
    """Scores with heavy ties (or none), qualities that may favour either model; 1-20 prompts."""
    n = draw(st.integers(1, 20))
    score = st.sampled_from([0.1, 0.5, 0.9]) | st.floats(0, 1)
    return tuple(np.array(draw(st.lists(v, min_size=n, max_size=n))) for v in (score, _LEVELS, _LEVELS))


@settings(max_examples=300, deadline=None)
@given(_routings(), st.sampled_from([0.2, 0.5, 0.8]))
def test_curves_apgr_and_cpt_match_the_definitions(routing, target):
    scores, strong, weak = routing
    s_q, w_q = strong.mean(), weak.mean()
    edges = np.quantile(scores, np.linspace(0, 1, 11))
    selections = {
        "paper": [scores > e if i == 10 else scores >= e for i, e in enumerate(edges)],
        "exact": [scores > scores.max()] + [scores >= t for t in np.unique(scores)],
    }
    for protocol, chosen in selections.items():
        points = sorted((sel.mean(), np.where(sel, strong, weak).mean()) for sel in chosen)
        cur = metrics.curve(scores, strong, weak, protocol=protocol)
        np.testing.assert_allclose(np.column_stack([cur.c, cur.quality]), points)
        if metrics.equal_quality(s_q, w_q):
            continue
        c, gained = np.array(points).T
        gained = (gained - w_q) / (s_q - w_q)
        area = sum((c[i + 1] - c[i]) * (gained[i] + gained[i + 1]) / 2 for i in range(len(c) - 1))
        assert metrics.apgr(cur.c, cur.quality, s_q, w_q) == pytest.approx(area)
        # the least c on the piecewise-linear curve where PGR reaches the target
        first = next(i for i, p in enumerate(gained) if p >= target - 1e-9)
        span = slice(max(first - 1, 0), first + 1)
        want = c[0] if first == 0 else np.interp(target, gained[span], c[span])
        assert metrics.cpt(cur.c, cur.quality, target, s_q, w_q) == pytest.approx(want)
