"""Serving N priced models: config, the lambda and quality modes, the lmroute object, fallback in the
policy's order, per-model request and spend counters, and the Controller; stub upstreams on loopback."""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
from _fake_embedder import HashEmbedder
from fake_openai import FakeUpstream, free_port, serve_in_thread

from lmroute import ConfigError, Controller
from lmroute.data.battles import Battle
from lmroute.policies import choose_by_lambda
from lmroute.pricing import Price
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter
from lmroute.serving.app import create_app, worker_config_json
from lmroute.serving.config import ServeConfig, build_config
from lmroute.serving.control import request_tokens
from lmroute.serving.fleet import FleetDecision, request_spend
from lmroute.serving.protocol import ChatMessage

# serving name -> (vocabulary name, input and output USD per 1M tokens); "alpha" is the best model
PRICED = {"frontier": ("alpha", 5.0, 15.0), "middle": ("beta", 0.5, 1.5), "local": ("gamma", 0.0, 0.0)}
VOCABULARY = ["alpha", "beta", "gamma"]
PROMPT = "hello joke chat w1 7"
MESSAGES = [{"role": "user", "content": PROMPT}]


def _battles(n: int = 600) -> list[Battle]:
    """The earlier model of a pair wins, so alpha > beta > gamma on every prompt."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a, b = (str(m) for m in rng.choice(VOCABULARY, size=2, replace=False))
        winner = "model_a" if VOCABULARY.index(a) < VOCABULARY.index(b) else "model_b"
        out.append(Battle(f"hello joke chat w{rng.integers(40)} {i}", a, b, winner))
    return out


@pytest.fixture(scope="module")
def mf() -> MFRouter:
    fast = {"dim": 16, "epochs": 25, "batch_size": 32, "lr": 1e-2, "noise": 0.02, "ties": "half"}
    router = MFRouter(embedder=HashEmbedder(64), strong_model="alpha", weak_model="gamma", **fast)
    return router.fit(_battles())


@pytest.fixture(scope="module")
def fakes():
    """Three fake upstreams, by serving name, and their base URLs."""
    fakes = {name: FakeUpstream(name) for name in PRICED}
    with ExitStack() as stack:
        urls = {name: stack.enter_context(serve_in_thread(f.app())) + "/v1" for name, f in fakes.items()}
        yield fakes, urls


@pytest.fixture(autouse=True)
def _reset(fakes):
    for fake in fakes[0].values():
        fake.reset()


def models(urls, *, down=()):
    return [
        {
            "name": name,
            "base_url": f"http://127.0.0.1:{free_port()}/v1" if name in down else urls[name],
            "model": f"{name}-upstream",
            "vocabulary": vocabulary,
            "max_retries": 0,
            "timeout": 2.0,
            "price": {"input_per_1m": inp, "output_per_1m": out, "output_tokens": 100},
        }
        for name, (vocabulary, inp, out) in PRICED.items()
    ]


@contextmanager
def running(config, routers):
    with (
        serve_in_thread(create_app(config, routers=routers)) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def client(fakes, mf):
    config = build_config(overrides={"models": models(fakes[1]), "routers": ["mf"]})
    with running(config, {"mf": mf, "length": LengthRouter()}) as c:
        yield c


def chat(client, model, **fields):
    return client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, **fields})


def expected(mf):
    """Predicted qualities and estimated costs (USD per request) of frontier, middle, local."""
    quality = mf.predict_quality([PROMPT], VOCABULARY)[0]
    tokens = max(1.0, len(PROMPT) / 4)
    cost = [(tokens * inp + 100 * out) / 1e6 for _, inp, out in PRICED.values()]
    return quality, np.array(cost)


def test_a_config_of_n_models_names_the_dearest_strong_and_the_cheapest_weak(fakes):
    config = build_config(overrides={"models": models(fakes[1])})
    assert (config.strong.model, config.weak.model) == ("frontier-upstream", "local-upstream")
    assert [m.name for m in config.models] == list(PRICED)
    assert [m.vocabulary for m in config.models] == VOCABULARY
    # Equal prices (models you host, at 0): still two different models, the first strong.
    free = [{**m, "price": {"input_per_1m": 0, "output_per_1m": 0}} for m in models(fakes[1])]
    config = build_config(overrides={"models": free})
    assert (config.strong.model, config.weak.model) == ("frontier-upstream", "middle-upstream")


def test_lambda_zero_takes_the_best_predicted_model_and_reports_every_candidate(client, fakes, mf):
    quality, cost = expected(mf)
    assert quality.argmax() == 0  # alpha is the best: the router learned it
    response = chat(client, "router-mf-lambda-0")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "frontier says hi"
    assert fakes[0]["frontier"].requests[-1]["model"] == "frontier-upstream"
    info = body["lmroute"]
    assert info["router"] == "mf" and info["mode"] == "lambda" and info["value"] == 0.0
    assert info["decision"] == info["routed_model"] == info["model"] == "frontier"
    assert info["fallback"] is False
    assert [c["model"] for c in info["candidates"]] == list(PRICED)
    np.testing.assert_allclose([c["predicted_quality"] for c in info["candidates"]], quality, rtol=1e-9)
    np.testing.assert_allclose([c["estimated_cost_usd"] for c in info["candidates"]], cost, rtol=1e-9)
    assert info["fallback_order"] == ["middle", "local"]  # next best by quality
    assert response.headers["x-lmroute-model"] == "frontier"


def test_a_large_lambda_takes_the_cheapest_model(client, fakes):
    body = chat(client, "router-mf-lambda-1000000").json()
    assert body["lmroute"]["model"] == "local" and body["choices"][0]["message"]["content"] == "local says hi"
    assert not fakes[0]["frontier"].requests


def test_quality_mode_takes_the_cheapest_model_good_enough(client, mf):
    quality, _ = expected(mf)
    # a target between beta's and alpha's predicted quality: beta is the cheapest that reaches it
    tau = round(float(quality[1] + quality[0]) / 2, 6)
    assert chat(client, f"router-mf-quality-{tau}").json()["lmroute"]["model"] == "frontier"
    tau = round(float(quality[2] + quality[1]) / 2, 6)
    assert chat(client, f"router-mf-quality-{tau}").json()["lmroute"]["model"] == "middle"
    assert chat(client, "router-mf-quality-0").json()["lmroute"]["model"] == "local"
    # nothing reaches 1: the best predicted model
    assert chat(client, "router-mf-quality-1").json()["lmroute"]["model"] == "frontier"


def test_the_two_model_interface_keeps_working(client, fakes):
    body = chat(client, "router-mf-0").json()
    assert body["model"] == "frontier-upstream" and body["lmroute"]["decision"] == "strong"
    body = chat(client, "router-mf-1").json()
    assert body["model"] == "local-upstream" and body["lmroute"]["decision"] == "weak"
    # any of the N models by its serving name, called directly
    body = chat(client, "middle").json()
    assert body["choices"][0]["message"]["content"] == "middle says hi"
    assert body["lmroute"]["router"] is None and body["lmroute"]["fallback"] is False


def test_models_named_as_their_upstream_are_listed_once(fakes, mf):
    """A model without ``name:`` is served under its upstream id, the id the dearest (strong) and
    the cheapest (weak) also carry: /v1/models (the console's Send list) names each model once."""
    unnamed = [{k: v for k, v in m.items() if k not in ("name", "vocabulary")} for m in models(fakes[1])]
    for m, vocabulary in zip(unnamed, VOCABULARY, strict=True):
        m["vocabulary"] = vocabulary
    config = build_config(overrides={"models": unnamed, "routers": ["mf"]})
    with running(config, {"mf": mf}) as c:
        listed = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert sorted(listed) == sorted({"router-mf-0.5", *(m["model"] for m in unnamed)})
        message = chat(c, "nope").json()["error"]["message"]
        assert message.count("frontier-upstream") == 1
        assert chat(c, "middle-upstream").json()["choices"][0]["message"]["content"] == "middle says hi"


def test_costs_are_estimated_on_every_message_the_model_reads(client, mf):
    """The router reads the last user turn; the model reads, and is paid for, every message: the
    policy and the candidates' estimates price them all, as the spend counter and controller do."""
    context = [
        {"role": "system", "content": "Answer as a pirate. " * 400},
        {"role": "user", "content": "an earlier question " * 200},
        {"role": "assistant", "content": "an earlier answer " * 200},
    ]
    messages = [*context, *MESSAGES]
    quality, _ = expected(mf)
    tokens = request_tokens([ChatMessage.model_validate(m) for m in messages])
    cost = np.array([(tokens * inp + 100 * out) / 1e6 for _, inp, out in PRICED.values()])
    # at lambda 0.1 the prompt alone is worth frontier's price, the whole request is not
    lam = 0.1
    on_prompt = choose_by_lambda(quality[None], expected(mf)[1][None] * 1e3, lam)[0]
    on_request = choose_by_lambda(quality[None], cost[None] * 1e3, lam)[0]
    assert on_prompt != on_request
    body = client.post(
        "/v1/chat/completions", json={"model": f"router-mf-lambda-{lam}", "messages": messages}
    ).json()
    info = body["lmroute"]
    np.testing.assert_allclose([c["estimated_cost_usd"] for c in info["candidates"]], cost, rtol=1e-9)
    np.testing.assert_allclose([c["predicted_quality"] for c in info["candidates"]], quality, rtol=1e-9)
    assert info["decision"] == list(PRICED)[on_request]


def test_route_shows_the_decision_without_calling_a_model(client, fakes, mf):
    response = client.post("/v1/route", json={"model": "router-mf-lambda-0", "prompt": PROMPT})
    assert response.status_code == 200
    info = response.json()
    assert info["decision"] == "frontier" and len(info["candidates"]) == 3 and "model" not in info
    assert not any(f.requests for f in fakes[0].values())


def test_a_stream_carries_the_n_model_decision_in_its_first_chunk(client):
    response = chat(client, "router-mf-lambda-0", stream=True)
    events = [e for e in response.text.split("\n\n") if e]
    first = json.loads(events[0].removeprefix("data: "))
    assert first["lmroute"]["model"] == "frontier" and len(first["lmroute"]["candidates"]) == 3
    assert events[-1] == "data: [DONE]"


def test_a_failed_model_falls_back_to_the_policys_next_choice(client, fakes):
    fakes[0]["frontier"].mode = "status"
    body = chat(client, "router-mf-lambda-0").json()
    assert body["lmroute"]["model"] == "middle" and body["lmroute"]["routed_model"] == "frontier"
    assert body["lmroute"]["fallback"] is True
    fakes[0]["middle"].mode = "status"
    body = chat(client, "router-mf-lambda-0").json()
    assert body["lmroute"]["model"] == "local"
    fakes[0]["local"].mode = "status"
    response = chat(client, "router-mf-lambda-0")
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "frontier" in message and "middle" in message and "local" in message
    assert "answered 500" in message and "http://" not in message and "127.0.0.1" not in message
    text = client.get("/metrics").text
    assert (
        'lmroute_fallbacks_total{from_model="frontier-upstream",reason="5xx",to_model="middle-upstream"}'
        in text
    )


def test_a_stream_that_fails_before_its_first_chunk_goes_to_the_policys_next_choice(fakes, mf):
    def streamed(client) -> list:
        text = chat(client, "router-mf-lambda-0", stream=True).text
        return [e.removeprefix("data: ") for e in text.split("\n\n") if e]

    # No circuit breaker: the model that failed is tried again by the next request.
    config = build_config(overrides={"models": models(fakes[1]), "routers": ["mf"], "circuit_breaker": 0})
    with running(config, {"mf": mf}) as client:
        fakes[0]["frontier"].mode, fakes[0]["frontier"].fault_at = "error_event", 0
        events = streamed(client)
        first = json.loads(events[0])["lmroute"]
        assert first["model"] == "middle" and first["fallback"] is True and events[-1] == "[DONE]"
        # Once a chunk went out, a failure ends the stream with an error event, never another model.
        fakes[0]["frontier"].fault_at = 1
        events = streamed(client)
    assert json.loads(events[0])["lmroute"]["model"] == "frontier" and "error" in json.loads(events[-2])
    assert len(fakes[0]["frontier"].requests) == 2 and len(fakes[0]["middle"].requests) == 1


def test_metrics_count_requests_and_estimated_spend_per_model(fakes, mf):
    config = build_config(overrides={"models": models(fakes[1]), "routers": ["mf"]})
    with running(config, {"mf": mf}) as c:
        for _ in range(2):
            chat(c, "router-mf-lambda-0")
        chat(c, "router-mf-lambda-1000000")
        chat(c, "router-mf-1")  # two-model routing counts under the serving name too
        text = c.get("/metrics").text
    assert 'lmroute_model_requests_total{model="frontier"} 2.0' in text
    assert 'lmroute_model_requests_total{model="local"} 2.0' in text
    # the fake answers report 3 prompt and 3 completion tokens: 2 * (3 * 5 + 3 * 15) / 1e6
    spend = float(text.split('lmroute_estimated_spend_usd_total{model="frontier"} ')[1].split()[0])
    assert spend == pytest.approx(2 * (3 * 5.0 + 3 * 15.0) / 1e6)
    assert 'lmroute_estimated_spend_usd_total{model="local"} 0.0' in text
    assert 'lmroute_requests_total{endpoint="chat",model="frontier",router="mf",status="200"} 2.0' in text


def test_each_worker_counts_two_model_routing_under_the_serving_name_too(fakes, mf):
    # Every process of --workers (and every Ray replica) reads the config back from JSON: the
    # strong and weak models taken from models: came back as bare upstreams, so a worker counted
    # router-mf-<threshold>'s answers under the upstream id, one model's spend in two series.
    config = build_config(overrides={"models": models(fakes[1]), "routers": ["mf"]})
    again = ServeConfig.model_validate_json(worker_config_json(config))
    with running(again, {"mf": mf}) as c:
        chat(c, "router-mf-0")
        chat(c, "router-mf-1")
        text = c.get("/metrics").text
    assert 'lmroute_model_requests_total{model="frontier"} 1.0' in text
    assert 'lmroute_model_requests_total{model="local"} 1.0' in text
    assert 'lmroute_model_requests_total{model="frontier-upstream"}' not in text
    assert (again.strong, again.weak) == (config.strong, config.weak)


def test_spend_without_usage_is_estimated_from_the_prompt():
    price = Price(input_per_1m=4.0, output_per_1m=8.0, output_tokens=50)
    payload = {"messages": [{"role": "user", "content": "x" * 400}]}
    assert request_spend(price, payload, None) == pytest.approx((100 * 4.0 + 50 * 8.0) / 1e6)
    usage = {"usage": {"prompt_tokens": 10, "completion_tokens": 20}}
    assert request_spend(price, payload, usage) == pytest.approx((10 * 4.0 + 20 * 8.0) / 1e6)
    # Usage no float can hold (a faulty upstream) is estimated instead of ending the answer in a 500.
    absurd = {"usage": {"prompt_tokens": 10**400, "completion_tokens": 20}}
    assert request_spend(price, payload, absurd) == request_spend(price, payload, None)
    # Content parts (OpenAI's multi-part messages) are read too: their text parts are paid for.
    parts = [{"type": "text", "text": "x" * 200}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    payload = {"messages": [{"role": "user", "content": parts}, {"role": "user", "content": "x" * 200}]}
    assert request_spend(price, payload, None) == pytest.approx((100 * 4.0 + 50 * 8.0) / 1e6)


def test_modes_need_a_router_with_a_vocabulary_and_a_config_with_models(client, fakes, mf):
    response = chat(client, "router-length-lambda-0.1")
    assert response.status_code == 400 and "mf or sw_ranking" in response.json()["error"]["message"]
    strong, _, weak = (
        {k: v for k, v in m.items() if k not in ("name", "vocabulary")} for m in models(fakes[1])
    )
    two = build_config(overrides={"strong": strong, "weak": weak})
    assert not two.models
    with running(two, {"mf": mf}) as c:
        response = chat(c, "router-mf-lambda-0.1")
    assert response.status_code == 400 and "models:" in response.json()["error"]["message"]


def test_retrieve_a_model_of_n_by_id(client):
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    middle = {"id": "middle", "object": "model", "created": 0, "owned_by": "upstream:models"}
    assert client.get("/v1/models/middle").json() == listed["middle"] == middle
    assert client.get("/v1/models/router-mf-lambda-0.02").json()["owned_by"] == "lmroute"
    response = client.get("/v1/models/router-length-lambda-0.1")  # length predicts no qualities
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_a_router_that_fails_sends_the_request_by_price(fakes, mf):
    class Broken(MFRouter):
        def _predict_quality(self, prompts, models):
            raise RuntimeError("embedding backend down")

    broken = Broken.__new__(Broken)
    broken.__dict__.update(mf.__dict__)
    config = build_config(overrides={"models": models(fakes[1]), "on_router_error": "weak"})
    with running(config, {"mf": broken}) as c:
        body = chat(c, "router-mf-lambda-0").json()
        assert body["lmroute"]["model"] == "local"
        assert all(cand["predicted_quality"] is None for cand in body["lmroute"]["candidates"])
        response = c.post("/v1/route", json={"model": "router-mf-lambda-0", "prompt": PROMPT})
        assert response.status_code == 503


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vocabulary": "delta"}, "lmroute onboard"),
        ({"price": None}, "has no price"),
        ({"price": {"input_per_1m": -1.0, "output_per_1m": 1.0}}, "greater than or equal to 0"),
        ({"price": {"input_per_1m": 1.0}}, "output_per_1m"),
        ({"name": "frontier"}, "used twice: frontier"),
    ],
)
def test_bad_model_configs_are_one_clear_error(fakes, mf, change, message):
    entries = models(fakes[1])
    entries[2] = {**entries[2], **change}
    with pytest.raises(ConfigError, match=message) as caught:
        config = build_config(overrides={"models": entries})
        Controller.from_config(config, routers={"mf": mf})
    if message == "lmroute onboard":  # the unknown model: the vocabulary is listed
        assert "alpha" in str(caught.value) and "delta" in str(caught.value)


