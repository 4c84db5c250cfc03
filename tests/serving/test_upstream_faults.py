"""Upstream faults: fallback, timeouts, retries, 4xx/5xx, malformed answers, broken streams, key safety."""

import asyncio
import json
import logging
import time
from contextlib import contextmanager

import httpx
import openai
import pytest
from fake_openai import serve_in_thread

from lmroute.routers.length import LengthRouter
from lmroute.serving.app import create_app
from lmroute.serving.config import build_config

MESSAGES = [{"role": "user", "content": "hello"}]
STRONG, WEAK = "router-length-0", "router-length-1"  # the length score of "hello" is in (0, 1)


@contextmanager
def running(config):
    app = create_app(config, routers={"length": LengthRouter()})
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client
        assert client.get("/health").status_code == 200  # whatever happened, the server is fine


def chat(client, model, **fields):
    return client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, **fields})


def events(response):
    return [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]


def metric_lines(client):
    return [line for line in client.get("/metrics").text.splitlines() if line.startswith("lmroute_")]


@pytest.mark.parametrize(
    "down, model, answered_by", [("strong", STRONG, "small-model"), ("weak", WEAK, "big-model")]
)
def test_fallback_to_the_other_model_when_one_is_down(upstreams, down, model, answered_by):
    with running(upstreams.config(down=(down,))) as client:
        response = chat(client, model)
        assert response.status_code == 200
        info = response.json()["lmroute"]
        assert (
            info["fallback"] is True
            and info["model"] == answered_by
            and response.json()["model"] == answered_by
        )
        assert response.headers["x-lmroute-fallback"] == "true"
        routed = "big-model" if down == "strong" else "small-model"
        assert info["routed_model"] == routed
        stream = chat(client, model, stream=True)
        assert events(stream)[-1] == "[DONE]" and json.loads(events(stream)[0])["lmroute"]["fallback"] is True
        lines = metric_lines(client)
    fallback = (
        f'lmroute_fallbacks_total{{from_model="{routed}",reason="connection",to_model="{answered_by}"}} 2.0'
    )
    assert fallback in lines
    # Only the first request tried the dead model: the circuit breaker skipped it for the second.
    assert f'lmroute_upstream_errors_total{{kind="connection",model="{routed}"}} 1.0' in lines
    # Both requests are counted under the model that answered them (issue 21 item 10).
    answered = (
        f'lmroute_requests_total{{endpoint="chat",model="{answered_by}",router="length",status="200"}} 2.0'
    )
    assert answered in lines


def test_without_the_circuit_breaker_every_request_tries_the_dead_model(upstreams):
    with running(upstreams.config(down=("strong",), circuit_breaker=0)) as client:
        assert chat(client, STRONG).status_code == 200
        assert chat(client, STRONG).status_code == 200
        lines = metric_lines(client)
    assert 'lmroute_upstream_errors_total{kind="connection",model="big-model"} 2.0' in lines


def test_without_fallback_a_down_model_is_a_502(upstreams):
    with running(upstreams.config(down=("strong",), fallback=False)) as client:
        response = chat(client, STRONG)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "upstream_error" and error["code"] == "upstream_error"
        assert error["message"] == "cannot reach model big-model (ClientConnectorError)"
        assert chat(client, STRONG, stream=True).status_code == 502
        assert chat(client, WEAK).status_code == 200
        assert not any(line.startswith("lmroute_fallbacks_total") for line in metric_lines(client))


def test_clients_are_told_no_upstream_address_and_the_log_keeps_it(upstreams, caplog):
    # A gateway's upstreams are internal hosts and ports: a client learns the model, not where it runs.
    caplog.set_level(logging.INFO, logger="lmroute")
    told = []
    down = upstreams.config(down=("strong", "weak"))
    with running(down) as client:
        told.append(chat(client, STRONG).json()["error"]["message"])  # the fallback failed too
        told.append(chat(client, STRONG).json()["error"]["message"])  # both skipped by their breakers
        told.append(chat(client, "small-model", stream=True).json()["error"]["message"])
    upstreams.strong.mode, upstreams.strong.status = "status", 503
    with running(upstreams.config(fallback=False, circuit_breaker=0, upstream={"timeout": 0.3})) as client:
        told.append(chat(client, STRONG).json()["error"]["message"])
        upstreams.strong.mode, upstreams.strong.delay = "hang", 1.0
        told.append(chat(client, "big-model").json()["error"]["message"])
        upstreams.strong.mode = "drop"
        told.append(json.loads(events(chat(client, STRONG, stream=True))[-2])["error"]["message"])
    assert told == [
        "cannot reach model big-model (ClientConnectorError); fallback to model small-model failed too: "
        "cannot reach model small-model (ClientConnectorError)",
        "cannot reach model big-model (ClientConnectorError); skipping model big-model for 30 s more "
        "(circuit_breaker); fallback to model small-model failed too: cannot reach model small-model "
        "(ClientConnectorError); skipping model small-model for 30 s more (circuit_breaker)",
        "cannot reach model small-model (ClientConnectorError); skipping model small-model for 30 s more "
        "(circuit_breaker)",
        "model big-model answered 503: strong is broken",
        "model big-model did not answer within 0.3s",
        "model big-model broke off the stream (ClientPayloadError)",
    ]
    assert f"cannot reach model big-model at {down.strong.base_url}: ClientConnectorError" in caplog.text
    assert f"cannot reach model small-model at {down.weak.base_url}" in caplog.text
    assert f"model big-model at {upstreams.urls['strong']} broke off the stream" in caplog.text


