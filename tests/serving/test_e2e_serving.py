"""End to end: ``lmroute serve`` and the Controller in front of two real llama.cpp servers.

The official ``openai`` client talks to a real ``lmroute serve`` process whose strong and weak
upstreams are the ``llama_servers`` fixture (SmolLM2-135M twice): plain and streamed completions,
pass-through fields, ``/v1/models``, ``/v1/route``, ``/health``, ``/metrics``, the Controller,
``lmroute chat``, and upstream faults (a dead port, a port that never answers).

The ``length`` router scores a prompt of n characters n / (n + 500), so each decision here is known
in advance: PROMPT scores about 0.035, so ``router-length-0.01`` sends it to the strong model and
``router-length-0.9`` to the weak one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from llama_servers import HOST, free_port
from serve_process import get_json, get_text, metric_value, running_serve

pytestmark = [pytest.mark.llm, pytest.mark.network_loopback]

openai = pytest.importorskip("openai")

PROMPT = "Name three fruits."
MESSAGES = [{"role": "user", "content": PROMPT}]
SCORE = len(PROMPT) / (len(PROMPT) + 500)
TO_STRONG, TO_WEAK = "router-length-0.01", "router-length-0.9"
STRONG, WEAK = "smollm2-strong", "smollm2-weak"
# Greedy and short: answers are comparable with the upstream's own, and every call takes well under a second.
GREEDY = {"temperature": 0, "seed": 0, "max_tokens": 16}


def serve_config(llama_servers, **changes) -> dict:
    """A serving config for the two llama servers (routers length and random), with ``changes`` on top."""
    config = {
        "strong": {"base_url": llama_servers.strong.base_url, "model": STRONG, "timeout": 60},
        "weak": {"base_url": llama_servers.weak.base_url, "model": WEAK, "timeout": 60},
        "routers": ["length", "random"],
        "thresholds": {"length": [0.01, 0.9]},
    }
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return config


@contextlib.contextmanager
def lmroute_serve(config: dict, tmp_path, *flags: str):
    """``lmroute serve --config`` (and ``flags``) as a process; yields the running server."""
    path = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "LMROUTE_API_KEYS": ""}
    command = [sys.executable, "-m", "lmroute.cli", "serve", "--config", str(path), "--log-level", "warning"]
    with running_serve(lambda port: [*command, "--port", str(port), *flags], env=env, log_dir=tmp_path) as s:
        yield s


def client_for(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)


def metric(server, name: str, **labels: str) -> float:
    """A sample of the server's /metrics, summed over the labels not given (0 when none was seen yet)."""
    return metric_value(get_text(f"{server.url}/metrics"), name, **labels)