def test_one_model_is_not_a_fleet(fakes):
    with pytest.raises(ConfigError, match="at least two models"):
        build_config(overrides={"models": models(fakes[1])[:1]})
    with pytest.raises(ConfigError, match="models: a list of models"):
        build_config(overrides={"models": "gpt-4o"})


def test_controller_routes_among_n_models(fakes, mf):
    with Controller(models=models(fakes[1]), routers={"mf": mf}) as controller:
        answer = controller.chat.completions.create(model="router-mf-lambda-0", messages=MESSAGES)
        assert answer.lmroute["model"] == "frontier" and len(answer.lmroute["candidates"]) == 3
        decision = controller.route(PROMPT, model="router-mf-lambda-1000000")
        assert isinstance(decision, FleetDecision) and decision.model == "local"
        assert controller.chat.completions.create(model="router-mf-1", messages=MESSAGES).model == (
            "local-upstream"
        )
        chunks = list(
            controller.chat.completions.create(model="router-mf-lambda-0", messages=MESSAGES, stream=True)
        )
        assert chunks[0].model_extra["lmroute"]["model"] == "frontier"
    with pytest.raises(ConfigError, match="strong and the weak model, or models="):
        Controller(strong="gpt-4o", routers={"mf": mf})


def test_the_example_config_serves_three_models_with_the_shipped_mf(monkeypatch):
    from pathlib import Path

    import lmroute
    from lmroute.serving.fleet import check_vocabulary

    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    config = build_config(Path(__file__).parents[2] / "examples" / "serve-models.yaml")
    assert [m.name for m in config.models] == ["gpt-4o", "gpt-4o-mini", "llama-8b"]
    assert (config.strong.model, config.weak.model) == ("gpt-4o-2024-08-06", "llama-3.1-8b-instruct")
    check_vocabulary(config.models, {"mf": lmroute.load_router("mf")})  # every model is in its vocabulary


