"""The control hub: the one decision path, its targets, calibration, and the state file."""

import json
import logging

import numpy as np
import pytest
from _fake_embedder import EmbeddingLengthRouter, HashEmbedder

from lmroute.control.config import ControlConfig
from lmroute.control.conversations import explicit_key
from lmroute.control.hub import ControlHub
from lmroute.control.knobs import NO_STRONG
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError, InvalidModelNameError
from lmroute.pricing import Price
from lmroute.routers.length import LengthRouter
from lmroute.routing_names import RouterSpec, parse_model_name

SHARE = parse_model_name("router-length-share-0.3")
PRICES = {
    "strong": Price(input_per_1m=10, output_per_1m=30),
    "weak": Price(input_per_1m=0.6, output_per_1m=0.6),
}


def scores(seed=0, n=1000, mean=0.5):
    return np.clip(np.random.default_rng(seed).normal(mean, 0.1, n), 0, 1)


def decide_all(hub, spec, values, **options):
    return [hub.decide(spec, float(s), **options) for s in values]


def test_a_fixed_threshold_is_used_as_given():
    hub = ControlHub()
    decided = hub.decide(RouterSpec("length", 0.4), 0.45)
    assert (decided.tier, decided.threshold, decided.target, decided.conversation) == (
        "strong",
        0.4,
        None,
        None,
    )
    assert hub.status()["controllers"] == []


@pytest.mark.parametrize(
    "model, first, tier",
    [
        ("router-length-share-0", 1.0, "weak"),
        ("router-length-share-1", 0.01, "strong"),
        ("router-length-spend-0", 0.99, "weak"),  # below what the weak model alone costs
        ("router-length-spend-1000", 0.01, "strong"),  # above what the strong model costs
    ],
)
def test_a_target_out_of_reach_holds_from_the_first_request_without_calibration(model, first, tier):
    # Without calibration prompts the first request was decided at the knob's default 0.5.
    hub = ControlHub(prices=PRICES)
    spec = parse_model_name(model)
    decided = decide_all(hub, spec, [first, *scores(1, 300), first], tokens=500)
    assert {d.tier for d in decided} == {tier}
    assert decided[0].threshold == (NO_STRONG if tier == "weak" else 0.0)


def test_without_calibration_a_target_in_reach_starts_at_the_default_threshold():
    decided = ControlHub().decide(SHARE, 0.45)
    assert (decided.tier, decided.threshold) == ("weak", 0.5)


def test_a_share_target_is_held_from_the_calibration_sample():
    hub = ControlHub()
    router = LengthRouter()
    calibration = [" ".join(["word"] * n) for n in range(1, 400)]
    hub.calibrate("length", router, calibration)
    first = hub.controller(SHARE).setting
    assert np.mean(router.score(calibration)[-200:] >= first) == pytest.approx(0.3, abs=0.01)
    decided = decide_all(hub, SHARE, scores())
    assert decided[0].target == {"mode": "share", "value": 0.3} and decided[0].threshold == first
    assert np.mean([d.tier == "strong" for d in decided[500:]]) == pytest.approx(0.3, abs=0.03)
    [status] = hub.status()["controllers"]
    assert status["model"] == "router-length-share-0.3" and status["decisions"] == 1000
    assert status["threshold"] == hub.controller(SHARE).setting


def test_the_largest_spend_target_keeps_every_number_finite():
    """A spend of 1e307 dollars per 1,000 requests (a client's model string) over models a tenth of
    a cent apart overflowed the controller's deficit to infinity: every request went weak, and the
    status and the state file could no longer be written as JSON (for every target of the hub)."""
    cheap = {
        "strong": Price(input_per_1m=0.2, output_per_1m=0.2),
        "weak": Price(input_per_1m=0.1, output_per_1m=0.1),
    }
    calibration = [" ".join(["word"] * n) for n in range(1, 200)]
    with pytest.raises(InvalidModelNameError, match="must be a number from 0 to 1000000000"):
        parse_model_name("router-length-spend-1" + "0" * 307)
    hub = ControlHub(prices=cheap)
    hub.calibrate("length", LengthRouter(), calibration)
    spend = parse_model_name("router-length-spend-1000000000")
    decided = decide_all(hub, spend, scores(n=50), tokens=500)
    assert all(d.tier == "strong" for d in decided)
    json.dumps([hub.status(), hub.to_state()], allow_nan=False)