def post_json(server, path: str, body: dict) -> dict:
    response = httpx.post(f"{server.url}{path}", json=body, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()


def requests_count(server, endpoint: str, model: str, status: int, router: str = "length") -> float:
    return metric(
        server, "lmroute_requests_total", endpoint=endpoint, router=router, model=model, status=str(status)
    )


@pytest.fixture(scope="module")
def server(llama_servers, tmp_path_factory):
    """One ``lmroute serve`` process in front of the two llama servers, for the whole module."""
    tmp_path = tmp_path_factory.mktemp("serve")
    with lmroute_serve(serve_config(llama_servers), tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with client_for(server.base_url) as c:
        yield c


@pytest.fixture(scope="module")
def direct(llama_servers):
    """The two llama servers called without lmroute, by tier, to compare answers with."""
    clients = {
        STRONG: client_for(llama_servers.strong.base_url),
        WEAK: client_for(llama_servers.weak.base_url),
    }
    yield clients
    for c in clients.values():
        c.close()


def direct_answer(direct, model: str, **fields) -> str:
    fields = {**GREEDY, **fields}
    return (
        direct[model]
        .chat.completions.create(model=model, messages=MESSAGES, **fields)
        .choices[0]
        .message.content
    )


def test_health_and_models(server, client):
    assert get_json(f"{server.url}/health") == {"status": "ok", "routers": ["length", "random"]}
    listed = [(m.id, m.owned_by) for m in client.models.list()]
    assert listed == [
        ("router-length-0.01", "lmroute"),
        ("router-length-0.9", "lmroute"),
        ("router-random-0.5", "lmroute"),
        (STRONG, "upstream:strong"),
        (WEAK, "upstream:weak"),
    ]


@pytest.mark.parametrize("model, tier, answered_by", [(TO_STRONG, "strong", STRONG), (TO_WEAK, "weak", WEAK)])
def test_plain_completion_is_routed_and_answered_by_that_model(client, direct, model, tier, answered_by):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **GREEDY)
    response = raw.parse()

    assert response.model == answered_by
    assert raw.headers["x-lmroute-model"] == answered_by and raw.headers["x-lmroute-decision"] == tier
    assert raw.headers["x-lmroute-router"] == "length"
    assert float(raw.headers["x-lmroute-score"]) == pytest.approx(SCORE, abs=1e-6)
    assert "x-lmroute-fallback" not in raw.headers
    assert response.lmroute == {
        "router": "length",
        "threshold": float(model.rpartition("-")[2]),
        "score": pytest.approx(SCORE),
        "decision": tier,
        "routed_model": answered_by,
        "model": answered_by,
        "fallback": False,
        "target": None,
        "conversation": None,
    }
    # The very answer that model gives when asked directly, greedy: the request reached it as sent.
    assert response.choices[0].message.content == direct_answer(direct, answered_by)
    assert response.choices[0].message.content.strip()
    assert 1 <= response.usage.completion_tokens <= GREEDY["max_tokens"]


def test_an_upstream_model_asked_by_name_is_called_directly(client, direct):
    response = client.chat.completions.create(model=WEAK, messages=MESSAGES, **GREEDY)
    assert response.model == WEAK
    assert response.lmroute["router"] is None and response.lmroute["decision"] == "weak"
    assert response.choices[0].message.content == direct_answer(direct, WEAK)


def test_pass_through_fields_take_effect(client, direct):
    def ask(**fields):
        fields = {**GREEDY, **fields}
        return client.chat.completions.create(model=TO_WEAK, messages=MESSAGES, **fields).choices[0]

    full = ask().message.content
    words = full.split()
    assert len(words) >= 3, full

    # max_tokens: cut after 2 tokens.
    short = client.chat.completions.create(model=TO_WEAK, messages=MESSAGES, **{**GREEDY, "max_tokens": 2})
    assert short.usage.completion_tokens == 2 and short.choices[0].finish_reason == "length"
    assert full.startswith(short.choices[0].message.content)

    # stop: the greedy answer up to the stop string, which is not included.
    stop = words[2]
    stopped = ask(stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stopped.message.content == full[: full.index(stop)]

    # temperature (with a seed): the upstream samples, exactly as when called directly, and not greedily.
    sampled = ask(temperature=1.5, seed=1).message.content
    assert sampled == direct_answer(direct, WEAK, temperature=1.5, seed=1)
    assert sampled != full


def test_openai_client_streams_incrementally(client, direct):
    fields = {**GREEDY, "max_tokens": 48}
    messages = [{"role": "user", "content": "Write a short poem about the sea."}]
    plain = direct[STRONG].chat.completions.create(model=STRONG, messages=messages, **fields)

    start = time.perf_counter()
    arrivals: list[float] = []
    pieces: list[str] = []
    chunks = []
    for chunk in client.chat.completions.create(model=TO_STRONG, messages=messages, stream=True, **fields):
        chunks.append(chunk)
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            arrivals.append(time.perf_counter())
            pieces.append(delta)
    end = time.perf_counter()

    info = chunks[0].model_extra["lmroute"]
    assert info["decision"] == "strong" and info["model"] == STRONG and info["fallback"] is False
    assert all(chunk.model == STRONG for chunk in chunks)
    assert "".join(pieces) == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        plain.choices[0].finish_reason
    ]
    assert len(pieces) >= 10
    # Relayed as generated: the first piece arrives well before the last one is generated (a buffered
    # relay would deliver them all at the end, within milliseconds of each other).
    assert arrivals[-1] - arrivals[0] > 0.3 * (end - start)


def test_route_scores_without_calling_a_model(server):
    calls_before = {
        m: metric(server, "lmroute_upstream_latency_seconds_count", model=m) for m in (STRONG, WEAK)
    }
    route = post_json(server, "/v1/route", {"model": TO_STRONG, "messages": MESSAGES})
    assert route == {
        "router": "length",
        "threshold": 0.01,
        "score": pytest.approx(SCORE),
        "decision": "strong",
        "model": STRONG,
        "target": None,
        "conversation": None,
    }
    prompt = "x" * 1500  # scores 0.75
    route = post_json(server, "/v1/route", {"router": "length", "threshold": 0.9, "prompt": prompt})
    assert route["score"] == pytest.approx(0.75) and route["decision"] == "weak" and route["model"] == WEAK
    calls_after = {
        m: metric(server, "lmroute_upstream_latency_seconds_count", model=m) for m in (STRONG, WEAK)
    }
    assert calls_after == calls_before


def test_metrics_count_what_happened(server, client):
    counters = {
        "chat strong": lambda: requests_count(server, "chat", STRONG, 200),
        "chat weak": lambda: requests_count(server, "chat", WEAK, 200),
        "route weak": lambda: requests_count(server, "route", WEAK, 200),
        "bad model": lambda: requests_count(server, "chat", "none", 400, router="none"),
        "strong calls": lambda: metric(server, "lmroute_upstream_latency_seconds_count", model=STRONG),
        "weak calls": lambda: metric(server, "lmroute_upstream_latency_seconds_count", model=WEAK),
        "length decisions": lambda: metric(server, "lmroute_routing_latency_seconds_count", router="length"),
    }
    before = {name: read() for name, read in counters.items()}

    client.chat.completions.create(model=TO_STRONG, messages=MESSAGES, **GREEDY)
    for _ in client.chat.completions.create(model=TO_WEAK, messages=MESSAGES, stream=True, **GREEDY):
        pass
    client.chat.completions.create(model=TO_WEAK, messages=MESSAGES, **GREEDY)
    post_json(server, "/v1/route", {"model": TO_WEAK, "prompt": PROMPT})
    with pytest.raises(openai.BadRequestError, match="router-<router>-<threshold>"):
        client.chat.completions.create(model="gpt-5", messages=MESSAGES)

    after = {name: read() for name, read in counters.items()}
    assert {name: after[name] - before[name] for name in counters} == {
        "chat strong": 1,
        "chat weak": 2,
        "route weak": 1,
        "bad model": 1,
        "strong calls": 1,
        "weak calls": 2,
        "length decisions": 4,
    }
    assert metric(server, "lmroute_fallbacks_total") == 0


def test_controller_against_real_upstreams(llama_servers, direct):
    from lmroute import Controller

    with Controller(
        routers=["length"],
        strong={"base_url": llama_servers.strong.base_url, "model": STRONG},
        weak={"base_url": llama_servers.weak.base_url, "model": WEAK},
    ) as controller:
        decision = controller.route(PROMPT, model=TO_WEAK)
        assert (decision.tier, decision.model, decision.score) == ("weak", WEAK, pytest.approx(SCORE))

        response = controller.chat.completions.create(model=TO_STRONG, messages=MESSAGES, **GREEDY)
        assert response.model == STRONG and response.lmroute["decision"] == "strong"
        assert response.choices[0].message.content == direct_answer(direct, STRONG)

        chunks = list(
            controller.chat.completions.create(model=TO_WEAK, messages=MESSAGES, stream=True, **GREEDY)
        )
        assert chunks[0].lmroute["model"] == WEAK and chunks[0].lmroute["score"] == pytest.approx(SCORE)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == direct_answer(direct, WEAK)


def test_chat_command_shows_the_model_and_the_score(server):
    short, long = "Hi there", "What is the capital of France? Please answer very briefly."
    model, threshold = "router-length-0.05", 0.05  # the short question goes weak, the long one strong
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmroute.cli",
            "chat",
            "--url",
            server.url,
            "--model",
            model,
            "--system",
            "Answer in one short sentence.",
        ],
        input=f"{short}\n{long}\n",
        env={**os.environ, "LMROUTE_API_KEY": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"chatting with {model}")
    turns = out.split("you> ")[1:]
    assert len(turns) == 3 and turns[2] == "\n"  # two answers, then end of input
    for turn, question, tier in zip(turns, (short, long), ("weak", "strong"), strict=False):
        score = len(question) / (len(question) + 500)
        sign = ">=" if tier == "strong" else "<"
        answer, _, status = turn.rstrip("\n").rpartition("\n")
        assert status == f"[length score {score:.4f} {sign} {threshold}: {tier} model smollm2-{tier}]", out
        assert answer.strip(), out


