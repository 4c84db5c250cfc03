"""lmroute.upstream: a package of its own that neither serving nor labelling owns, and that reports
what its calls cost to an observer passed in (the server passes its Prometheus metrics)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from fake_openai import running_upstreams, serve_in_thread

from lmroute.exceptions import ConfigError, UpstreamError
from lmroute.upstream import Upstream, UpstreamConfig, make_client


class Recorder:
    """An :class:`~lmroute.upstream.UpstreamObserver` that keeps every call it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def observe_upstream_call(self, model: str, seconds: float) -> None:
        self.calls.append(("call", model, seconds >= 0))

    def count_upstream_error(self, model: str, kind: str) -> None:
        self.calls.append(("error", model, kind))

    def count_upstream_retry(self, model: str) -> None:
        self.calls.append(("retry", model))


def test_importing_upstream_loads_nothing_of_serving_or_labelling():
    code = "import sys, lmroute.upstream; print(' '.join(m for m in sys.modules if m.startswith('lmroute.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = loaded.stdout.split()
    assert "lmroute.upstream.client" in modules
    assert not [
        m for m in modules if m.startswith(("lmroute.serving", "lmroute.labeling", "lmroute.routers"))
    ]


def test_the_observer_is_told_each_attempt_failure_and_retry():
    recorder = Recorder()

    async def calls(url: str) -> tuple[dict, Exception]:
        config = UpstreamConfig(base_url=url, model="m", max_retries=1, retry_backoff=0, timeout=5)
        upstream = Upstream(config, make_client(config), observer=recorder)
        try:
            answer = await upstream.complete({"messages": [{"role": "user", "content": "hi"}]})
            fake.mode = "status"
            with pytest.raises(UpstreamError) as failed:
                await upstream.complete({"messages": [{"role": "user", "content": "hi"}]})
        finally:
            await upstream.aclose()
        return answer, failed.value

    with running_upstreams() as pair:
        fake = pair.strong
        answer, error = asyncio.run(calls(pair.urls["strong"]))
    assert answer["choices"][0]["message"]["content"] == "strong says hi"
    assert error.status_code == 500
    assert recorder.calls == [
        ("call", "m", True),  # the answer
        ("error", "m", "5xx"),  # the first attempt: its failure, then its time
        ("call", "m", True),
        ("retry", "m"),
        ("error", "m", "5xx"),  # the retry
        ("call", "m", True),
    ]


def test_a_closed_upstream_refuses_calls_without_opening_a_connection_pool():
    # A call after close() (a retry or fallback still running) opened a new aiohttp session, and
    # nothing ever closed it; the server and both controllers close their upstreams this way.
    async def calls(url: str) -> None:
        config = UpstreamConfig(base_url=url, model="m", max_retries=2, retry_backoff=0, timeout=5)
        upstream = Upstream(config, make_client(config))
        await upstream.complete({"messages": [{"role": "user", "content": "hi"}]})
        await upstream.aclose()
        for call in (upstream.complete, upstream.open_stream):
            with pytest.raises(ConfigError, match="is closed"):
                await call({"messages": [{"role": "user", "content": "hi"}]})
        assert upstream.client._session is None

    with running_upstreams() as pair:
        asyncio.run(calls(pair.urls["strong"]))
        assert len(pair.strong.requests) == 1