def test_spend_targets_need_prices_and_a_strong_model_that_costs_more():
    spend = parse_model_name("router-length-spend-3")
    with pytest.raises(ConfigError, match="need the price of both models; the weak has none"):
        ControlHub(prices={"strong": PRICES["strong"], "weak": None}).check(spend)
    with pytest.raises(ConfigError, match=r"neither has one \(give each price"):
        ControlHub(prices={"strong": None, "weak": None}).check(spend)
    with pytest.raises(ConfigError, match="costs more"):
        ControlHub(prices={"strong": PRICES["weak"], "weak": PRICES["strong"]}).check(spend)
    # Dearer per token, but the weak model's answers are ten times longer: every request under
    # 5,250 input tokens cost more on the weak model, and the target sent everything strong.
    verbose = {
        "strong": Price(input_per_1m=3, output_per_1m=15, output_tokens=300),
        "weak": Price(input_per_1m=1, output_per_1m=5, output_tokens=3000),
    }
    with pytest.raises(ConfigError, match=r"costs more .* \(output_per_1m x output_tokens\)"):
        ControlHub(prices=verbose).check(spend)
    # Cheaper per output token, but its answers are longer: it costs more per request, and is held.
    terse = {**verbose, "weak": Price(input_per_1m=1, output_per_1m=20, output_tokens=100)}
    ControlHub(prices=terse).check(spend)
    hub = ControlHub(prices=PRICES)
    decided = decide_all(hub, spend, scores(), tokens=200)
    row = hub.row(spend, 0.5, 200)
    assert row[1] == pytest.approx(1000 * PRICES["weak"].request_cost(200))
    spent = [row[2] if d.tier == "strong" else row[1] for d in decided]
    assert np.mean(spent[500:]) == pytest.approx(3.0, abs=0.3)


def test_one_controller_per_api_key_when_asked():
    shared, per_key = ControlHub(), ControlHub(ControlConfig(per_api_key=True))
    for hub in (shared, per_key):
        hub.decide(SHARE, 0.5, tenant="a")
        hub.decide(SHARE, 0.5, tenant="b")
    assert len(shared.status()["controllers"]) == 1
    assert [c["tenant"] for c in per_key.status()["controllers"]] == ["a", "b"]


def test_no_new_target_is_taken_past_max_controllers():
    # Every distinct target (share-0.3001, 0.3002, ...) created a controller held for good: memory,
    # the state file, the metrics' labels and the status grew with whatever the clients sent.
    hub = ControlHub(ControlConfig(max_controllers=2, per_api_key=True))
    hub.decide(SHARE, 0.5, tenant="a")
    hub.decide(SHARE, 0.5, tenant="b")
    observed = hub.detector("length").observed
    for tenant, model in (("c", SHARE.model), ("a", "router-length-share-0.3001")):
        message = f"model '{model}': no new target .* the 2 controllers held \\(one per target and API key\\)"
        with pytest.raises(ConfigError, match=message + r" reach control\.max_controllers \(2\)"):
            hub.decide(parse_model_name(model), 0.5, tenant=tenant)
    assert hub.detector("length").observed == observed  # a refused request leaves no trace
    assert hub.decide(SHARE, 0.5, tenant="b").target == {"mode": "share", "value": 0.3}
    assert [c["decisions"] for c in hub.status()["controllers"]] == [1, 2]
    assert hub.decide(RouterSpec("length", 0.5), 0.5).threshold == 0.5  # fixed thresholds hold none


def test_the_controller_counts_what_the_conversation_decided():
    hub = ControlHub(ControlConfig(conversations={"enabled": True, "margin": 0.2}))
    key = explicit_key("c", source="header")
    hub.decide(RouterSpec("length", 0.5), 0.9, conversation=key)  # the conversation starts strong
    decided = hub.decide(SHARE, 0.0, conversation=key)  # below the threshold by more than the margin
    assert decided.tier == "weak" and decided.conversation == {"source": "header", "outcome": "switched"}
    kept = hub.decide(SHARE, hub.controller(SHARE).setting - 0.1, conversation=key)
    assert kept.tier == "weak" and kept.conversation["outcome"] == "stayed"
    assert hub.controller(SHARE).status().realized == 0.0  # two weak calls counted, as made
    assert hub.status()["conversations"]["switched"] == 1