def test_both_down_says_so(upstreams):
    with running(upstreams.config(down=("strong", "weak"))) as client:
        response = chat(client, STRONG)
    assert response.status_code == 502
    assert "fallback to model small-model failed too" in response.json()["error"]["message"]


def test_a_model_asked_by_name_is_not_rerouted(upstreams):
    with running(upstreams.config(down=("strong",))) as client:
        assert chat(client, "big-model").status_code == 502


def test_hung_upstream_times_out_with_504(upstreams):
    upstreams.strong.mode, upstreams.strong.delay = "hang", 1.5
    with running(upstreams.config(fallback=False, upstream={"timeout": 0.3})) as client:
        response = chat(client, STRONG)
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "upstream_timeout" and "did not answer within 0.3s" in error["message"]
    with running(upstreams.config(upstream={"timeout": 0.3})) as client:
        response = chat(client, STRONG)
        assert response.json()["lmroute"]["model"] == "small-model"
        assert (
            'lmroute_fallbacks_total{from_model="big-model",reason="timeout",to_model="small-model"} 1.0'
            in (metric_lines(client))
        )


def test_5xx_falls_back_or_502s_and_is_retried(upstreams):
    upstreams.strong.mode, upstreams.strong.status = "status", 503
    with running(upstreams.config()) as client:
        assert chat(client, STRONG).json()["lmroute"]["model"] == "small-model"
    with running(upstreams.config(fallback=False)) as client:
        response = chat(client, STRONG)
        assert response.status_code == 502
        assert "answered 503: strong is broken" in response.json()["error"]["message"]

    upstreams.reset()
    upstreams.strong.mode, upstreams.strong.failures = "flaky", 2
    with running(
        upstreams.config(fallback=False, upstream={"max_retries": 2, "retry_backoff": 0.01})
    ) as client:
        response = chat(client, STRONG)
        assert response.status_code == 200 and response.json()["lmroute"]["fallback"] is False
        assert len(upstreams.strong.requests) == 3
        assert 'lmroute_upstream_retries_total{model="big-model"} 2.0' in metric_lines(client)


@pytest.mark.parametrize(
    "garbage",
    [b"<html>oops", b'{"choices": [], "n": 1' + b"0" * 5000 + b"}", b"[" * 100_000, b"\xff\xfe"],
    ids=["page", "over-4300-digits", "nested-too-deeply", "not-utf8"],
)
def test_malformed_answer_is_a_502(upstreams, garbage):
    # An integer of more digits than Python converts, or nesting past its recursion limit, escaped
    # as a ValueError / RecursionError: a 500 and no fallback.
    upstreams.strong.mode, upstreams.strong.garbage = "malformed", garbage
    with running(upstreams.config(fallback=False)) as client:
        response = chat(client, STRONG)
        assert response.status_code == 502
        assert "not a chat completion" in response.json()["error"]["message"]
    with running(upstreams.config()) as client:
        assert chat(client, STRONG).json()["lmroute"]["fallback"] is True


@pytest.mark.parametrize(
    "status, expected, code", [(400, 400, "upstream_rejected_request"), (429, 429, "upstream_rate_limited")]
)
def test_client_errors_pass_through_without_fallback(upstreams, status, expected, code):
    upstreams.strong.mode, upstreams.strong.status = "status", status
    with running(upstreams.config()) as client:
        response = chat(client, STRONG)
    assert response.status_code == expected and response.json()["error"]["code"] == code
    assert not upstreams.weak.requests


