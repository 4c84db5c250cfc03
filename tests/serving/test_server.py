"""The HTTP server against fake upstreams: routing, pass-through, streaming, errors, auth, metrics."""

import asyncio
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
import openai
import pytest
import yaml
from fake_openai import free_port, serve_in_thread

from lmroute import UnknownRouterError
from lmroute.cli import main
from lmroute.routers.base import Router
from lmroute.routers.length import LengthRouter
from lmroute.routers.random import RandomRouter
from lmroute.serving.app import create_app
from lmroute.serving.config import build_config

MESSAGES = [{"role": "user", "content": "hello"}]
ROUTERS = {"length": LengthRouter(), "random": RandomRouter()}


@contextmanager
def running(config, routers=ROUTERS):
    with (
        serve_in_thread(create_app(config, routers=routers)) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def client(upstreams):
    with running(upstreams.config(thresholds={"length": [0.2, 0.7]})) as c:
        yield c


def chat(client, model="router-length-0", **fields):
    return client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, **fields})


def test_routes_by_threshold_and_passes_fields_through(client, upstreams):
    fields = {
        "temperature": 0.2,
        "max_tokens": 7,
        "top_k": 3,
        "user": "u1",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
    }
    response = chat(client, "router-length-0", **fields)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "big-model" and body["choices"][0]["message"]["content"] == "strong says hi"
    score = float(LengthRouter().score(["hello"])[0])
    assert body["lmroute"] == {
        "router": "length",
        "threshold": 0.0,
        "score": pytest.approx(score),
        "decision": "strong",
        "routed_model": "big-model",
        "model": "big-model",
        "fallback": False,
        "target": None,
        "conversation": None,
    }
    assert response.headers["x-lmroute-model"] == "big-model"
    assert response.headers["x-lmroute-decision"] == "strong"
    sent = upstreams.strong.requests[-1]
    assert sent == {**fields, "model": "big-model", "messages": MESSAGES, "stream": False}
    assert upstreams.strong.auth[-1] is None  # no key configured: none sent, never $OPENAI_API_KEY

    response = chat(client, "router-length-1")
    assert response.json()["model"] == "small-model" and not upstreams.strong.requests[1:]
    # An upstream model's own name calls it directly.
    assert chat(client, "small-model").json()["lmroute"]["router"] is None


def test_stream_relays_chunks_and_ends_with_done(client, upstreams):
    response = chat(client, "router-length-0", stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "strong says hi"
    assert chunks[0]["lmroute"]["decision"] == "strong" and "lmroute" not in chunks[1]
    assert upstreams.strong.requests[-1]["stream"] is True
    assert upstreams.strong.requests[-1]["stream_options"] == {"include_usage": True}


def test_stream_null_is_the_default_no_stream(client, upstreams):
    # OpenAI's API takes "stream": null as its default (some clients send every field, null if unset).
    response = chat(client, "router-length-0", stream=None)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "strong says hi"
    assert upstreams.strong.requests[-1]["stream"] is False


def test_official_openai_client_works_against_the_server(client):
    sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused", max_retries=0)
    response = sdk.chat.completions.create(model="router-length-1", messages=MESSAGES)
    assert response.model == "small-model" and response.lmroute["decision"] == "weak"
    chunks = list(sdk.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=True))
    assert chunks[0].model_extra["lmroute"]["model"] == "big-model"
    assert "".join(c.choices[0].delta.content for c in chunks) == "strong says hi"
    with pytest.raises(openai.BadRequestError, match="router 'nope' is not served here"):
        sdk.chat.completions.create(model="router-nope-0.5", messages=MESSAGES)
    ids = [m.id for m in sdk.models.list()]
    assert ids == ["router-length-0.2", "router-length-0.7", "router-random-0.5", "big-model", "small-model"]


BIG = json.dumps({"model": "router-length-0.5", "messages": [{"role": "user", "content": "x" * 2_000_000}]})


