"""Drift detection: quiet on stationary traffic, an alarm soon after each shift, one per episode."""

import json

import numpy as np
import pytest

from lmroute.control.drift import DriftDetector, chi_square_level, summary_projection
from lmroute.exceptions import ConfigError


def traffic(rng, n, *, score_mean=0.5, topic=0.0, dim=16):
    """Scores and embedding summaries; ``topic`` moves the summaries' mean along one direction."""
    scores = np.clip(rng.normal(score_mean, 0.05, n), 0, 1)
    summaries = rng.normal(0, 1, (n, dim)) / np.sqrt(dim)
    summaries[:, 0] += topic
    return scores, summaries


def alarms(detector, scores, summaries):
    return [i for i, (s, e) in enumerate(zip(scores, summaries, strict=True)) if detector.observe(s, e)]


@pytest.mark.parametrize(
    "dof, quantile, level",
    # chi-square quantiles from tables, over their degrees of freedom
    [(10, 0.99, 23.209), (9, 0.999, 27.877), (30, 0.999999, 82.044), (9, 0.999999, 44.811)],
)
def test_alarm_levels_are_chi_square_quantiles(dof, quantile, level):
    assert chi_square_level(dof, 1 - quantile) * dof == pytest.approx(level, rel=0.03)


def test_with_few_degrees_of_freedom_the_level_errs_high():
    # 30.665 is the table's; a higher level only makes false alarms rarer
    assert 30.665 <= chi_square_level(3, 1e-6) * 3 <= 30.665 * 1.08


def test_stationary_traffic_raises_no_alarm():
    rng = np.random.default_rng(0)
    detector = DriftDetector()
    detector.set_reference(*traffic(rng, 400))
    assert alarms(detector, *traffic(rng, 10_000)) == []
    assert detector.state == "watching" and max(detector.score_shift, detector.embedding_shift) < 1


@pytest.mark.parametrize(
    "shift",
    [{"score_mean": 0.56}, {"topic": 0.5}],
    ids=["scores move", "only the prompts' topic moves"],
)
def test_a_shift_raises_one_alarm_within_300_requests(shift):
    rng = np.random.default_rng(1)
    detector = DriftDetector()
    detector.set_reference(*traffic(rng, 400))
    before, after = traffic(rng, 1000), traffic(rng, 2000, **shift)
    found = alarms(detector, np.concatenate([before[0], after[0]]), np.concatenate([before[1], after[1]]))
    assert len(found) == 1 and 1000 <= found[0] < 1300, found
    # the episode ends on a new reference of the shifted traffic, which it then watches
    assert detector.state == "watching" and detector.reference.source == "traffic"


def test_every_shift_of_a_sequence_raises_its_own_alarm():
    rng = np.random.default_rng(2)
    detector = DriftDetector(span=200, reference_size=300)
    detector.set_reference(*traffic(rng, 400))
    parts = [
        traffic(rng, 1500, score_mean=m, topic=t) for m, t in [(0.5, 0), (0.6, 0), (0.6, 0.6), (0.45, 0.3)]
    ]
    found = alarms(detector, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    assert len(found) == 3
    assert all(0 <= a - shift < 300 for a, shift in zip(found, (1500, 3000, 4500), strict=True)), found
    assert detector.alarms == 3


def test_without_a_reference_the_first_requests_become_one():
    rng = np.random.default_rng(3)
    detector = DriftDetector(reference_size=100)
    assert alarms(detector, *traffic(rng, 100)) == [] and detector.state == "watching"
    found = alarms(detector, *traffic(rng, 600, score_mean=0.7))
    assert len(found) == 1 and found[0] < 300


def test_scores_alone_are_watched_when_there_are_no_embeddings():
    rng = np.random.default_rng(4)
    detector = DriftDetector()
    detector.set_reference(traffic(rng, 400)[0])
    shifted = np.concatenate([traffic(rng, 500)[0], traffic(rng, 500, score_mean=0.58)[0]])
    found = [i for i, s in enumerate(shifted) if detector.observe(s)]
    assert len(found) == 1 and 500 <= found[0] < 800 and detector.embedding_shift is None


def test_a_restored_detector_continues_exactly():
    rng = np.random.default_rng(5)
    reference, first, second = traffic(rng, 400), traffic(rng, 700), traffic(rng, 700, topic=0.5)
    whole = DriftDetector()
    whole.set_reference(*reference)
    expected = alarms(whole, np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]]))
    part = DriftDetector()
    part.set_reference(*reference)
    alarms(part, *first)
    restored = DriftDetector.from_state(json.loads(json.dumps(part.to_state())))
    got = [700 + i for i in alarms(restored, *second)]
    assert got == expected and restored.status() == whole.status()