def test_upstream_keys_stay_secret(upstreams, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("STRONG_KEY", secret)
    upstreams.strong.mode, upstreams.strong.status = "status", 401
    with running(upstreams.config(fallback=False, upstream={"api_key_env": "STRONG_KEY"})) as client:
        response = chat(client, STRONG)
        metrics = client.get("/metrics").text
    assert upstreams.strong.auth[-1] == f"Bearer {secret}"
    assert response.status_code == 502
    assert "rejected lmroute's API key (check $STRONG_KEY)" in response.json()["error"]["message"]
    assert secret not in response.text and secret not in metrics


def test_an_upstream_that_asks_for_a_key_none_is_configured_for_says_so(upstreams):
    # It said "check $None": no variable to check, since no api_key_env names one.
    upstreams.strong.mode, upstreams.strong.status = "status", 401
    with running(upstreams.config(fallback=False)) as client:
        response = chat(client, STRONG)
    assert upstreams.strong.auth[-1] is None
    message = response.json()["error"]["message"]
    assert response.status_code == 502 and "$None" not in message
    assert "model big-model asks for an API key and none is configured (set api_key_env)" in message


def test_missing_key_variable_is_a_config_error(upstreams, monkeypatch):
    from lmroute import ConfigError

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    app = create_app(
        upstreams.config(upstream={"api_key_env": "NO_SUCH_KEY_VAR"}), routers={"length": LengthRouter()}
    )

    async def start():
        async with app.router.lifespan_context(app):
            pass

    import asyncio

    with pytest.raises(ConfigError, match="environment variable NO_SUCH_KEY_VAR"):
        asyncio.run(start())


@pytest.mark.parametrize(
    "mode, fault_at, code, message",
    [
        ("drop", 2, "upstream_error", "broke off the stream"),
        ("error_event", 1, "upstream_error", "failed mid-stream: the model crashed"),
        ("malformed", 1, "upstream_error", "malformed stream event"),
        ("slow_stream", None, "upstream_timeout", "sent nothing more within 0.3s"),
    ],
)
def test_a_stream_that_fails_midway_ends_with_an_error_event_and_done(
    upstreams, mode, fault_at, code, message
):
    upstreams.strong.mode, upstreams.strong.delay, upstreams.strong.fault_at = mode, 1.0, fault_at
    with running(upstreams.config(upstream={"timeout": 0.3})) as client:
        response = chat(client, STRONG, stream=True)
    assert response.status_code == 200
    got = events(response)
    assert got[-1] == "[DONE]"
    error = json.loads(got[-2])["error"]
    assert error["code"] == code and message in error["message"]
    # Content that arrived before the failure was relayed; nothing is re-sent by another model.
    assert all("choices" in json.loads(e) for e in got[:-2])
    assert not upstreams.weak.requests


def test_a_stream_whose_body_ends_early_without_done_is_an_upstream_error(upstreams):
    # The upstream's body ended cleanly mid-answer: relayed as it was, with lmroute's [DONE], the cut
    # answer looked complete. An OpenAI client now gets the error event (the SDK raises APIError).
    upstreams.strong.mode = "cut_short"
    with running(upstreams.config()) as client:
        got = events(chat(client, STRONG, stream=True))
        sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="-", max_retries=0)
        streamed = sdk.chat.completions.create(model=STRONG, messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="before the answer was finished"):
            list(streamed)
        lines = metric_lines(client)
    assert got[-1] == "[DONE]"
    error = json.loads(got[-2])["error"]
    assert error["code"] == "upstream_error"
    assert error["message"] == "model big-model ended its stream before the answer was finished (no [DONE])"
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in got[:-2]] == ["strong ", "says "]
    assert 'lmroute_upstream_errors_total{kind="connection",model="big-model"} 2.0' in lines
    assert not upstreams.weak.requests  # the answer had begun: no other model may finish it


def test_slow_stream_within_the_timeout_is_fine(upstreams):
    upstreams.strong.mode, upstreams.strong.delay = "slow_stream", 0.1
    with running(upstreams.config(upstream={"timeout": 1.0})) as client:
        got = events(chat(client, STRONG, stream=True))
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in got[:-1])
    assert text == "strong says hi" and got[-1] == "[DONE]"