@pytest.mark.parametrize(
    "body, status, code, message",
    [
        (b'{"model": "router-length-0.5", "messages": [', 400, "invalid_json", "not valid JSON"),
        (b"[1, 2]", 400, "invalid_json", "must be a JSON object"),
        ({"model": "router-length-0.5"}, 400, "invalid_value", "messages: is required"),
        ({"model": "router-length-0.5", "messages": []}, 400, "invalid_value", "at least one message"),
        (
            {
                "model": "router-length-0.5",
                "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}],
            },
            400,
            "invalid_value",
            "'text' is not a string",
        ),
        (
            {"model": "router-length-0.5", "messages": [{"role": "user", "content": [7]}]},
            400,
            "invalid_value",
            "part 0 must be an object",
        ),
        *(
            (
                {"model": "router-length-0.5", "messages": [{"role": "user", "content": [part]}]},
                400,
                "invalid_value",
                'part 0 needs a string "type"',  # not "Input should be a valid string"
            )
            for part in ({"text": "hi"}, {"type": 5, "text": "hi"})
        ),
        (
            {"model": "router-length-0.5", "messages": [{"role": "robot", "content": "hi"}]},
            400,
            "invalid_value",
            "messages.0.role",
        ),
        ({"messages": MESSAGES}, 400, "invalid_value", "model: is required"),
        (
            {"model": "router-nope-0.5", "messages": MESSAGES},
            400,
            "router_not_found",
            "available: length, random",
        ),
        ({"model": "router-length-1.5", "messages": MESSAGES}, 400, "invalid_model", "outside [0, 1]"),
        ({"model": "router-length-abc", "messages": MESSAGES}, 400, "invalid_model", "not a decimal number"),
        ({"model": "gpt4", "messages": MESSAGES}, 400, "invalid_model", "router-<router>-<threshold>"),
        (
            {"model": "router-length-0.5", "messages": MESSAGES, "stream": "yes please"},
            400,
            "invalid_value",
            "stream",
        ),
        *(
            ({"model": "router-length-1", "messages": MESSAGES, "stream": v}, 400, "invalid_value", "stream")
            for v in ("yes", "false", 1)  # what pydantic's lax mode would read as booleans
        ),
        (BIG.encode(), 413, "request_too_large", "limit of 1048576 bytes"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(client, upstreams, body, status, code, message):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert not upstreams.strong.requests and not upstreams.weak.requests
    assert client.get("/health").json()["status"] == "ok"


def test_chunked_upload_over_the_limit_is_refused(upstreams):
    with running(upstreams.config(server={"max_request_bytes": 1000})) as c:
        chunks = iter(
            [
                b'{"model": "router-length-0.5", "messages": [{"role": "user", "content": "',
                b"x" * 2000,
                b'"}]}',
            ]
        )
        response = c.post("/v1/chat/completions", content=chunks)  # no content-length: counted while read
        assert response.status_code == 413
        assert chat(c).status_code == 200


def test_api_keys_are_checked(upstreams, monkeypatch):
    monkeypatch.setenv("LMROUTE_API_KEYS", "key-one, key-two")
    with running(upstreams.config()) as c:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "key-one"}):
            response = c.post(
                "/v1/chat/completions",
                json={"model": "router-length-0", "messages": MESSAGES},
                headers=headers,
            )
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"
            assert "key-one" not in response.text
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/route", json={"model": "router-length-0", "prompt": "x"}).status_code == 401
        ok = {"authorization": "Bearer key-two"}
        assert (
            c.post(
                "/v1/chat/completions", json={"model": "router-length-0", "messages": MESSAGES}, headers=ok
            ).status_code
            == 200
        )
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200
    assert not any("key-" in (a or "") for a in upstreams.strong.auth)


@pytest.mark.parametrize("key", ["", "  "])
@pytest.mark.usefixtures("server_not_started")
def test_an_empty_api_key_is_refused(capsys, key):
    # `--api-key "$KEY"` with KEY unset served with the key "": a request sending
    # "Authorization: Bearer" and no key matched it, and a public host got no warning of no keys.
    url = "http://127.0.0.1:9/v1"
    tiers = ["--strong-base-url", url, "--strong-model", "s", "--weak-base-url", url, "--weak-model", "w"]
    assert main(["serve", *tiers, "--routers", "length", "--api-key", "k", "--api-key", key]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid serving config") and err.count("\n") == 1
    assert "server.api_keys: an API key is empty" in err


def test_route_scores_without_calling_a_model(client, upstreams):
    prompt = "how do I sort a list in Python?"
    response = client.post("/v1/route", json={"model": "router-length-0.01", "prompt": prompt})
    expected = float(LengthRouter().score([prompt])[0])
    assert response.json() == {
        "router": "length",
        "threshold": 0.01,
        "score": pytest.approx(expected),
        "decision": "strong",
        "model": "big-model",
        "target": None,
        "conversation": None,
    }
    response = client.post("/v1/route", json={"router": "length", "threshold": 1, "messages": MESSAGES})
    assert response.json()["decision"] == "weak"
    assert not upstreams.strong.requests and not upstreams.weak.requests
    for body, status in [
        ({"model": "router-length-0.5"}, 400),
        ({"model": "router-length-0.5", "prompt": "a", "messages": MESSAGES}, 400),
        ({"model": "big-model", "prompt": "a"}, 400),
        ({"router": "length", "threshold": 1.5, "prompt": "a"}, 400),
        ({"router": "length", "threshold": "abc", "prompt": "a"}, 400),
        ({"router": "length", "prompt": "a"}, 400),
        ({"model": "router-x-0.5", "prompt": "a"}, 400),
        ({"model": "router-length-0.5", "prompt": "a", "extra": 1}, 400),
    ]:
        response = client.post("/v1/route", json=body)
        assert response.status_code == status, body
        assert "message" in response.json()["error"]


def test_route_with_an_unknown_router_name_says_it_is_not_served(client):
    # router= names a router: "length-share" was answered as if it were a model string
    # ("model None: 'share' is not a mode ..."), though no model was given.
    for router in ("length-share", "length-budget"):
        response = client.post("/v1/route", json={"router": router, "threshold": 0.5, "prompt": "a"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "router_not_found", error
        assert f"router {router!r} is not served here; available: length, random" in error["message"]


def test_route_on_the_whole_conversation(upstreams):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}],
        },
    ]
    body = {"model": "router-length-0.5", "messages": messages}
    with running(upstreams.config()) as c:
        last = c.post("/v1/route", json=body).json()["score"]
    with running(upstreams.config(route_on="conversation")) as c:
        whole = c.post("/v1/route", json=body).json()["score"]
    length = LengthRouter()
    assert last == pytest.approx(length.score(["second"])[0])
    assert whole == pytest.approx(length.score(["be brief\n\nfirst question\n\nan answer\n\nsecond"])[0])