def test_a_state_that_does_not_fit_is_refused():
    detector = DriftDetector()
    detector.set_reference(np.linspace(0, 1, 50))
    state = detector.to_state()
    nan = float("nan")
    reference = state["reference"]
    for bad in (
        {"state": "dozing"},
        {"live_bins": [0.5]},
        {"settings": {"span": 0}},
        {"observed": "many"},
        # JSON readers take NaN and Infinity: each would reach the alarm and /v1/status
        {"live_bins": [nan] * len(state["live_bins"])},
        {"score_shift": 1e400},
        {"reference": {**reference, "proportions": [nan] * len(reference["proportions"])}},
        {"reference": {**reference, "edges": reference["edges"][::-1]}},
        {"last_alarm": {"request": 3, "by": "scores", "score_shift": nan, "embedding_shift": None}},
        {"last_alarm": "yesterday"},
        {"reference": None},  # watching without a reference: it would never alarm
    ):
        with pytest.raises(ConfigError):
            DriftDetector.from_state({**state, **bad})


def test_a_restored_reference_of_another_summary_length_watches_the_scores_alone():
    rng = np.random.default_rng(8)
    detector = DriftDetector()
    detector.set_reference(*traffic(rng, 300, dim=8))
    restored = DriftDetector.from_state(json.loads(json.dumps(detector.to_state())))
    scores, summaries = traffic(rng, 50, dim=16)  # the server's summaries are 16-long now
    assert alarms(restored, scores, summaries) == [] and restored.embedding_shift == 0.0


def test_a_restored_collection_of_another_summary_length_ends_in_a_reference_of_the_scores():
    # It raised ValueError from np.stack when the collection was complete, on that request and on
    # every later one of the router (the collection stayed full), and in the state file it saved.
    rng = np.random.default_rng(11)
    detector = DriftDetector(reference_size=20)
    alarms(detector, *traffic(rng, 10, dim=8))
    restored = DriftDetector.from_state(json.loads(json.dumps(detector.to_state())))
    assert alarms(restored, *traffic(rng, 30, dim=16)) == []
    assert restored.state == "watching" and restored.reference.mean is None


def test_the_summary_projection_is_fixed_and_keeps_distances():
    a, b = summary_projection(384), summary_projection(384)
    assert a.shape == (384, 64) and np.array_equal(a, b)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 384))
    ratio = np.linalg.norm((x[:100] - x[100:]) @ a, axis=1) / np.linalg.norm(x[:100] - x[100:], axis=1)
    assert 0.85 < ratio.mean() < 1.15


def test_a_saved_state_does_not_change_with_later_requests():
    # The server takes the state on its event loop and writes it in a worker thread while
    # requests go on: a reference being collected must not grow in the snapshot.
    detector = DriftDetector(reference_size=50)
    rng = np.random.default_rng(9)
    scores, summaries = traffic(rng, 20)
    alarms(detector, scores[:10], summaries[:10])
    state = detector.to_state()
    written = json.dumps(state)
    alarms(detector, scores[10:], summaries[10:])
    assert json.dumps(state) == written


@pytest.mark.parametrize("reference_size", [20, 300], ids=["collecting", "watching"])
def test_an_embedding_that_is_not_finite_is_left_out_and_the_state_stays_saveable(reference_size):
    # A score that is NaN is routed as 0.5 (Router.score); a summary is taken as the embedder gave
    # it, and one NaN kept in the weighted live mean would stay there for good: /v1/status a 500
    # and every save of the state file refused.
    rng = np.random.default_rng(10)
    detector = DriftDetector(reference_size=reference_size)
    if reference_size == 300:
        detector.set_reference(*traffic(rng, 300))
    scores, summaries = traffic(rng, 40)
    summaries[3] = np.nan
    summaries[5, 2] = np.inf
    alarms(detector, scores, summaries)
    json.dumps(detector.status(), allow_nan=False)
    json.dumps(detector.to_state(), allow_nan=False)
    assert detector.reference is not None
    if reference_size == 300:  # the embeddings are still watched (a reference collected with a
        # request without its summary is one of the scores alone, as it is for a missing summary)
        assert 0 < detector.embedding_shift < 1


def test_an_overflowing_embedding_shift_is_reported_finite_and_the_state_stays_saveable():
    """A restored live mean of 1e300 (finite: the state file's check passed it), or summaries that
    far from the reference, overflowed the distance to infinity: the alarm held it, /v1/status was a
    500 and every save was refused, so the next start restored the same file and overflowed again."""
    rng = np.random.default_rng(11)
    detector = DriftDetector()
    detector.set_reference(*traffic(rng, 300))
    state = detector.to_state()
    state["live_mean"] = [1e300] * len(state["live_mean"])
    restored = DriftDetector.from_state(state)
    scores, summaries = traffic(rng, 3)
    assert alarms(restored, scores, summaries) == [0]
    assert restored.embedding_shift == restored.last_alarm["embedding_shift"] == np.finfo(np.float64).max
    json.dumps([restored.status(), restored.to_state()], allow_nan=False)
    assert DriftDetector.from_state(json.loads(json.dumps(restored.to_state()))).state == "drifted"
