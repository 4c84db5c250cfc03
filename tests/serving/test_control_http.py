"""Online control over HTTP: target modes, /v1/status, /metrics, conversations, the state file."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager, suppress

import httpx
import numpy as np
import pytest
from fake_openai import serve_in_thread

from lmroute.control.config import ControlConfig
from lmroute.control.hub import ControlHub
from lmroute.pricing import Price
from lmroute.routers.length import LengthRouter
from lmroute.routing_names import parse_model_name
from lmroute.serving.app import create_app
from lmroute.serving.control import api_key_tenant

SHARE = "router-length-share-0.3"


def prompts(seed: int, n: int) -> list[str]:
    """Prompts of random lengths: the length router scores them from 0.02 to 0.9."""
    lengths = np.random.default_rng(seed).integers(10, 4000, size=n)
    return ["x" * int(k) for k in lengths]


@contextmanager
def running(config):
    with (
        serve_in_thread(create_app(config, routers={"length": LengthRouter()})) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client


def control_config(upstreams, tmp_path, **control):
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(prompts(1, 300)) + "\n")
    return upstreams.config(control={"calibration_prompts": str(calibration), **control})


def route(client, prompt, model=SHARE, **fields):
    response = client.post("/v1/route", json={"model": model, "prompt": prompt, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_share_target_is_held_and_reported(upstreams, tmp_path):
    with running(control_config(upstreams, tmp_path)) as client:
        # The traffic is longer than the calibration sample: a fixed threshold would drift up.
        answers = [route(client, p + "y" * 1500) for p in prompts(2, 400)]
        strong = [a["decision"] == "strong" for a in answers]
        assert abs(np.mean(strong[100:]) - 0.3) < 0.05
        assert answers[-1]["target"] == {"mode": "share", "value": 0.3}
        assert answers[-1]["threshold"] > answers[0]["threshold"]  # it followed the longer prompts
        chat = client.post(
            "/v1/chat/completions", json={"model": SHARE, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 200
        info = chat.json()["lmroute"]
        assert info["target"] == {"mode": "share", "value": 0.3} and 0 < info["threshold"] < 1
        assert float(chat.headers["x-lmroute-threshold"]) == pytest.approx(info["threshold"], abs=1e-6)

        status = client.get("/v1/status").json()
        [controller] = status["controllers"]
        assert controller["model"] == SHARE and controller["decisions"] == 401
        assert abs(controller["realized"] - 0.3) < 0.06
        assert status["drift"]["length"]["state"] in ("watching", "drifted", "collecting")

        metrics = client.get("/metrics").text
        assert f'lmroute_control_threshold{{model="{SHARE}",tenant=""}}' in metrics
        assert f'lmroute_control_target{{model="{SHARE}",tenant=""}} 0.3' in metrics
        assert 'lmroute_drift_score_shift{router="length"}' in metrics


def test_metrics_tell_a_reference_being_collected_from_one_watched(upstreams):
    """/metrics exported the same drift samples while a router's first requests were still being
    collected as its reference (it cannot alarm yet) as once it was watched."""
    config = upstreams.config(control={"drift": {"reference_size": 20}})
    with running(config) as client:
        for prompt in prompts(4, 5):
            route(client, prompt, model="router-length-0.5")
        metrics = client.get("/metrics").text
        assert 'lmroute_drift_collected{router="length"} 5.0' in metrics
        assert 'lmroute_drift_reference_size{router="length"} 20.0' in metrics
        assert client.get("/v1/status").json()["drift"]["length"]["collected"] == 5
        for prompt in prompts(5, 15):
            route(client, prompt, model="router-length-0.5")
        metrics = client.get("/metrics").text
        assert "lmroute_drift_collected{" not in metrics  # watching: nothing being collected
        assert 'lmroute_drift_reference_size{router="length"} 20.0' in metrics


def test_a_fixed_threshold_keeps_its_meaning(upstreams, tmp_path):
    with running(control_config(upstreams, tmp_path)) as client:
        answer = route(client, "x" * 100, model="router-length-0.7")
        assert answer["threshold"] == 0.7 and answer["target"] is None
        assert client.get("/v1/status").json()["controllers"] == []


def test_a_spend_target_is_held_with_the_models_prices(upstreams, tmp_path):
    config = control_config(upstreams, tmp_path)
    config = config.model_copy(
        update={
            "strong": config.strong.model_copy(update={"price": Price(input_per_1m=10, output_per_1m=30)}),
            "weak": config.weak.model_copy(update={"price": Price(input_per_1m=0.6, output_per_1m=0.6)}),
        }
    )
    # Per request: about $0.0092 strong and $0.0004 weak; $3.0 per 1,000 is a share of about 0.3.
    with running(config) as client:
        answers = [route(client, p, model="router-length-spend-3") for p in prompts(3, 300)]
        status = client.get("/v1/status").json()["controllers"][0]
    assert answers[-1]["target"] == {"mode": "spend", "value": 3.0}
    assert status["mode"] == "spend" and abs(status["realized"] - 3.0) < 0.5


@pytest.mark.parametrize(
    "model, status, code, message",
    [
        ("router-length-share-1.5", 400, "invalid_model", "outside [0, 1]"),
        ("router-length-share--0.1", 400, "invalid_model", "negative"),
        ("router-length-spend--2", 400, "invalid_model", "negative"),
        ("router-length-budget-0.3", 400, "invalid_model", "share, spend"),
        ("router-length-spend-2", 400, "invalid_value", "price"),
        ("router-nope-share-0.3", 400, "router_not_found", "available: length"),
    ],
)
def test_bad_targets_get_openai_shaped_errors(upstreams, tmp_path, model, status, code, message):
    with running(upstreams.config()) as client:
        for path, body in (
            ("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            ("/v1/route", {"model": model, "prompt": "hi"}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == code and message in error["message"]
        assert client.get("/health").json()["status"] == "ok"
    assert not upstreams.strong.requests and not upstreams.weak.requests


def test_a_new_target_past_max_controllers_is_a_400_and_the_held_ones_go_on(upstreams, tmp_path):
    # Each distinct target a client sent (share-0.3001, 0.3002, ...) was held for good: memory, the
    # state file, the status and a /metrics label each, without bound.
    with running(upstreams.config(control={"max_controllers": 2})) as client:
        for model in (SHARE, "router-length-share-0.3001"):
            route(client, "x" * 100, model=model)
        for path, body in (
            ("/v1/route", {"model": "router-length-share-0.3002", "prompt": "hi"}),
            (
                "/v1/chat/completions",
                {"model": "router-length-share-0.3002", "messages": [{"role": "user", "content": "hi"}]},
            ),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "invalid_value" and error["type"] == "invalid_request_error"
            assert "reach control.max_controllers" in error["message"]
        assert route(client, "x" * 100)["target"] == {"mode": "share", "value": 0.3}
        status = client.get("/v1/status").json()
        assert [c["decisions"] for c in status["controllers"]] == [2, 1]
        assert "0.3002" not in client.get("/metrics").text
    assert not upstreams.strong.requests and not upstreams.weak.requests


def test_a_server_restarted_mid_replay_continues_from_its_saved_state(upstreams, tmp_path):
    state = tmp_path / "control.json"
    config = control_config(upstreams, tmp_path, state_file=str(state), save_every=50)
    traffic = [p + "y" * 800 for p in prompts(4, 600)]
    with running(config) as client:
        head = [route(client, p)["threshold"] for p in traffic[:300]]
    assert json.loads(state.read_text())["format"] == "lmroute-control"  # saved at shutdown
    with running(config) as client:
        assert client.get("/v1/status").json()["state"]["restored"] is True
        tail = [route(client, p)["threshold"] for p in traffic[300:]]
        assert client.get("/v1/status").json()["controllers"][0]["decisions"] == 600
    # One uninterrupted hub, fed the same scores, made the very same decisions.
    hub = ControlHub(ControlConfig(window=config.control.window, gain=config.control.gain))
    router = LengthRouter()
    hub.calibrate("length", router, prompts(1, 300))
    spec = parse_model_name(SHARE)
    whole = [hub.decide(spec, s).threshold for s in router.score(traffic).tolist()]
    assert head + tail == pytest.approx(whole, abs=0)


def test_restored_controllers_of_a_router_no_longer_served_are_dropped(upstreams, tmp_path):
    # They stayed in /v1/status, /metrics and the state file for good, unreachable.
    state = tmp_path / "control.json"
    before = ControlHub(ControlConfig(state_file=str(state)))
    for model in (SHARE, "router-renamed-share-0.3"):
        before.decide(parse_model_name(model), 0.5)
    before.save()
    with running(control_config(upstreams, tmp_path, state_file=str(state))) as client:
        status = client.get("/v1/status").json()
        assert [c["model"] for c in status["controllers"]] == [SHARE] and "renamed" not in status["drift"]
        assert "renamed" not in client.get("/metrics").text
    assert "renamed" not in state.read_text()


def test_a_corrupted_state_file_is_reported_and_replaced(upstreams, tmp_path):
    state = tmp_path / "control.json"
    state.write_bytes(b'{"format": "lmroute-control", "version": 1, "controllers": [{"mo')
    config = control_config(upstreams, tmp_path, state_file=str(state))
    with running(config) as client:
        report = client.get("/v1/status").json()["state"]
        assert report["restored"] is False and "not valid JSON" in report["problem"]
        assert route(client, "x" * 500)["target"] == {"mode": "share", "value": 0.3}
    assert json.loads(state.read_text())["controllers"][0]["model"] == SHARE
    assert len(list(tmp_path.glob("control.json.corrupt-*"))) == 1


def routed_until(client, done, tries=200):
    """The status's state report once ``done(report)``, routing a request before each look (a
    save is due after each decision, and made in a worker thread)."""
    for _ in range(tries):
        route(client, "x" * 300)
        report = client.get("/v1/status").json()["state"]
        if done(report):
            return report
        time.sleep(0.01)
    raise AssertionError(f"the state report stayed {report}")


def test_a_failed_save_is_shown_in_the_status_until_a_save_succeeds(upstreams, tmp_path):
    # A save that failed (a full disk, no permission, a folder in the way) was only logged:
    # /v1/status said state.problem null while nothing reached the state file.
    state = tmp_path / "control.json"
    config = control_config(upstreams, tmp_path, state_file=str(state), save_every=1)
    with running(config) as client:
        routed_until(client, lambda report: state.is_file())
        while not state.is_dir():  # in the way of the next save; a save under way may put the file back
            with suppress(FileNotFoundError):
                state.unlink()
            with suppress(FileExistsError):
                state.mkdir()
        report = routed_until(client, lambda report: report["problem"] is not None)
        assert report["problem"] == f"the last save failed: cannot write {state}: it is a folder"
        state.rmdir()
        routed_until(client, lambda report: report["problem"] is None)
        assert state.is_file()


def test_conversations_stay_on_their_model(upstreams, tmp_path):
    config = upstreams.config(control={"conversations": {"enabled": True, "margin": 0.2}})
    with running(config) as client:
        # The length router scores n / (n + 500): 3000 characters 0.86, 400 0.44, 200 0.29.
        long, middle, short = "x" * 3000, "x" * 400, "x" * 200
        first = route(client, long, model="router-length-0.5", user="alice")
        assert first["decision"] == "strong" and first["conversation"]["outcome"] == "new"
        # Below the threshold, but not by the margin: the conversation stays on the strong model.
        kept = route(client, middle, model="router-length-0.5", user="alice")
        assert kept["decision"] == "strong" and kept["conversation"]["outcome"] == "stayed"
        moved = route(client, short, model="router-length-0.5", user="alice")
        assert moved["decision"] == "weak" and moved["conversation"]["outcome"] == "switched"
        header = client.post(
            "/v1/route",
            json={"model": "router-length-0.5", "prompt": long},
            headers={"x-lmroute-conversation": "bob"},
        ).json()
        assert header["conversation"]["source"] == "header"
        conversations = client.get("/v1/status").json()["conversations"]
        assert conversations["switched"] == 1 and conversations["stayed"] == 1
        assert "lmroute_conversation_switch_rate 0.5" in client.get("/metrics").text


def test_one_controller_per_api_key_when_asked(upstreams, tmp_path, monkeypatch):
    monkeypatch.setenv("LMROUTE_API_KEYS", "key-one, key-two")
    state = tmp_path / "control.json"
    config = control_config(upstreams, tmp_path, per_api_key=True, state_file=str(state))
    with running(config) as client:
        for key, n in (("key-one", 3), ("key-two", 5)):
            for p in prompts(5, n):
                response = client.post(
                    "/v1/route",
                    json={"model": SHARE, "prompt": p},
                    headers={"authorization": f"Bearer {key}"},
                )
                assert response.status_code == 200
        assert client.get("/v1/status").status_code == 401  # status needs a key like the API
        status = client.get("/v1/status", headers={"authorization": "Bearer key-one"}).json()
    assert sorted(c["decisions"] for c in status["controllers"]) == [3, 5]
    tenants = {c["tenant"] for c in status["controllers"]}
    assert len(tenants) == 2 and None not in tenants
    assert "key-" not in state.read_text() and not any("key-" in t for t in tenants)


def test_restored_controllers_of_an_api_key_no_longer_served_are_dropped(upstreams, tmp_path, monkeypatch):
    # A rotated key's controllers were held for good, and took room under max_controllers: keys
    # rotated often enough, and no new key could have a target.
    state = tmp_path / "control.json"
    for keys, now in (("key-one, key-two", "key-one"), ("key-two, key-three", "key-two")):
        monkeypatch.setenv("LMROUTE_API_KEYS", keys)
        config = control_config(upstreams, tmp_path, per_api_key=True, state_file=str(state))
        with running(config) as client:
            headers = {"authorization": f"Bearer {now}"}
            response = client.post("/v1/route", json={"model": SHARE, "prompt": "x" * 100}, headers=headers)
            assert response.status_code == 200
            controllers = client.get("/v1/status", headers=headers).json()["controllers"]
    assert [(c["tenant"], c["decisions"]) for c in controllers] == [(api_key_tenant("key-two"), 1)]


def test_a_conversation_is_known_by_its_earlier_turns(upstreams):
    config = upstreams.config(control={"conversations": {"enabled": True, "margin": 0.2}})
    first = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * 3000}]
    second = [*first, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "x" * 400}]
    other = [{"role": "system", "content": "be long"}, *second[1:]]  # another system prompt: another chat
    with running(config) as client:
        answers = [
            client.post("/v1/route", json={"model": "router-length-0.5", "messages": m}).json()
            for m in (first, second, other)
        ]
    assert [a["decision"] for a in answers] == ["strong", "strong", "weak"]
    assert [a["conversation"]["outcome"] for a in answers] == ["new", "stayed", "new"]
    assert answers[1]["conversation"]["source"] == "history"


def test_a_tool_round_trip_stays_in_its_conversation(upstreams):
    # An agent sends the tool's result back with no new user message: the same turn. It was taken for
    # a new conversation (its newest user message had no earlier turns), so under route_on
    # conversation the longer text moved it to the strong model mid-turn, within the margin.
    config = upstreams.config(
        route_on="conversation", control={"conversations": {"enabled": True, "margin": 0.2}}
    )
    asked = [{"role": "user", "content": "x" * 400}]  # 400 characters: 0.44, the weak model
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}
    result = {"role": "tool", "tool_call_id": "c1", "content": "y" * 200}  # 602 characters: 0.55
    with running(config) as client:
        answers = [
            client.post("/v1/route", json={"model": "router-length-0.5", "messages": m}).json()
            for m in (asked, [*asked, call, result])
        ]
        conversations = client.get("/v1/status").json()["conversations"]
    assert answers[1]["score"] > 0.5
    assert [a["decision"] for a in answers] == ["weak", "weak"]
    assert [a["conversation"]["outcome"] for a in answers] == ["new", "stayed"]
    assert (conversations["new"], conversations["stayed"]) == (1, 1)