def test_retrieve_one_model_by_id_as_the_openai_sdk_does(upstreams):
    # Upstream ids hold "/", ":" and "."; the SDK percent-encodes the "/" as %2F.
    strong, weak = "meta-llama/Llama-3.1-70B-Instruct", "qwen2.5:7b-instruct"
    tiers = {
        tier: {"base_url": upstreams.urls[tier], "model": name, "max_retries": 0}
        for tier, name in (("strong", strong), ("weak", weak))
    }
    config = build_config(overrides={**tiers, "routers": ["length"], "thresholds": {"length": [0.11593]}})
    with running(config) as c:
        sdk = openai.OpenAI(base_url=str(c.base_url) + "/v1", api_key="unused", max_retries=0)
        listed = {m.id: m for m in sdk.models.list()}
        assert list(listed) == ["router-length-0.11593", "router-random-0.5", strong, weak]
        for name, m in listed.items():
            assert sdk.models.retrieve(name) == m
        assert sdk.models.retrieve(strong).owned_by == "upstream:strong"
        assert c.get(f"/v1/models/{weak}").json()["owned_by"] == "upstream:weak"
        # Served but not listed: another threshold, a target mode.
        assert sdk.models.retrieve("router-length-0.3").owned_by == "lmroute"
        assert sdk.models.retrieve("router-length-share-0.3").id == "router-length-share-0.3"
        for name in ("gpt-5", "router-nope-0.5", "router-length-1.5", "meta-llama/other"):
            response = c.get(f"/v1/models/{name}")
            assert response.status_code == 404, (name, response.text)
            error = response.json()["error"]
            assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        with pytest.raises(openai.NotFoundError, match="'gpt-5' is not served here"):
            sdk.models.retrieve("gpt-5")