def test_a_drift_episode_logs_one_warning(caplog):
    hub = ControlHub()
    hub.seed("length", scores(1, 400), tokens=np.ones(400))
    with caplog.at_level(logging.WARNING, logger="lmroute.control"):
        decide_all(hub, SHARE, np.concatenate([scores(2, 500), scores(3, 1000, mean=0.7)]))
    warnings = [r for r in caplog.records if "drift" in r.getMessage()]
    assert len(warnings) == 1 and "length" in warnings[0].getMessage()
    assert hub.status()["drift"]["length"]["alarms"] == 1


def test_embedding_summaries_of_the_calibration_become_the_drift_reference():
    summaries = EmbeddingSummaries()
    tapped = summaries.tap(HashEmbedder())

    hub = ControlHub()
    hub.calibrate(
        "length",
        EmbeddingLengthRouter(tapped),
        [f"prompt number {i}" for i in range(50)],
        summaries=summaries,
    )
    assert hub.detector("length").reference.mean is not None


def test_a_calibration_sample_larger_than_the_summary_store_keeps_its_embedding_reference():
    # Scored at once, its first prompts' summaries were pushed out of the store before they were
    # taken, and the reference watched the scores alone (a server with 5,000 calibration prompts).
    summaries = EmbeddingSummaries(capacity=100)
    tapped = summaries.tap(HashEmbedder())

    prompts = [f"prompt number {i}" for i in range(250)]
    hub = ControlHub()
    hub.calibrate("length", EmbeddingLengthRouter(tapped), [*prompts, prompts[0]], summaries=summaries)
    reference = hub.detector("length").reference
    assert reference.size == 251 and reference.mean is not None
    assert hub.detector("length").status()["embedding_shift"] == 0.0


# -- the state file ----------------------------------------------------------------------------------


def test_a_hub_restored_from_its_state_file_continues_exactly(tmp_path):
    config = ControlConfig(state_file=str(tmp_path / "state.json"))
    traffic = scores(4, 1200)
    whole = ControlHub(config.model_copy(update={"state_file": None}))
    whole.seed("length", scores(5, 300), tokens=np.ones(300))
    expected = [d.tier for d in decide_all(whole, SHARE, traffic)]
    first = ControlHub(config)
    first.seed("length", scores(5, 300), tokens=np.ones(300))
    head = [d.tier for d in decide_all(first, SHARE, traffic[:600])]
    first.save()
    second = ControlHub(config)
    assert second.load() and second.state_report["restored"]
    second.seed("length", scores(6, 300), tokens=np.ones(300))  # a restored state wins over the seed
    tail = [d.tier for d in decide_all(second, SHARE, traffic[600:])]
    assert head + tail == expected
    assert second.status()["drift"] == whole.status()["drift"]


