"""Test helpers: a fake OpenAI-compatible upstream with switchable faults, and a uvicorn runner.

``FakeUpstream.mode`` picks how it answers ``POST /v1/chat/completions``:

    ok          a completion (or a stream of 3 chunks) saying "<name> says hi"
    slow_stream 3 chunks, ``delay`` seconds apart
    slow_start  (streams) the headers, then nothing for ``delay`` seconds, then 3 chunks
    status      an OpenAI-shaped error with HTTP ``status`` (500 by default)
    hang        nothing for ``delay`` seconds (a client that leaves meanwhile is counted in ``cut``)
    drop        (streams) 2 chunks, then the connection is cut
    malformed   200 with a body that is not JSON (streams: a malformed event)
    error_event (streams) 1 chunk, then an ``{"error": ...}`` event
    cut_short   (streams) 2 chunks, then the body ends cleanly, without ``[DONE]``
    flaky       ``status`` for the first ``failures`` requests, then ok

``fault_at`` (streams), when set, is how many chunks go out before a ``drop``, ``malformed``,
``error_event`` or ``cut_short`` fault instead (0: the fault comes before anything else).

Every request's JSON body and Authorization header is recorded in ``requests``; ``cut`` counts
the streams (and hanging requests) whose client went away before their end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class FakeUpstream:
    def __init__(self, name: str):
        self.name = name
        self.mode = "ok"
        self.status = 500
        self.delay = 0.05
        self.failures = 0
        self.fault_at: int | None = None
        self.cut = 0
        self.garbage = b"<html>oops"  # what mode "malformed" answers (a stream: as its event's data)
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []

    def reset(self) -> None:
        self.mode, self.status, self.delay, self.failures = "ok", 500, 0.05, 0
        self.fault_at, self.cut, self.garbage = None, 0, b"<html>oops"
        self.requests.clear()
        self.auth.clear()

    def completion(self, model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"{self.name} says hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }

    def chunk(self, model: str, text: str) -> bytes:
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            self.requests.append(body)
            self.auth.append(request.headers.get("authorization"))
            model, mode = body.get("model", "?"), self.mode
            if mode == "flaky":
                mode = "status" if self.failures > 0 else "ok"
                self.failures -= 1
            if mode == "status":
                error = {"error": {"message": f"{self.name} is broken", "type": "server_error"}}
                return JSONResponse(error, status_code=self.status)
            if mode == "hang" and await client_left_within(request, self.delay):
                self.cut += 1
                return Response(status_code=499)
            if mode == "malformed" and not body.get("stream"):
                return Response(self.garbage, media_type="application/json")
            if not body.get("stream"):
                return JSONResponse(self.completion(model))
            fault_at = {"drop": 2, "error_event": 1, "malformed": 0, "cut_short": 2}.get(mode)
            if fault_at is not None and self.fault_at is not None:
                fault_at = self.fault_at

            async def events():
                words = [f"{self.name} ", "says ", "hi"]
                for i, word in enumerate(words):
                    if mode == "drop" and i == fault_at:
                        raise ConnectionError("fake upstream drops the connection")
                    if mode == "error_event" and i == fault_at:
                        yield b'data: {"error": {"message": "the model crashed"}}\n\n'
                        return
                    if mode == "malformed" and i == fault_at:
                        yield b"data: " + self.garbage + b"\n\n"
                        return
                    if mode == "cut_short" and i == fault_at:
                        return
                    if (mode == "slow_stream" and i) or (mode == "slow_start" and not i):
                        try:
                            await asyncio.sleep(self.delay)
                        except asyncio.CancelledError:  # the client went away
                            self.cut += 1
                            raise
                    yield self.chunk(model, word)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def client_left_within(request: Any, seconds: float) -> bool:
    """Whether the client of ``request`` (its body read) disconnects within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def free_port() -> int:
    """A port nothing listens on (for an upstream that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free 127.0.0.1 port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="auto", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("the test server failed to start")
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("the test server did not start in 5 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Upstreams:
    """A strong and a weak fake upstream, running; ``config()`` builds a serving config for them."""

    def __init__(self, strong: FakeUpstream, weak: FakeUpstream, strong_url: str, weak_url: str):
        self.strong, self.weak = strong, weak
        self.urls = {"strong": strong_url + "/v1", "weak": weak_url + "/v1"}

    def reset(self) -> None:
        self.strong.reset()
        self.weak.reset()

    def config(self, *, down: tuple[str, ...] = (), upstream: dict | None = None, **options: Any):
        """A ServeConfig; tiers in ``down`` point at a port nothing listens on."""
        from lmroute.serving.config import build_config

        tiers = {}
        for tier, model in (("strong", "big-model"), ("weak", "small-model")):
            url = f"http://127.0.0.1:{free_port()}/v1" if tier in down else self.urls[tier]
            tiers[tier] = {
                "base_url": url,
                "model": model,
                "max_retries": 0,
                "timeout": 2.0,
                **(upstream or {}),
            }
        return build_config(overrides={**tiers, "routers": ["length"], **options})


@contextmanager
def running_upstreams() -> Iterator[Upstreams]:
    strong, weak = FakeUpstream("strong"), FakeUpstream("weak")
    with serve_in_thread(strong.app()) as strong_url, serve_in_thread(weak.app()) as weak_url:
        yield Upstreams(strong, weak, strong_url, weak_url)
