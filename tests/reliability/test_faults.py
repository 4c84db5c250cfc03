"""Faults: each upstream failure, a router that raises, a failing embedding backend and shutdown have a
defined outcome (retry, fallback, OpenAI-shaped error, error event in the stream) counted in /metrics.

The upstream is ``faulty_upstream.FaultyUpstream``, which breaks HTTP itself (resets, truncated
bodies, cut streams); ``test_upstream_faults.py`` covers the same kinds through a Starlette fake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from _fake_embedder import HashEmbedder
from fake_openai import free_port, serve_in_thread

from lmroute.data.battles import Battle
from lmroute.routers.base import Router
from lmroute.routers.length import LengthRouter
from lmroute.serving.app import create_app
from lmroute.serving.config import build_config

pytestmark = pytest.mark.reliability

MESSAGES = [{"role": "user", "content": "hello"}]
STRONG, WEAK = "router-length-0", "router-length-1"  # the length score of "hello" is in (0, 1)


@pytest.fixture
def strong(upstreams):
    return upstreams.strong


@pytest.fixture
def weak(upstreams):
    return upstreams.weak


def config(upstreams, *, upstream=None, **options):
    tiers = {
        tier: {
            "base_url": url,
            "model": f"{tier}-model",
            "max_retries": 0,
            "timeout": 2.0,
            "retry_backoff": 0.01,
            **(upstream or {}),
        }
        for tier, url in upstreams.urls.items()
    }
    return build_config(overrides={**tiers, "routers": ["length"], **options})


@contextmanager
def serving(cfg, routers=None):
    app = create_app(cfg, routers=routers or {"length": LengthRouter()})
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=15) as client:
        yield client
        assert client.get("/health").status_code == 200  # whatever happened, the server is fine


def chat(client, model=STRONG, **fields):
    return client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, **fields})


def metrics(client) -> dict[str, float]:
    """``name{labels}`` -> value for every lmroute sample."""
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("lmroute_"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def events(response):
    return [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]


# -- upstream faults: what the client gets, with and without fallback -------------------------------

FAULTS = [
    # behaviour, failure kind in lmroute_upstream_errors_total, status without fallback, error code
    ("hang:1.5", "timeout", 504, "upstream_timeout"),
    ("reset", "connection", 502, "upstream_error"),
    ("close", "connection", 502, "upstream_error"),
    ("truncated", "connection", 502, "upstream_error"),
    ("status:500", "5xx", 502, "upstream_error"),
    ("status:503", "5xx", 502, "upstream_error"),
    ("malformed", "malformed", 502, "upstream_error"),
    ("not_completion", "malformed", 502, "upstream_error"),
]


@pytest.mark.parametrize("behaviour, kind, status, code", FAULTS)
def test_upstream_fault_falls_back_to_the_other_model(upstreams, strong, weak, behaviour, kind, status, code):
    strong.set(behaviour)
    with serving(config(upstreams, upstream={"timeout": 0.5})) as client:
        response = chat(client)
        seen = metrics(client)
    assert response.status_code == 200, response.text
    assert response.json()["lmroute"] | {"score": None} == {
        "router": "length",
        "threshold": 0.0,
        "score": None,
        "decision": "strong",
        "routed_model": "strong-model",
        "model": "weak-model",
        "fallback": True,
        "target": None,
        "conversation": None,
    }
    assert response.headers["x-lmroute-fallback"] == "true"
    assert seen[f'lmroute_upstream_errors_total{{kind="{kind}",model="strong-model"}}'] == 1
    reason = f'from_model="strong-model",reason="{kind}",to_model="weak-model"'
    assert seen[f"lmroute_fallbacks_total{{{reason}}}"] == 1
    # Counted under the model that answered (issue 21 item 10: it was the dead one).
    requests = 'endpoint="chat",model="weak-model",router="length",status="200"'
    assert seen[f"lmroute_requests_total{{{requests}}}"] == 1


@pytest.mark.parametrize("behaviour, kind, status, code", FAULTS)
def test_upstream_fault_without_fallback_is_an_openai_error(
    upstreams, strong, weak, behaviour, kind, status, code
):
    strong.set(behaviour)
    with serving(config(upstreams, fallback=False, upstream={"timeout": 0.5})) as client:
        response = chat(client)
        seen = metrics(client)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["type"] == "upstream_error"
    assert "strong-model" in error["message"] and not weak.requests
    requests = f'endpoint="chat",model="strong-model",router="length",status="{status}"'
    assert seen[f"lmroute_requests_total{{{requests}}}"] == 1
    assert seen[f'lmroute_upstream_errors_total{{kind="{kind}",model="strong-model"}}'] == 1


def test_transient_failures_are_retried_with_backoff(upstreams, strong, weak):
    strong.set("reset", "status:502", "hang:1", "ok")
    options = {"max_retries": 3, "retry_backoff": 0.05, "timeout": 0.5}
    cfg = config(upstreams, fallback=False, upstream=options)
    with serving(cfg) as client:
        response = chat(client)
        seen = metrics(client)
    assert response.status_code == 200 and response.json()["lmroute"]["fallback"] is False
    assert len(strong.requests) == 4 and not weak.requests
    gaps = np.diff([t for t, _, _ in strong.requests])
    assert gaps[0] >= 0.035 and gaps[1] >= 0.07  # 0.05 then 0.1, less at most 25% jitter
    assert seen['lmroute_upstream_retries_total{model="strong-model"}'] == 3
    for kind in ("connection", "5xx", "timeout"):
        assert seen[f'lmroute_upstream_errors_total{{kind="{kind}",model="strong-model"}}'] == 1


def test_429_waits_for_retry_after_then_succeeds(upstreams, strong, weak):
    strong.set("status:429:1", "ok")
    cfg = config(upstreams, upstream={"max_retries": 2, "retry_backoff": 0.01})
    with serving(cfg) as client:
        response = chat(client)
        seen = metrics(client)
    assert response.status_code == 200 and response.json()["lmroute"]["model"] == "strong-model"
    (first, *_), (second, *_) = strong.requests
    assert second - first >= 0.95  # Retry-After: 1, not the 0.01 s backoff
    assert seen['lmroute_upstream_retries_total{model="strong-model"}'] == 1
    assert seen['lmroute_upstream_errors_total{kind="4xx",model="strong-model"}'] == 1
    assert not weak.requests  # a rate limit is the client's to handle, not a reason to switch models


def test_429_with_a_long_retry_after_is_passed_on_at_once(upstreams, strong, weak):
    strong.set("status:429:120")
    cfg = config(upstreams, upstream={"max_retries": 2, "retry_backoff": 0.01})
    with serving(cfg) as client:
        start = time.monotonic()
        response = chat(client)
        elapsed = time.monotonic() - start
        seen = metrics(client)
    assert response.status_code == 429 and elapsed < 5
    assert response.headers["retry-after"] == "120"
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert len(strong.requests) == 1 and not weak.requests
    assert 'lmroute_upstream_retries_total{model="strong-model"}' not in seen
    requests = 'endpoint="chat",model="strong-model",router="length",status="429"'
    assert seen[f"lmroute_requests_total{{{requests}}}"] == 1


def test_429_with_an_endless_retry_after_is_a_429_not_a_500(upstreams, strong, weak):
    # float() reads 400 digits as infinity, which no Retry-After header can carry.
    strong.set("status:429:" + "9" * 400)
    with serving(config(upstreams, upstream={"max_retries": 2, "retry_backoff": 0.01})) as client:
        response = chat(client)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert "retry-after" not in response.headers and len(strong.requests) == 3


def test_429_without_retry_after_uses_backoff_and_ends_as_429(upstreams, strong, weak):
    strong.set("status:429")
    with serving(config(upstreams, upstream={"max_retries": 2, "retry_backoff": 0.01})) as client:
        response = chat(client)
    assert response.status_code == 429 and "retry-after" not in response.headers
    assert len(strong.requests) == 3


def test_both_models_failing_is_one_error_naming_both(upstreams, strong, weak):
    strong.set("status:500")
    weak.set("reset")
    with serving(config(upstreams)) as client:
        response = chat(client)
        seen = metrics(client)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "strong-model" in message and "fallback to model weak-model failed too" in message
    assert seen['lmroute_upstream_errors_total{kind="connection",model="weak-model"}'] == 1


@pytest.mark.parametrize(
    "behaviour, code, message",
    [
        ("stream_cut", "upstream_error", "broke off the stream"),
        ("stream_partial", "upstream_error", "strong-model"),
        ("stream_error", "upstream_error", "failed mid-stream: the model crashed"),
    ],
)
def test_a_stream_cut_midway_ends_with_an_error_event_and_done(
    upstreams, strong, weak, behaviour, code, message
):
    strong.set(behaviour)
    with serving(config(upstreams)) as client:
        response = chat(client, stream=True)
        seen = metrics(client)
    assert response.status_code == 200
    got = events(response)
    assert got[-1] == "[DONE]"
    error = json.loads(got[-2])["error"]
    assert error["code"] == code and message in error["message"]
    chunks = [json.loads(e) for e in got[:-2]]
    assert chunks and all("choices" in c for c in chunks)
    assert chunks[0]["lmroute"]["model"] == "strong-model"
    assert not weak.requests  # a stream that has begun is never re-sent to the other model
    assert sum(v for k, v in seen.items() if k.startswith("lmroute_upstream_errors_total")) == 1


def test_a_stream_that_ends_without_any_event_falls_back_or_is_a_502(upstreams, strong, weak):
    # Not a bare [DONE], which reads as an empty answer; nothing was relayed, so the other model may answer.
    strong.set("stream_empty")
    with serving(config(upstreams)) as client:
        response = chat(client, stream=True)
    got = events(response)
    assert got[-1] == "[DONE]" and json.loads(got[0])["lmroute"]["model"] == "weak-model"
    with serving(config(upstreams, fallback=False)) as client:
        response = chat(client, stream=True)
    assert response.status_code == 502
    assert "ended its stream without sending any event" in response.json()["error"]["message"]


@pytest.mark.parametrize("behaviour", ["malformed", "not_completion"])
def test_a_stream_answered_with_json_falls_back_before_the_first_byte(upstreams, strong, weak, behaviour):
    # An upstream that ignores "stream" answers 200 with JSON: it must not pass for an empty stream.
    strong.set(behaviour)
    with serving(config(upstreams)) as client:
        response = chat(client, stream=True)
    got = events(response)
    assert got[-1] == "[DONE]" and json.loads(got[0])["lmroute"]["fallback"] is True
    assert "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in got[:-1]) == "weak says hi"
    with serving(config(upstreams, fallback=False)) as client:
        response = chat(client, stream=True)
    assert response.status_code == 502
    assert "answered a stream request with JSON" in response.json()["error"]["message"]


def test_a_stream_whose_upstream_is_down_falls_back_before_the_first_byte(upstreams, strong, weak):
    strong.set("reset")
    with serving(config(upstreams)) as client:
        response = chat(client, stream=True)
    got = events(response)
    assert got[-1] == "[DONE]" and json.loads(got[0])["lmroute"]["fallback"] is True
    assert "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in got[:-1]) == "weak says hi"


# -- a router that raises, an embedding backend that fails ----------------------------------------


class BrokenRouter(Router):
    """Scores until ``broken`` is set, then raises like a router with a bug."""

    name = "broken"

    def __init__(self):
        super().__init__()
        self.broken = False

    def _score(self, prompts):
        if self.broken:
            raise RuntimeError("index 7 is out of bounds")
        return np.full(len(prompts), 0.5)


@pytest.mark.parametrize("policy, answered_by", [("strong", "strong-model"), ("weak", "weak-model")])
def test_a_router_that_raises_sends_requests_to_the_configured_model(upstreams, strong, policy, answered_by):
    router = BrokenRouter()
    cfg = config(upstreams, routers=["broken"], on_router_error=policy)
    with serving(cfg, routers={"broken": router}) as client:
        router.broken = True
        response = chat(client, "router-broken-0.5")
        stream = chat(client, "router-broken-0.5", stream=True)
        route = client.post("/v1/route", json={"model": "router-broken-0.5", "prompt": "x"})
        router.broken = False
        healed = chat(client, "router-broken-0.5")
        seen = metrics(client)
    assert response.status_code == 200
    info = response.json()["lmroute"]
    assert info["score"] is None and info["decision"] == policy and info["model"] == answered_by
    assert "x-lmroute-score" not in response.headers and response.headers["x-lmroute-router"] == "broken"
    assert events(stream)[-1] == "[DONE]" and json.loads(events(stream)[0])["lmroute"]["score"] is None
    # /v1/route exists to give the score: it says the router failed, without the exception's text.
    assert route.status_code == 503
    assert route.json()["error"]["code"] == "router_error" and "out of bounds" not in route.text
    assert healed.json()["lmroute"]["score"] == 0.5
    assert seen['lmroute_router_errors_total{router="broken"}'] == 3
    assert seen['lmroute_requests_total{endpoint="route",model="none",router="none",status="503"}'] == 1


def test_on_router_error_error_answers_503(upstreams, strong, weak):
    router = BrokenRouter()
    cfg = config(upstreams, routers=["broken"], on_router_error="error")
    with serving(cfg, routers={"broken": router}) as client:
        router.broken = True
        response = chat(client, "router-broken-0.5")
        by_name = chat(client, "weak-model")  # no router involved: unaffected
        seen = metrics(client)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "router_error"
    assert "router 'broken' failed" in error["message"]
    assert by_name.status_code == 200 and not strong.requests
    assert seen['lmroute_requests_total{endpoint="chat",model="none",router="none",status="503"}'] == 1


@pytest.fixture(scope="module")
def mf_router():
    from lmroute.routers.mf import MFRouter

    battles = [
        Battle(f"{'prove the integral' if i % 2 else 'tell a joke'} {i}", a, b, "model_a")
        for i in range(40)
        for a, b in [("strong-model", "weak-model") if i % 2 else ("weak-model", "strong-model")]
    ]
    return MFRouter(
        embedder=HashEmbedder(32), dim=8, epochs=2, strong_model="strong-model", weak_model="weak-model"
    ).fit(battles)


def test_an_embedding_backend_that_is_down_falls_back(upstreams, strong, weak, mf_router, cache_dir):
    from lmroute.embeddings.openai import OpenAIEmbedder

    working = mf_router._embedder
    # The mf router's prompts embedded by an OpenAI-compatible endpoint that nothing serves.
    down = OpenAIEmbedder(
        "text-embedding-3-small",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key_env="LMROUTE_TEST_NO_KEY",
        dim=32,
        max_retries=0,
        timeout=1.0,
    )
    os.environ["LMROUTE_TEST_NO_KEY"] = "unused"
    try:
        with serving(config(upstreams, routers=["mf"]), routers={"mf": mf_router}) as client:
            mf_router._embedder = down
            response = chat(client, "router-mf-0.5")
            mf_router._embedder = working
            recovered = chat(client, "router-mf-0.5")
            seen = metrics(client)
    finally:
        mf_router._embedder = working
        del os.environ["LMROUTE_TEST_NO_KEY"]
    assert response.status_code == 200
    assert response.json()["lmroute"]["score"] is None and response.json()["model"] == "strong-model"
    assert isinstance(recovered.json()["lmroute"]["score"], float)
    assert seen['lmroute_router_errors_total{router="mf"}'] == 1


# -- graceful shutdown ---------------------------------------------------------------------------


def test_shutdown_finishes_in_flight_requests_and_refuses_new_ones(upstreams, strong, tmp_path):
    strong.set("hang:1.5")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "lmroute.cli",
        "serve",
        "--routers",
        "length",
        "--port",
        str(port),
        "--strong-base-url",
        upstreams.urls["strong"],
        "--strong-model",
        "strong-model",
        "--weak-base-url",
        upstreams.urls["weak"],
        "--weak-model",
        "weak-model",
        "--log-level",
        "warning",
    ]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        argv, env={**os.environ, "LMROUTE_API_KEYS": ""}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "lmroute serve did not start"
                time.sleep(0.1)
        results = {}

        def call(name, **fields):
            with httpx.Client(base_url=url, timeout=10) as client:
                results[name] = chat(client, **fields)

        threads = [
            threading.Thread(target=call, args=("plain",)),
            threading.Thread(target=call, args=("stream",), kwargs={"stream": True}),
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(strong.requests) < 2:  # both are with the upstream now
            assert time.monotonic() < deadline, "the requests never reached the upstream"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=2)
        for thread in threads:
            thread.join(15)
        # uvicorn re-raises the signal once it has shut down, as a process stopped by SIGTERM should.
        assert process.wait(15) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert results["plain"].status_code == 200
    assert results["plain"].json()["choices"][0]["message"]["content"] == "strong says hi"
    assert results["stream"].status_code == 200 and events(results["stream"])[-1] == "[DONE]"


def test_retry_after_forms():
    import email.utils

    from lmroute.upstream.client import _retry_after

    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after": "0.5"}) == 0.5
    assert _retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= _retry_after({"retry-after": in_ten}) <= 10
    assert _retry_after({"retry-after": email.utils.formatdate(0, usegmt=True)}) == 0.0
    for junk in ("soon", "", "-3", "1e99x", "9" * 400):
        assert _retry_after({"retry-after": junk}) is None
    for junk in ("inf", "nan", "1e400"):
        assert _retry_after({"retry-after-ms": junk}) is None
    assert _retry_after({}) is None


def test_served_embedding_routers_embed_without_the_disk_cache(mf_router, tmp_path):
    from lmroute.embeddings.cache import CachedEmbedder
    from lmroute.serving.loading import load_routers

    directory = mf_router.save(tmp_path / "mf")
    manifest = json.loads((directory / "config.json").read_text())
    manifest["config"]["embedder"] = "minilm"  # a real embedder name; nothing is embedded here
    (directory / "config.json").write_text(json.dumps(manifest))
    served = load_routers([f"mine={directory}"])["mine"]
    assert served.embedder.name == "minilm" and not isinstance(served.embedder, CachedEmbedder)