def test_the_circuit_breaker_skips_a_failed_model_for_its_cooldown():
    """Issue 21 item 10: with a model down, every request waited through all its retries (~1.4 s)
    before the fallback answered. After one request failed every attempt, calls fail at once (the
    same failure, no attempt made) until the cooldown has passed; a success closes the breaker;
    client errors (4xx) never open it."""
    from lmroute.upstream import CircuitBreaker

    recorder = Recorder()
    now = [0.0]
    breaker = CircuitBreaker(30, clock=lambda: now[0])

    async def calls(url: str) -> list[str]:
        config = UpstreamConfig(base_url=url, model="m", max_retries=1, retry_backoff=0, timeout=5)
        upstream = Upstream(config, make_client(config), observer=recorder, breaker=breaker)
        payload = {"messages": [{"role": "user", "content": "hi"}]}
        seen = []
        try:
            fake.mode = "status"  # 500 on every attempt
            for when in (0.0, 10.0, 29.0, 31.0, 62.0):
                now[0] = when
                before = len(recorder.calls)
                if when == 62.0:
                    fake.mode = "ok"
                try:
                    await upstream.complete(payload)
                    seen.append("ok")
                except UpstreamError as exc:
                    attempted = len(recorder.calls) > before
                    seen.append(f"{exc.status_code} {'tried' if attempted else 'skipped'}")
                    if not attempted:
                        assert "skipping model m for" in str(exc) and "answered 500" in str(exc)
            assert not breaker.is_open
        finally:
            await upstream.aclose()
        return seen

    with running_upstreams() as pair:
        fake = pair.strong
        seen = asyncio.run(calls(pair.urls["strong"]))
    assert seen == ["500 tried", "500 skipped", "500 skipped", "500 tried", "ok"]
    never = CircuitBreaker(0)
    never.failed(UpstreamError("down", model="m"))
    never.check()  # cooldown 0: never skips


def test_a_5xx_with_a_long_retry_after_opens_the_circuit_breaker():
    # A model down for maintenance (503, Retry-After: 120) is given up on at once, without retries:
    # that skipped the breaker, so every request tried it before falling back.
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from lmroute.upstream import CircuitBreaker

    async def chat(request):
        body = {"error": {"message": "down for maintenance"}}
        return JSONResponse(body, status_code=503, headers={"retry-after": "120"})

    async def calls(url: str) -> list[str]:
        config = UpstreamConfig(base_url=url, model="m", max_retries=2, retry_backoff=0, timeout=5)
        upstream = Upstream(config, make_client(config), breaker=CircuitBreaker(30))
        seen = []
        try:
            for _ in range(2):
                with pytest.raises(UpstreamError) as failed:
                    await upstream.complete({"messages": [{"role": "user", "content": "hi"}]})
                seen.append(str(failed.value))
        finally:
            await upstream.aclose()
        return seen

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serve_in_thread(app) as url:
        first, second = asyncio.run(calls(url + "/v1"))
    assert "answered 503: down for maintenance" in first and "skipping" not in first
    assert "skipping model m for 30 s more (circuit_breaker)" in second


async def _read_stream(url: str) -> list[dict]:
    """Every chunk of a stream from the upstream at ``url``."""
    config = UpstreamConfig(base_url=url, model="m", max_retries=0, timeout=5)
    upstream = Upstream(config, make_client(config))
    try:
        opened = await upstream.open_stream({"messages": [{"role": "user", "content": "hi"}]})
        try:
            return [chunk async for chunk in opened.chunks()]
        finally:
            await opened.aclose()
    finally:
        await upstream.aclose()