def test_settings_changed_in_the_config_hold_after_a_restart(tmp_path):
    config = ControlConfig(state_file=str(tmp_path / "state.json"))
    first = ControlHub(config)
    first.seed("length", scores(5, 300), tokens=np.ones(300))
    decide_all(first, SHARE, scores(4, 600))
    first.save()
    changed = {"window": 50, "gain": 0.1, "drift": {"span": 20, "reference_size": 40, "false_alarm": 1e-3}}
    second = ControlHub(ControlConfig.model_validate({**config.model_dump(), **changed}))
    assert second.load()
    controller = second.controller(SHARE)
    assert (controller.window, controller.gain) == (50, 0.1)
    assert controller.to_state()["rows"] == first.controller(SHARE).to_state()["rows"][-50:]
    detector = second.detector("length")
    assert (detector.span, detector.reference_size, detector.false_alarm) == (20, 40, 1e-3)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01 not json",
        b'{"format": "something else"}',
        b'{"format": "lmroute-control", "version": 99}',
        b'{"format": "lmroute-control", "version": 1, "controllers": [{"model": "router-x-share-7"}], '
        b'"drift": {}}',
        b'{"format": "lmroute-control", "version": 1, "controllers": [], "drift": {"mf": {"state": 1}}}',
        b'{"format": "lmroute-control", "version": 1, "controllers": [{"model": "router-x-share-0.3", '
        b'"tenant": null, "controller": {"target": 0.9, "window": 10, "gain": 0.05, "rows": [], "used": [], '
        b'"decisions": 0, "usage_total": 0, "deficit": 0, "setting": 0.5}}], "drift": {}}',
        b'{"format": "lmroute-control", "version": 1, "controllers": [{"model": "router-x-0.3", '
        b'"tenant": null, "controller": {"target": 0.3, "window": 10, "gain": 0.05, "rows": [], "used": [], '
        b'"decisions": 0, "usage_total": 0, "deficit": 0, "setting": 0.5}}], "drift": {}}',
        b'{"format": "lmroute-control", "version": 1, "controllers": "',  # cut mid-write by hand
    ],
    ids=[
        "binary",
        "another format",
        "newer version",
        "bad target",
        "bad detector",
        "another target",
        "a fixed threshold",
        "truncated",
    ],
)
def test_a_corrupted_state_file_is_reported_moved_aside_and_replaced(tmp_path, caplog, content):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    hub = ControlHub(ControlConfig(state_file=str(path)))
    with caplog.at_level(logging.WARNING, logger="lmroute.control"):
        assert hub.load() is False
    problem = hub.state_report["problem"]
    assert problem and "moved to" in problem and str(path) in caplog.text
    [aside] = tmp_path.glob("state.json.corrupt-*")
    assert aside.read_bytes() == content and not path.exists()
    decide_all(hub, SHARE, scores(7, 10))
    hub.save()
    assert json.loads(path.read_text())["format"] == "lmroute-control"
    assert ControlHub(ControlConfig(state_file=str(path))).load()


@pytest.mark.parametrize(
    "where, number",
    [
        (("controllers", 0, "controller", "decisions"), "Infinity"),
        (("controllers", 0, "controller", "deficit"), "9" * 400),
        (("drift", "length", "observed"), "-Infinity"),
        (("drift", "length", "reference", "size"), "1e999"),
        (("drift", "length", "reference", "edges", 0), "9" * 400),
        # they loaded, and the next reference taken from the traffic raised on a request
        (("drift", "length", "settings", "bins"), "Infinity"),
        (("drift", "length", "settings", "bins"), "1000000000000"),
    ],
    ids=[
        "infinite count",
        "long deficit",
        "infinite drift count",
        "overflowing size",
        "long edge",
        "infinite bins",
        "a trillion bins",
    ],
)
def test_numbers_int_or_float_cannot_hold_are_a_state_that_does_not_fit(tmp_path, caplog, where, number):
    # JSON reads Infinity, 1e999 and integers of any length; int() and float() raised OverflowError,
    # which escaped the checks: a traceback at the start of the server instead of starting afresh.
    path = tmp_path / "state.json"
    hub = ControlHub(ControlConfig(state_file=str(path)))
    hub.seed("length", scores(5, 300), tokens=np.ones(300))
    decide_all(hub, SHARE, scores(6, 50))
    hub.save()
    state = json.loads(path.read_text())
    *parents, last = where
    inner = state
    for key in parents:
        inner = inner[key]
    inner[last] = "NUMBER"
    path.write_text(json.dumps(state).replace('"NUMBER"', number))
    restarted = ControlHub(ControlConfig(state_file=str(path)))
    with caplog.at_level(logging.WARNING, logger="lmroute.control"):
        assert restarted.load() is False
    assert "does not fit" in restarted.state_report["problem"]
    assert len(list(tmp_path.glob("state.json.corrupt-*"))) == 1 and not path.exists()