def test_unknown_paths_and_methods_are_openai_shaped(client):
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/route/"),
        ("GET", "/v1/models/"),
        ("GET", "/v1/models/small-model/"),
        ("GET", "/v1/status/"),
        ("GET", "/health/"),
        ("GET", "/metrics/"),
        ("GET", "/openapi.json/"),
    ],
)
def test_a_trailing_slash_is_a_404_naming_the_endpoint(client, upstreams, method, path):
    # It was a 307 redirect (an empty answer), which clients often do not follow for a POST.
    body = {"model": "router-length-0", "messages": MESSAGES}
    response = client.request(method, path, json=body if method == "POST" else None)
    assert response.status_code == 404
    meant = path.rstrip("/")
    assert response.json()["error"] == {
        "message": f"no endpoint at {method} {path}: the endpoint is {meant}, without the trailing slash",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    assert not upstreams.strong.requests and not upstreams.weak.requests
    assert client.request(method, meant, json=body if method == "POST" else None).status_code == 200


def test_metrics_count_requests_by_router_and_model(upstreams):
    with running(upstreams.config()) as c:
        for _ in range(3):
            chat(c, "router-length-0")
        chat(c, "router-length-1")
        chat(c, "router-length-1.5")
        c.post("/v1/route", json={"model": "router-random-0.5", "prompt": "x"})
        text = c.get("/metrics").text
    assert (
        'lmroute_requests_total{endpoint="chat",model="big-model",router="length",status="200"} 3.0' in text
    )
    assert (
        'lmroute_requests_total{endpoint="chat",model="small-model",router="length",status="200"} 1.0' in text
    )
    assert 'lmroute_requests_total{endpoint="chat",model="none",router="none",status="400"} 1.0' in text
    assert 'lmroute_routing_latency_seconds_count{router="length"} 4.0' in text
    assert 'lmroute_upstream_latency_seconds_count{model="big-model"} 3.0' in text
    assert 'lmroute_scoring_batch_size_sum{router="random"} 1.0' in text


class _BrokenClient:
    """An upstream SDK client that fails with what no handler expects (a bug, not an upstream fault)."""

    async def post(self, *args, **kwargs):
        raise RuntimeError("a bug")

    async def close(self):
        pass


def test_unexpected_errors_and_refusals_are_counted_with_their_status(upstreams):
    config = upstreams.config(server={"api_keys": ("key",)})
    app = create_app(config, routers=ROUTERS, upstream_factory=lambda upstream: _BrokenClient())
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        key = {"authorization": "Bearer key"}
        # On its own connection: uvicorn closes the connection of a request whose app raised.
        broken = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "router-length-0", "messages": MESSAGES},
            headers=key,
            timeout=10,
        )
        refused = c.post("/v1/route", json={"model": "router-length-0", "prompt": "x"})
        assert c.get("/v1/models", headers=key).status_code == 200 and c.get("/health").status_code == 200
        text = c.get("/metrics").text
    assert broken.status_code == 500
    assert broken.json()["error"] == {
        "message": "internal server error",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert (
        'lmroute_requests_total{endpoint="chat",model="big-model",router="length",status="500"} 1.0' in text
    )
    assert 'lmroute_requests_total{endpoint="route",model="none",router="none",status="401"} 1.0' in text
    counted = [line for line in text.splitlines() if line.startswith("lmroute_requests_total{")]
    assert len(counted) == 2  # only the routing endpoints are counted


class SlowRouter(Router):
    """Records each batch and the thread it ran in; waits in ``_score`` while a gate is set up."""

    name = "slow"

    def __init__(self):
        super().__init__()
        self.batches = []
        self.threads = set()
        self.scoring = threading.Event()  # set once a batch is in _score
        self.gate: threading.Event | None = None  # when set to an Event, each batch waits for it

    def _score(self, prompts):
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(prompts))
        self.scoring.set()
        if self.gate is not None:
            self.gate.wait(30)
        return np.full(len(prompts), 0.5)


def test_concurrent_requests_are_scored_in_batches_off_the_event_loop(upstreams):
    slow = SlowRouter()
    with running(upstreams.config(routers=["slow"]), routers={"slow": slow}) as c:
        slow.batches.clear()  # the warm-up call, in a start-up thread
        slow.threads.clear()
        slow.scoring.clear()
        # Scoring is held until /health has answered: a batch scored on the event loop would hold
        # /health too, and the request would time out (an ordering, not a timing, so load cannot flake it).
        slow.gate = threading.Event()

        async def burst():
            async with httpx.AsyncClient(base_url=c.base_url, timeout=10) as ac:
                route = [
                    ac.post("/v1/route", json={"model": "router-slow-0.5", "prompt": f"p{i}"})
                    for i in range(16)
                ]
                pending = asyncio.gather(*route)
                try:
                    assert await asyncio.to_thread(slow.scoring.wait, 10)
                    health = await ac.get("/health", timeout=5)
                finally:
                    slow.gate.set()
                return await pending, health

        responses, health = asyncio.run(burst())
    assert health.status_code == 200
    assert all(r.status_code == 200 and r.json()["score"] == 0.5 for r in responses)
    assert sum(slow.batches) == 16 and len(slow.batches) <= 3 and max(slow.batches) >= 8
    assert all(name.startswith("lmroute-score") for name in slow.threads)