@pytest.mark.parametrize(
    "mode, reason",
    [("drop", "connection"), ("error_event", "connection"), ("malformed", "malformed")],
)
def test_a_stream_that_fails_before_its_first_chunk_falls_back(upstreams, mode, reason):
    # Nothing has reached the client yet: the other model answers, as when the upstream is down.
    upstreams.strong.mode, upstreams.strong.fault_at = mode, 0
    with running(upstreams.config()) as client:
        response = chat(client, STRONG, stream=True)
        lines = metric_lines(client)
    assert response.status_code == 200 and response.headers["x-lmroute-fallback"] == "true"
    got = events(response)
    assert got[-1] == "[DONE]"
    chunks = [json.loads(e) for e in got[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "weak says hi"
    assert chunks[0]["lmroute"]["fallback"] is True and chunks[0]["lmroute"]["model"] == "small-model"
    assert len(upstreams.strong.requests) == 1 and len(upstreams.weak.requests) == 1
    fallbacks = f'lmroute_fallbacks_total{{from_model="big-model",reason="{reason}",to_model="small-model"}}'
    assert f"{fallbacks} 1.0" in lines


def test_a_stream_that_fails_before_its_first_chunk_without_fallback_is_a_502(upstreams):
    upstreams.strong.mode, upstreams.strong.fault_at = "error_event", 0
    with running(upstreams.config(fallback=False)) as client:
        response = chat(client, STRONG, stream=True)
    assert response.status_code == 502
    assert "failed mid-stream: the model crashed" in response.json()["error"]["message"]
    assert not upstreams.weak.requests


def test_a_client_that_leaves_while_the_stream_opens_cuts_the_upstream_call(upstreams):
    # A slow-to-start model (a reasoning one) sends its first event late; a client that left before
    # it came went unnoticed until then, and the upstream call ran (and billed) meanwhile.
    upstreams.strong.mode, upstreams.strong.delay = "slow_start", 5.0
    counted = 'lmroute_requests_total{endpoint="chat",model="big-model",router="length",status="499"} 1.0'
    with running(upstreams.config(upstream={"timeout": 10.0})) as client:
        with pytest.raises(httpx.ReadTimeout):
            # On timing out, httpx closes its connection: the client has left.
            client.post(
                "/v1/chat/completions",
                json={"model": STRONG, "messages": MESSAGES, "stream": True},
                timeout=0.5,
            )
        deadline = time.monotonic() + 2.5
        while not (upstreams.strong.cut and counted in metric_lines(client)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstreams.strong.cut == 1
        assert counted in metric_lines(client)


def leave_after(client, seconds, **fields):
    """Send a chat request and give up after ``seconds``: on timing out, httpx closes its connection."""
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/v1/chat/completions",
            json={"model": STRONG, "messages": MESSAGES, **fields},
            timeout=seconds,
        )


def wait_for_line(client, line, seconds=2.5):
    deadline = time.monotonic() + seconds
    while line not in metric_lines(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    return metric_lines(client)


LEFT = 'lmroute_requests_total{endpoint="chat",model="big-model",router="length",status="499"} 1.0'


def test_a_client_that_leaves_while_the_model_answers_cuts_the_upstream_call(upstreams, caplog):
    # A request without streaming ran its upstream call to the end (billed) for a client that had
    # left, and was counted as a 200 whose answer and spend nobody received.
    caplog.set_level(logging.INFO, logger="lmroute")
    upstreams.strong.mode, upstreams.strong.delay = "hang", 5.0
    price = {"input_per_1m": 2.5, "output_per_1m": 10}
    with running(upstreams.config(upstream={"timeout": 10.0, "price": price})) as client:
        leave_after(client, 0.5)
        lines = wait_for_line(client, LEFT)
        deadline = time.monotonic() + 2.5
        while not upstreams.strong.cut and time.monotonic() < deadline:
            time.sleep(0.05)
    assert LEFT in lines
    assert upstreams.strong.cut == 1
    assert not [line for line in lines if 'status="200"' in line]
    answered = ("lmroute_model_requests", "lmroute_estimated_spend")
    assert not [line for line in lines if line.startswith(answered)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_client_that_leaves_during_the_retries_ends_them_and_the_fallback(upstreams):
    # The retries went on, then the other model was called and billed, for nobody.
    upstreams.strong.mode = "status"
    retrying = {"max_retries": 2, "retry_backoff": 0.5}
    with running(upstreams.config(upstream=retrying)) as client:
        leave_after(client, 0.2)
        lines = wait_for_line(client, LEFT)
    assert LEFT in lines
    assert len(upstreams.strong.requests) == 1
    assert not upstreams.weak.requests


def test_a_client_that_leaves_while_its_prompt_waits_to_be_scored_is_not_scored(upstreams):
    # Under load, the prompts of clients that had given up were scored all the same (and their
    # requests sent upstream): work for nobody, which slowed the requests still waiting.
    import threading

    import numpy as np

    from lmroute.routers.base import Router

    release = threading.Event()

    class Gate(Router):
        name = "gate"

        def __init__(self):
            super().__init__()
            self.prompts = []

        def _score(self, prompts):
            asked = [p for p in prompts if p in ("a", "b", "c")]  # not the server's warm-up
            if asked:
                self.prompts += asked
                release.wait(5)
            return np.full(len(prompts), 0.9)

    def ask(client, text, timeout=10.0):
        body = {"model": "router-gate-0.5", "messages": [{"role": "user", "content": text}]}
        return client.post("/v1/chat/completions", json=body, timeout=timeout)

    def soon(condition):
        deadline = time.monotonic() + 2.5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        return condition()

    router = Gate()
    app = create_app(upstreams.config(), routers={"gate": router})
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        answers = []
        waiting = [threading.Thread(target=lambda t=t: answers.append(ask(client, t))) for t in "ab"]
        try:
            waiting[0].start()  # "a" is scored, "b" waits for the scoring thread, "c" for a batch
            assert soon(lambda: router.prompts == ["a"])
            waiting[1].start()
            assert soon(lambda: 'lmroute_scoring_batch_size_count{router="gate"} 2.0' in metric_lines(client))
            with pytest.raises(httpx.ReadTimeout):
                ask(client, "c", timeout=0.3)
            left = 'lmroute_requests_total{endpoint="chat",model="none",router="none",status="499"} 1.0'
            assert soon(lambda: left in metric_lines(client))
        finally:
            release.set()
            for thread in waiting:
                if thread.is_alive():
                    thread.join(10)
    assert [a.status_code for a in answers] == [200, 200]
    assert router.prompts == ["a", "b"]
    assert len(upstreams.strong.requests) == 2


def test_a_request_the_server_cancels_is_counted_as_a_499(upstreams):
    # Ray Serve cancels the request of a client that left (and one past its request timeout): such a
    # request went uncounted, missing from the request rates, where lmroute serve counts a 499.
    async def main():
        calling = asyncio.Event()

        class Hanging:
            async def post(self, path, body):
                calling.set()
                await asyncio.sleep(3600)

            async def close(self):
                pass

        app = create_app(
            upstreams.config(), routers={"length": LengthRouter()}, upstream_factory=lambda _: Hanging()
        )
        body = json.dumps({"model": STRONG, "messages": MESSAGES}).encode()
        received = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if received:
                return received.pop()
            await asyncio.Event().wait()  # the client is still there: the server cancels

        async def send(message):
            raise AssertionError(f"nothing is sent for a cancelled request: {message}")

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        async with app.router.lifespan_context(app):
            request = asyncio.ensure_future(app(scope, receive, send))
            await calling.wait()
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            return app.state.metrics.render()[0].decode()

    text = asyncio.run(main())
    assert LEFT in text.splitlines()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
def test_a_client_that_leaves_while_sending_its_body_is_a_499_not_an_internal_error(upstreams, caplog, path):
    # It was logged as an internal error with a traceback and counted as a 500 (an alert on 5xx).
    import socket

    caplog.set_level(logging.INFO, logger="lmroute")
    endpoint = "chat" if path.endswith("completions") else "route"
    counted = f'lmroute_requests_total{{endpoint="{endpoint}",model="none",router="none",status="499"}} 1.0'
    with running(upstreams.config()) as client:
        with socket.create_connection((client.base_url.host, client.base_url.port)) as sock:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            sock.sendall(head.encode() + b'{"model": ')
            time.sleep(0.2)
        deadline = time.monotonic() + 2.5
        while counted not in metric_lines(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = metric_lines(client)
    assert counted in lines
    assert not [line for line in lines if 'status="500"' in line]
    assert "internal error" not in caplog.text


def thinking_upstream(comments: bool):
    """An upstream that streams one chunk, thinks 1.5 s (sending SSE comments, or nothing), then ends."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    def chunk(text: str, finish: str | None = None) -> bytes:
        data = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    async def events():
        yield chunk("Let me think. ")
        for _ in range(15):
            await asyncio.sleep(0.1)
            if comments:
                yield b": keep-alive\n\n"
        yield chunk("42", "stop")
        yield b"data: [DONE]\n\n"

    async def chat(request):
        await request.body()
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.mark.parametrize("comments", [True, False], ids=["upstream-comments", "upstream-silent"])
def test_a_stream_whose_model_thinks_mid_answer_keeps_the_client_connection_alive(comments):
    # The client got nothing while the model thought: a proxy or client with an idle (read) timeout
    # shorter than the thinking cut the stream. The server now sends an SSE comment meanwhile.
    with serve_in_thread(thinking_upstream(comments)) as url:
        tiers = {
            t: {"base_url": url + "/v1", "model": f"{t}-model", "max_retries": 0} for t in ("strong", "weak")
        }
        config = build_config(overrides={**tiers, "routers": ["length"], "server": {"stream_heartbeat": 0.2}})
        with running(config) as client:
            body = {"model": STRONG, "messages": MESSAGES, "stream": True}
            response = client.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=0.6))
            sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="-", max_retries=0, timeout=10)
            streamed = sdk.chat.completions.create(model=STRONG, messages=MESSAGES, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in streamed)
    parts = events(response)
    assert parts[1:-2] and set(parts[1:-2]) == {": keep-alive"}
    assert [json.loads(p)["choices"][0]["delta"]["content"] for p in (parts[0], parts[-2])] == [
        "Let me think. ",
        "42",
    ]
    assert parts[-1] == "[DONE]"
    assert text == "Let me think. 42"  # the openai SDK reads past the comments


def test_a_client_that_leaves_mid_stream_between_heartbeats_cuts_the_upstream_stream(upstreams):
    upstreams.strong.mode, upstreams.strong.delay = "slow_stream", 5.0
    config = upstreams.config(upstream={"timeout": 10.0}, server={"stream_heartbeat": 0.1})
    with running(config) as client:
        body = {"model": STRONG, "messages": MESSAGES, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert ": keep-alive" in [next(lines) for _ in range(4)]
        deadline = time.monotonic() + 2.5
        while not upstreams.strong.cut and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstreams.strong.cut == 1


def test_an_answer_holding_half_an_emoji_or_an_infinite_logprob_is_relayed_as_sent():
    # A lone surrogate escape (an emoji split across chunks) and -Infinity are JSON the openai SDK
    # reads; writing them out failed: the stream ended with an internal error, the answer was a 500.
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    def chunk(text: str) -> bytes:
        head = b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", '
        return head + b'"choices": [{"index": 0, "delta": {"content": "' + text.encode() + b'"}}]}\n\n'

    async def chat(request):
        if not (await request.json()).get("stream"):
            return Response(
                b'{"id": "c", "object": "chat.completion", "created": 1, "model": "m",'
                b' "choices": [{"index": 0, "message": {"role": "assistant", "content": "a\\ud83d"},'
                b' "finish_reason": "stop",'
                b' "logprobs": {"content": [{"token": "a", "logprob": -Infinity, "bytes": null,'
                b' "top_logprobs": []}]}}]}',
                media_type="application/json",
            )
        parts = [chunk("ok "), chunk("\\ud83d"), chunk("\\ude00 end"), b"data: [DONE]\n\n"]
        return StreamingResponse(iter(parts), media_type="text/event-stream")

    upstream = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serve_in_thread(upstream) as url:
        tiers = {
            t: {"base_url": url + "/v1", "model": f"{t}-model", "max_retries": 0} for t in ("strong", "weak")
        }
        config = build_config(overrides={**tiers, "routers": ["length"]})
        with running(config) as client:
            sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="-", max_retries=0)
            streamed = sdk.chat.completions.create(model=STRONG, messages=MESSAGES, stream=True)
            text = "".join(c.choices[0].delta.content for c in streamed)
            answer = sdk.chat.completions.create(model=STRONG, messages=MESSAGES)
    assert text == "ok \ud83d\ude00 end"
    assert answer.choices[0].message.content == "a\ud83d"
    assert answer.choices[0].logprobs.content[0].logprob == float("-inf")


@pytest.mark.parametrize("garbage", [b'{"n": 1' + b"0" * 5000 + b"}", b"[" * 100_000])
def test_a_stream_event_json_cannot_read_is_a_malformed_event(upstreams, garbage):
    # Such events escaped as a ValueError / RecursionError: the stream ended with no error event.
    upstreams.strong.mode, upstreams.strong.fault_at, upstreams.strong.garbage = "malformed", 1, garbage
    with running(upstreams.config()) as client:
        response = chat(client, STRONG, stream=True)
    got = events(response)
    assert got[-1] == "[DONE]" and "malformed stream event" in json.loads(got[-2])["error"]["message"]