@pytest.mark.parametrize(
    "key, value",
    # what no sample gives: trace(S)^2 / trace(S^2) is at least 1, a bin's share at least 1e-4
    [("dof", 1e-6), ("proportions", 5e-324)],
    ids=["degrees of freedom below 1", "a bin's share below the floor"],
)
def test_a_drift_reference_no_sample_could_give_is_a_state_that_does_not_fit(tmp_path, key, value):
    # It loaded, and then every request raised ZeroDivisionError (a 500 from the server), or the
    # shift became Infinity: /v1/status a 500 and every later save refused.
    path = tmp_path / "state.json"
    rng = np.random.default_rng(3)
    hub = ControlHub(ControlConfig(state_file=str(path)))
    hub.seed("length", scores(5, 300), tokens=np.ones(300), summaries=rng.normal(size=(300, 8)))
    decide_all(hub, SHARE, scores(6, 50), summary=rng.normal(size=8))
    hub.save()
    state = json.loads(path.read_text())
    reference = state["drift"]["length"]["reference"]
    reference[key] = value if key == "dof" else [value] * len(reference[key])
    path.write_text(json.dumps(state))
    restarted = ControlHub(ControlConfig(state_file=str(path)))
    assert restarted.load() is False
    assert "does not fit" in restarted.state_report["problem"]
    decide_all(restarted, SHARE, scores(7, 50), summary=rng.normal(size=8))
    json.dumps(restarted.status(), allow_nan=False)