def test_a_router_shrunk_on_other_models_is_refused_at_startup(monkeypatch):
    from pathlib import Path

    import lmroute
    from lmroute.serving.fleet import check_vocabulary
    from lmroute.shrinkage import QualityShrinkage

    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    config = build_config(Path(__file__).parents[2] / "examples" / "serve-models.yaml")
    fitted = [m.vocabulary for m in config.models]
    shrinkage = QualityShrinkage(tuple(fitted[:2]), np.array([0.8, 0.6]), np.array([0.5, 0.5]), 0.5)
    mf = lmroute.load_router("mf").with_shrinkage(shrinkage)
    with pytest.raises(ConfigError, match=f"router 'mf' cannot route.*{fitted[2]}"):
        check_vocabulary(config.models, {"mf": mf})
    everything = QualityShrinkage(tuple(fitted), np.full(3, 0.7), np.full(3, 0.5), 0.5)
    check_vocabulary(config.models, {"mf": mf.with_shrinkage(everything)})


def test_a_shrunk_router_routes_on_the_benchmarks_scale(fakes, mf):
    from lmroute.shrinkage import QualityShrinkage

    # measured on "a benchmark": beta is the best there, whatever the router learned (alpha 0:
    # every prompt gets each model's mean)
    means = np.array([0.6, 0.9, 0.3])
    shrunk = mf.with_shrinkage(QualityShrinkage(tuple(VOCABULARY), means, np.full(3, 0.5), 0.0))
    assert mf.predict_quality([PROMPT], VOCABULARY)[0].argmax() == 0  # the router alone picks alpha
    config = build_config(overrides={"models": models(fakes[1]), "routers": ["mf"]})
    with running(config, {"mf": shrunk}) as c:
        info = chat(c, "router-mf-lambda-0").json()["lmroute"]
    assert info["model"] == "middle"
    np.testing.assert_allclose([cand["predicted_quality"] for cand in info["candidates"]], means)
    with Controller(models=models(fakes[1]), routers={"mf": shrunk}) as controller:
        assert controller.route(PROMPT, model="router-mf-quality-0.8").model == "middle"