def test_create_app_loads_nothing_until_started(upstreams):
    app = create_app(upstreams.config(routers=["no-such-router"]))

    async def start():
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(UnknownRouterError, match="no-such-router"):
        asyncio.run(start())


def test_chat_command_through_the_server(client, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello there\n\n/reset\nsecond\n"))
    assert main(["chat", "--url", str(client.base_url), "--model", "router-length-0.01"]) == 0
    out = capsys.readouterr().out
    assert out.count("strong says hi") == 2
    assert "[length score 0.0" in out and ">= 0.01: strong model big-model]" in out
    assert "(new conversation)" in out


def test_lmroute_serve_command(upstreams, tmp_path):
    port = free_port()
    config = {
        "strong": {"base_url": upstreams.urls["strong"], "model": "big-model"},
        "weak": {"base_url": upstreams.urls["weak"], "model": "small-model"},
        "routers": ["random"],
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "LMROUTE_API_KEYS": ""}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmroute.cli",
            "serve",
            "--config",
            str(path),
            "--port",
            str(port),
            "--routers",
            "random",
            "length",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "lmroute serve did not start in 30 s"
                time.sleep(0.1)
        assert health.json() == {"status": "ok", "routers": ["length", "random"]}
        response = httpx.post(
            url + "/v1/chat/completions", json={"model": "router-length-1", "messages": MESSAGES}
        )
        assert response.json()["model"] == "small-model"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--routers", "nope"], "unknown router 'nope'"),
        (["--strong-api-key-env", "LMROUTE_TEST_UNSET_KEY"], "environment variable LMROUTE_TEST_UNSET_KEY"),
        (["--weak-base-url", "ftp://x"], "base_url must start with http"),
    ],
)
def test_serve_config_errors_are_one_line(monkeypatch, capsys, extra, message):
    monkeypatch.delenv("LMROUTE_TEST_UNSET_KEY", raising=False)
    url = "http://127.0.0.1:9/v1"
    argv = [
        "serve",
        "--strong-base-url",
        url,
        "--strong-model",
        "s",
        "--weak-base-url",
        url,
        "--weak-model",
        "w",
        "--routers",
        "length",
        *extra,
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error:") and message in err and err.count("\n") == 1


@pytest.fixture
def server_not_started(monkeypatch):
    """uvicorn.run fails the test: the command must stop at its config check, before serving."""
    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", started)


@pytest.mark.parametrize(
    "control, message",
    [
        # a misspelt router name: /v1/models advertised the default threshold, the check skipped
        ("{}\nthresholds: {lenght: 0.5}", "thresholds: 'lenght' is no served router (the routers: length)"),
        ("{state_file: TMP}", "control.state_file TMP is a folder"),
        # served, and every save failed (only logged)
        (
            "{state_file: TMP/serve.yaml/control.json}",
            "control.state_file: cannot write TMP/serve.yaml/control.json: a file is in the way of "
            "folder TMP/serve.yaml",
        ),
        (
            "{calibration_prompts: TMP/absent.jsonl}",
            "control.calibration_prompts: TMP/absent.jsonl does not exist",
        ),
    ],
)
@pytest.mark.usefixtures("server_not_started")
def test_config_mistakes_are_found_before_the_server_starts(tmp_path, capsys, control, message):
    # In the app's start-up they were a traceback from uvicorn ("Application startup failed"), not one
    # line; and the folder was moved aside as a bad state file.
    url = "http://127.0.0.1:9/v1"
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"routers: [length]\nstrong: {{base_url: '{url}', model: s}}\nweak: {{base_url: '{url}', model: w}}\n"
        f"control: {control.replace('TMP', str(tmp_path))}\n"
    )
    assert main(["serve", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: " + message.replace("TMP", str(tmp_path))) and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serve.yaml"]


@pytest.mark.parametrize(
    "setting, key",
    [
        ("strong: {base_url: 'URL', model: s, timeout: .inf}", "strong.timeout"),
        ("weak: {base_url: 'URL', model: w, retry_backoff: .inf}", "weak.retry_backoff"),
        ("circuit_breaker: .inf", "circuit_breaker"),
        ("circuit_breaker: .nan", "circuit_breaker"),
        ("server: {graceful_shutdown: .inf}", "server.graceful_shutdown"),
        ("control: {conversations: {enabled: true, ttl: .inf}}", "control.conversations.ttl"),
    ],
)
@pytest.mark.usefixtures("server_not_started")
def test_an_infinite_duration_is_a_config_error(tmp_path, capsys, setting, key):
    # .inf was accepted: an infinite retry_backoff slept forever before the retry of a failed
    # request, an infinite circuit_breaker skipped a model for good after one failure.
    url = "http://127.0.0.1:9/v1"
    tiers = {
        "strong": f"strong: {{base_url: '{url}', model: s}}",
        "weak": f"weak: {{base_url: '{url}', model: w}}",
    }
    lines = ["routers: [length]", setting.replace("URL", url)]
    lines += [line for tier, line in tiers.items() if not setting.startswith(tier)]
    config = tmp_path / "serve.yaml"
    config.write_text("\n".join(lines) + "\n")
    assert main(["serve", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid serving config") and err.count("\n") == 1
    assert f"{key}: Input should be a finite number" in err


@pytest.mark.parametrize("how", ["config", "flag"])
@pytest.mark.usefixtures("server_not_started")
def test_an_empty_host_is_refused(tmp_path, capsys, how):
    # uvicorn binds host "" to every interface (0.0.0.0 and ::): an empty value, such as an unset
    # template variable, exposed the server that listens on loopback unless told otherwise.
    url = "http://127.0.0.1:9/v1"
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"routers: [length]\nstrong: {{base_url: '{url}', model: s}}\nweak: {{base_url: '{url}', model: w}}\n"
        + ("server: {host: ''}\n" if how == "config" else "")
    )
    flags = ["--host", ""] if how == "flag" else []
    assert main(["serve", "--config", str(config), "--port", "0", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid serving config") and err.count("\n") == 1
    assert "server.host: no address given" in err


@pytest.mark.parametrize(
    "tiers", ["", "strong: {base_url: 'URL', model: s}\nweak: {base_url: 'URL', model: w}\n"]
)
def test_timeout_and_retry_flags_apply_to_every_model_of_a_models_config(tmp_path, monkeypatch, tiers):
    # `lmroute serve --config models.yaml --timeout 30` failed with "strong.base_url: Field
    # required" (the flags made strong and weak sections of their own); beside strong: and weak:
    # the models: entries kept their own timeout and retries.
    import lmroute.serving.app

    served = []
    monkeypatch.setattr(lmroute.serving.app, "serve", lambda config, **kwargs: served.append(config))
    monkeypatch.delenv("LMROUTE_API_KEYS", raising=False)
    url = "http://127.0.0.1:9/v1"
    price = "price: {input_per_1m: PRICE, output_per_1m: PRICE}"
    models = "".join(
        f"  - {{name: {name}, base_url: '{url}', model: {name}, {price.replace('PRICE', cost)}}}\n"
        for name, cost in (("dear", "2"), ("cheap", "1"))
    )
    config = tmp_path / "serve.yaml"
    config.write_text(f"routers: [length]\n{tiers.replace('URL', url)}models:\n{models}")
    assert main(["serve", "--config", str(config), "--timeout", "7", "--max-retries", "0"]) == 0
    (served,) = served
    for upstream in (served.strong, served.weak, *served.models):
        assert (upstream.timeout, upstream.max_retries) == (7.0, 0), upstream


@pytest.mark.usefixtures("server_not_started")
def test_a_router_that_cannot_score_stops_the_server_in_one_line_before_it_starts(upstreams):
    # An embedding router whose key variable is unset (or whose backend is down) failed the app's
    # warm-up inside uvicorn: a traceback and "Application startup failed", naming no router.
    from lmroute.exceptions import ConfigError
    from lmroute.serving.app import serve

    class KeyNotSet(LengthRouter):
        fast_scoring = False

        def _score(self, prompts):
            raise ConfigError("environment variable EMBED_KEY (api_key_env of the embedder) is not set")

    class Down(LengthRouter):
        def _score(self, prompts):
            raise ConnectionError("embedding backend refused the connection")

    for router, message in [(KeyNotSet(), "EMBED_KEY"), (Down(), "ConnectionError: embedding backend")]:
        with pytest.raises(ConfigError, match=rf"router 'mine' cannot score a prompt: .*{message}"):
            serve(upstreams.config(), routers={"mine": router})