# -- upstream faults --------------------------------------------------------------------------------
def dead_url() -> str:
    """An upstream that is down: a port nothing listens on."""
    return f"http://{HOST}:{free_port()}/v1"


@pytest.fixture
def hung_url():
    """An upstream that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield f"http://{HOST}:{sock.getsockname()[1]}/v1"


FAST_FAILURE = {"max_retries": 1, "retry_backoff": 0.05}


@pytest.mark.parametrize(
    "down, model, routed, answered_by", [("strong", TO_STRONG, STRONG, WEAK), ("weak", TO_WEAK, WEAK, STRONG)]
)
def test_fallback_to_the_other_model_when_one_is_down(
    llama_servers, direct, tmp_path, down, model, routed, answered_by
):
    config = serve_config(llama_servers, **{down: {"base_url": dead_url(), **FAST_FAILURE}})
    with lmroute_serve(config, tmp_path) as server, client_for(server.base_url) as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **GREEDY)
        response = raw.parse()
        assert raw.headers["x-lmroute-fallback"] == "true" and raw.headers["x-lmroute-model"] == answered_by
        assert response.model == answered_by
        assert response.lmroute["fallback"] is True and response.lmroute["routed_model"] == routed
        assert response.choices[0].message.content == direct_answer(direct, answered_by)

        # A stream falls back too (before its first byte).
        chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **GREEDY))
        assert chunks[0].model_extra["lmroute"]["fallback"] is True
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == direct_answer(
            direct, answered_by
        )

        # The model asked for by name is not rerouted: the client chose it.
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=routed, messages=MESSAGES, **GREEDY)
        assert info.value.status_code == 502 and f"cannot reach model {routed}" in info.value.message

        fallbacks = metric(
            server, "lmroute_fallbacks_total", from_model=routed, to_model=answered_by, reason="connection"
        )
        assert fallbacks == 2
        # The first request tried the dead model twice (max_retries 1); the circuit breaker then
        # skipped it for the stream and the request by name (their errors say so, at once).
        assert metric(server, "lmroute_upstream_errors_total", model=routed, kind="connection") == 2
        assert metric(server, "lmroute_upstream_retries_total", model=routed) == 1
        assert "circuit_breaker" in info.value.message
        # Requests are counted under the model that answered them.
        assert requests_count(server, "chat", answered_by, 200) == 2
        assert get_json(f"{server.url}/health")["status"] == "ok"


def test_without_fallback_a_down_model_is_a_502_and_a_hung_one_a_504(llama_servers, tmp_path, hung_url):
    dead = dead_url()
    config = serve_config(
        llama_servers,
        strong={"base_url": dead, **FAST_FAILURE},
        weak={"base_url": hung_url, "timeout": 1, "max_retries": 0},
    )
    with lmroute_serve(config, tmp_path, "--no-fallback") as server, client_for(server.base_url) as client:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(model=TO_STRONG, messages=MESSAGES, stream=stream, **GREEDY)
            assert info.value.status_code == 502
            error = info.value.body
            assert error["code"] == "upstream_error" and error["type"] == "upstream_error"
            # The upstream's address is the server's business (its log), not the client's.
            assert error["message"].startswith(f"cannot reach model {STRONG} (ClientConnectorError)")
            assert HOST not in error["message"]
            assert "timeout" not in error["message"].lower()  # refused, not timed out

        start = time.perf_counter()
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=TO_WEAK, messages=MESSAGES, **GREEDY)
        waited = time.perf_counter() - start
        assert info.value.status_code == 504 and info.value.body["code"] == "upstream_timeout"
        assert info.value.body["message"] == f"model {WEAK} did not answer within 1s"
        assert 1 <= waited < 10

        assert requests_count(server, "chat", STRONG, 502) == 2
        assert requests_count(server, "chat", WEAK, 504) == 1
        assert metric(server, "lmroute_upstream_errors_total", model=WEAK, kind="timeout") == 1
        assert metric(server, "lmroute_fallbacks_total") == 0