def _events_app(*parts: bytes):
    """An upstream whose streams are ``parts``."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chat(request):
        return StreamingResponse(iter(parts), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_a_stream_event_larger_than_aiohttps_line_limit_is_relayed():
    # aiohttp's line reader refuses lines over 512 KiB (LineTooLong: the request failed as a 500);
    # one event may be larger (a base64 image, a long tool call), as a whole answer may.
    big = "x" * 1_500_000
    event = json.dumps({"choices": [{"index": 0, "delta": {"content": big}}]}).encode()
    app = _events_app(
        b"data: " + event[:700_000],  # one event over several writes
        event[700_000:] + b"\n\n",
        b'data: {"choices": []}\r\n\r\n',
        b"data: [DONE]\n\n",
    )
    with serve_in_thread(app) as url:
        chunks = asyncio.run(_read_stream(url + "/v1"))
    assert [len(c["choices"]) for c in chunks] == [1, 0]
    assert chunks[0]["choices"][0]["delta"]["content"] == big


def test_events_are_read_as_the_sse_spec_says():
    # One event's data may span several data: lines (joined with "\n"); comments, event:, id: and
    # retry: lines are no data. The first data line alone was read as a malformed event.
    app = _events_app(
        b": keep-alive\n\n",
        b"data:\n\ndata: \n\n",  # no data: heartbeats, not events (the spec dispatches none)
        b'event: message\nid: 1\nretry: 3000\ndata: {"choices": [{"index": 0,\n',
        b'data:  "delta": {"content": "a\\nb"}}]}\n\n',
        b'data:{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\r\n\r\n',
        b"data: [DONE]\n\n",
    )
    with serve_in_thread(app) as url:
        chunks = asyncio.run(_read_stream(url + "/v1"))
    assert [c["choices"][0].get("finish_reason") for c in chunks] == [None, "stop"]
    assert chunks[0]["choices"][0]["delta"]["content"] == "a\nb"


def test_a_stream_whose_body_ends_before_done_and_the_answers_end_is_an_error():
    # Relayed as it was, an answer cut short looked complete to the client.
    recorder = Recorder()

    async def read(url: str) -> tuple[list[dict], UpstreamError]:
        chunks: list[dict] = []
        config = UpstreamConfig(base_url=url, model="m", max_retries=0, timeout=5)
        upstream = Upstream(config, make_client(config), observer=recorder)
        try:
            opened = await upstream.open_stream({"messages": [{"role": "user", "content": "hi"}]})
            with pytest.raises(UpstreamError) as failed:
                async for chunk in opened.chunks():
                    chunks.append(chunk)
            await opened.aclose()
        finally:
            await upstream.aclose()
        return chunks, failed.value

    with running_upstreams() as pair:
        pair.strong.mode = "cut_short"
        chunks, error = asyncio.run(read(pair.urls["strong"]))
    assert len(chunks) == 2
    assert "ended its stream before the answer was finished" in error.client_message
    assert ("error", "m", "connection") in recorder.calls


def test_a_stream_without_done_whose_choices_all_finished_is_complete():
    # Some OpenAI-compatible servers end a finished answer without [DONE]: nothing is missing.
    def chunk(index: int, finish: str | None) -> bytes:
        choice = {"index": index, "delta": {"content": "x"}, "finish_reason": finish}
        return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"

    app = _events_app(chunk(0, None), chunk(1, None), chunk(0, "stop"), chunk(1, "length"))
    with serve_in_thread(app) as url:
        chunks = asyncio.run(_read_stream(url + "/v1"))
    assert len(chunks) == 4


def test_a_redirect_says_where_to_and_that_it_is_not_followed():
    # http:// for an https-only API answers 301: the error was "answered 301: <html>...", which
    # says nothing of a redirect (a POST is not followed: its body would be lost).
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def chat(request):
        where = "https://api.example.com/v1/chat/completions"
        return HTMLResponse("<html>Moved</html>", status_code=301, headers={"location": where})

    async def call(url: str) -> UpstreamError:
        config = UpstreamConfig(base_url=url, model="m", max_retries=0, timeout=5)
        upstream = Upstream(config, make_client(config))
        try:
            with pytest.raises(UpstreamError) as failed:
                await upstream.complete({"messages": [{"role": "user", "content": "hi"}]})
        finally:
            await upstream.aclose()
        return failed.value

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serve_in_thread(app) as url:
        error = asyncio.run(call(url + "/v1"))
    assert error.status_code == 301
    assert str(error) == (
        f"model m at {url}/v1 answered 301, a redirect to https://api.example.com/v1/chat/completions "
        "(not followed: set base_url to the address it gives)"
    )
    assert error.client_message == (
        "model m answered 301, a redirect (not followed: set base_url to the address it gives)"
    )