def test_a_state_file_that_is_a_folder_is_a_config_error_and_the_folder_stays(tmp_path):
    # It was taken for an unreadable state file: the folder was moved to <name>.corrupt-<time> with
    # everything in it, and the next save wrote the state under the folder's name.
    folder = tmp_path / "lmroute"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    hub = ControlHub(ControlConfig(state_file=str(folder)))
    with pytest.raises(ConfigError, match=f"control.state_file {folder} is a folder: .*control.json"):
        hub.load()
    assert (folder / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["lmroute"]


def test_restored_controllers_count_towards_max_controllers_and_are_kept_past_it(tmp_path, caplog):
    path = tmp_path / "state.json"
    first = ControlHub(ControlConfig(state_file=str(path)))
    targets = [parse_model_name(f"router-length-share-0.{n}") for n in (1, 2, 3)]
    for spec in targets:
        first.decide(spec, 0.5)
    first.save()
    for limit, kept_past in ((3, False), (2, True)):
        again = ControlHub(ControlConfig(state_file=str(path), max_controllers=limit))
        with caplog.at_level(logging.WARNING, logger="lmroute.control"):
            assert again.load()
        assert ("more than control.max_controllers (2): all are kept" in caplog.text) is kept_past
        with pytest.raises(ConfigError, match=r"reach control\.max_controllers"):
            again.decide(parse_model_name("router-length-share-0.4"), 0.5)
        assert [again.decide(spec, 0.5).target["value"] for spec in targets] == [0.1, 0.2, 0.3]


def test_restored_controllers_no_request_can_reach_are_dropped(tmp_path, caplog):
    # A renamed router's controllers, or an API key's once per_api_key was turned off, stayed in the
    # status, the metrics and the state file for good, and took room under max_controllers.
    path = tmp_path / "state.json"
    first = ControlHub(ControlConfig(state_file=str(path), per_api_key=True))
    first.decide(SHARE, 0.5)  # a server without API keys
    first.decide(SHARE, 0.5, tenant="a")
    first.decide(parse_model_name("router-old-share-0.3"), 0.5)
    first.save()
    saved = path.read_bytes()

    def held(hub):
        return [(c["model"], c["tenant"]) for c in hub.status()["controllers"]], list(hub.status()["drift"])

    kept = ControlHub(ControlConfig(state_file=str(path), per_api_key=True))
    assert kept.load() and held(kept) == held(first)  # lmroute replay: the routers served are unknown
    again = ControlHub(ControlConfig(state_file=str(path)))
    with caplog.at_level(logging.WARNING, logger="lmroute.control"):
        assert again.load(routers=["length"])
    assert held(again) == ([(SHARE.model, None)], ["length"])
    for dropped in (
        "router-old-share-0.3 (router old is not served)",
        "router-length-share-0.3 of an API key (per_api_key is off)",
        "the drift detector of old (not served)",
    ):
        assert dropped in caplog.text
    assert again.decide(SHARE, 0.5).target == {"mode": "share", "value": 0.3}
    again.save()
    assert [c["model"] for c in json.loads(path.read_text())["controllers"]] == [SHARE.model]
    path.write_bytes(saved)
    whole = ControlHub(ControlConfig(state_file=str(path), per_api_key=True))
    assert whole.load(routers=["length", "old"]) and held(whole) == held(first)


def test_saves_come_every_save_every_decisions(tmp_path):
    hub = ControlHub(ControlConfig(state_file=str(tmp_path / "s.json"), save_every=3))
    hub.decide(SHARE, 0.5)
    hub.decide(SHARE, 0.5)
    assert not hub.save_due
    hub.decide(SHARE, 0.5)
    assert hub.save_due
    hub.snapshot()
    assert not hub.save_due and not ControlHub().save_due  # no state file: never due


SPEND = parse_model_name("router-length-spend-3")


def saved_spend_hub(config: ControlConfig, prices, seed: int, n: int, spec=SPEND):
    """A hub that held ``spec`` on ``n`` random requests at ``prices`` and saved its state; with the
    scores and token counts of those requests."""
    rng = np.random.default_rng(seed)
    traffic, tokens = rng.uniform(0, 1, n), rng.integers(50, 2000, n).astype(float)
    hub = ControlHub(config, prices=prices)
    for score, count in zip(traffic, tokens, strict=True):
        hub.decide(spec, float(score), tokens=float(count))
    hub.save()
    return hub, traffic, tokens


def test_a_restart_with_other_prices_reprices_the_spend_window(tmp_path):
    """A restored spend controller kept the prices its window was saved with until 200 new requests
    had refilled it: a doubled strong price was held at the old spend meanwhile."""
    config = ControlConfig(state_file=str(tmp_path / "state.json"))
    first, traffic, tokens = saved_spend_hub(config, PRICES, 7, 400)
    saved_setting = first.controller(SPEND).setting
    dearer = {**PRICES, "strong": Price(input_per_1m=20, output_per_1m=60)}
    second = ControlHub(config, prices=dearer)
    assert second.load()
    controller = second.controller(SPEND)
    expected = [
        second.row(SPEND, float(s), float(n)) for s, n in zip(traffic[-200:], tokens[-200:], strict=True)
    ]
    np.testing.assert_allclose(controller.to_state()["rows"], expected, rtol=1e-9)
    # Each strong call costs twice as much: fewer requests go strong for the same spend.
    assert controller.setting > saved_setting
    # Saved again, the window says the prices it is priced at: a restart with them changes nothing.
    second.save()
    third = ControlHub(config, prices=dearer)
    assert third.load()
    assert third.controller(SPEND).to_state() == controller.to_state()


def test_a_restart_without_prices_keeps_the_prices_of_the_spend_window(tmp_path):
    """A server restarted without prices (spend targets refused meanwhile) saves the spend window
    again: it keeps the prices it is priced at, so a later restart with other prices re-prices it."""
    config = ControlConfig(state_file=str(tmp_path / "state.json"))
    _, traffic, tokens = saved_spend_hub(config, PRICES, 8, 300)
    unpriced = ControlHub(config)
    assert unpriced.load()
    with pytest.raises(ConfigError, match="spend targets need the price of both models"):
        unpriced.check(SPEND)
    unpriced.save()
    dearer = {**PRICES, "strong": Price(input_per_1m=20, output_per_1m=60, output_tokens=500)}
    again = ControlHub(config, prices=dearer)
    assert again.load()
    expected = [
        again.row(SPEND, float(s), float(n)) for s, n in zip(traffic[-200:], tokens[-200:], strict=True)
    ]
    np.testing.assert_allclose(again.controller(SPEND).to_state()["rows"], expected, rtol=1e-9)


def test_saved_prices_that_price_no_input_token_leave_the_window_and_say_so(tmp_path, caplog):
    config = ControlConfig(state_file=str(tmp_path / "state.json"))
    per_answer = {
        "strong": Price(input_per_1m=0, output_per_1m=30),
        "weak": Price(input_per_1m=0, output_per_1m=0.6),
    }
    spec = parse_model_name("router-length-spend-5")
    first, _, _ = saved_spend_hub(config, per_answer, 9, 250, spec)
    second = ControlHub(config, prices=PRICES)
    with caplog.at_level(logging.WARNING, logger="lmroute.control"):
        assert second.load()
    assert "keeps the prices it was saved with until it refills" in caplog.text
    assert second.controller(spec).to_state() == first.controller(spec).to_state()