def test_chat_shows_the_n_model_choice_and_its_predicted_quality(fakes, mf):
    import io

    from lmroute.serving.chat import run_chat

    quality, _ = expected(mf)
    out = io.StringIO()
    with Controller(models=models(fakes[1]), routers={"mf": mf}) as controller:
        lines = iter([PROMPT, "/quit"])
        assert run_chat(controller, model="router-mf-lambda-0", read=lambda _: next(lines), out=out) == 0
    assert "frontier says hi" in out.getvalue()
    assert f"[mf lambda 0: model frontier, predicted quality {quality[0]:.4f}]" in out.getvalue()

    class Broken(MFRouter):
        def _predict_quality(self, prompts, models):
            raise RuntimeError("embedding backend down")

    broken = Broken.__new__(Broken)
    broken.__dict__.update(mf.__dict__)
    out = io.StringIO()
    with Controller(models=models(fakes[1]), routers={"mf": broken}) as controller:
        lines = iter([PROMPT, "/quit"])
        run_chat(controller, model="router-mf-quality-0.5", read=lambda _: next(lines), out=out)
    assert "[router mf failed: model frontier]" in out.getvalue()


def test_two_served_models_of_one_vocabulary_model_are_both_predicted(fakes, mf):
    entries = models(fakes[1])
    entries[2] = {**entries[2], "vocabulary": "beta"}  # "local" is "middle" hosted at no cost
    with Controller(models=entries, routers={"mf": mf}) as controller:
        decision = controller.route(PROMPT, model="router-mf-lambda-1")
    quality = {c.name: c.quality for c in decision.candidates}
    assert quality["local"] is not None and quality["local"] == quality["middle"]
    assert decision.model == "local"  # as good as middle, and free


def test_a_model_or_router_named_beyond_latin_1_is_answered_and_named_in_the_headers(fakes, mf):
    # The x-lmroute-* headers took the names as they were: Starlette cannot encode "千问" in a header,
    # so every request routed to such a model was a 500 once the model had answered (and billed).
    named = [{**m, "name": f"千问-{m['name']}"} for m in models(fakes[1])]
    config = build_config(overrides={"models": named, "routers": ["mf"]})
    with running(config, {"模型": mf}) as client:
        for stream in (False, True):
            response = chat(client, "router-模型-lambda-0", stream=stream)
            assert response.status_code == 200, response.text
            first = response.text.removeprefix("data: ").partition("\n")[0]
            assert json.loads(first)["lmroute"]["model"] == "千问-frontier"
            assert unquote(response.headers["x-lmroute-model"]) == "千问-frontier"
            assert response.headers["x-lmroute-model"] == "%E5%8D%83%E9%97%AE-frontier"
            assert unquote(response.headers["x-lmroute-router"]) == "模型"
        response = chat(client, "千问-local")
        assert response.status_code == 200 and response.json()["lmroute"]["model"] == "千问-local"
        assert unquote(response.headers["x-lmroute-decision"]) == "千问-local"
