"""Server-sent events for streamed completions: every stream ends with ``data: [DONE]``.

When the upstream fails after the stream has begun, the client gets one event with an
OpenAI-shaped ``{"error": ...}`` object, then ``[DONE]``: it never waits on a stream that stops
without a word. A client that disconnects cancels the relay, which closes the upstream stream.
:class:`EventStream` sends the events, and an SSE comment whenever none has gone out for a while
(a model thinking mid-answer), so that an idle timeout on the way does not cut the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Send

from lmroute.exceptions import UpstreamError, UpstreamTimeoutError
from lmroute.serving.answers import RoutedStream

log = logging.getLogger("lmroute.serving")

DONE = b"data: [DONE]\n\n"
#: An SSE comment: clients ignore it, but it is traffic for the proxies and read timeouts on the way.
KEEPALIVE = b": keep-alive\n\n"


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON of what an upstream sent, written as it was: a lone surrogate (half an
    emoji, ``"\\ud83d"``, which UTF-8 cannot hold) as that escape, and NaN or Infinity (a logprob
    of -inf) as Python's json (and so the openai SDK) writes and reads them, not refused."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode()


def sse_event(data: dict[str, Any]) -> bytes:
    """One ``data:`` event; JSON never contains a raw newline, so one line suffices."""
    return b"data: " + json_bytes(data) + b"\n\n"


def error_object(message: str, *, type: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


async def relay(stream: RoutedStream) -> AsyncIterator[bytes]:
    """The SSE bytes of ``stream``: its chunks, an error event if it fails, then ``[DONE]``."""
    try:
        async for chunk in stream.chunks():
            yield sse_event(chunk)
    except UpstreamError as exc:
        code = "upstream_timeout" if isinstance(exc, UpstreamTimeoutError) else "upstream_error"
        log.warning("stream from model %s failed: %s", stream.model, exc)
        yield sse_event(error_object(exc.client_message, type="upstream_error", code=code))
    except Exception:
        log.exception("stream from model %s failed", stream.model)
        yield sse_event(
            error_object("internal error while streaming", type="server_error", code="internal_error")
        )
    finally:
        try:
            await stream.aclose()
        except Exception as exc:  # the answer is complete; a failed close must not cut it
            log.debug("closing the stream from model %s failed: %s", stream.model, exc)
    yield DONE


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response of ``content`` that sends :data:`KEEPALIVE` whenever nothing
    has gone out for ``heartbeat`` seconds (0: never).

    A model may think for minutes mid-answer, sending nothing or only SSE comments (which the
    upstream client reads past); a proxy, load balancer or client with an idle timeout would
    otherwise cut the stream meanwhile. The server sends its own comment rather than relaying the
    upstream's, so that an upstream that sends none is covered too. One timer task per stream
    keeps the time; an event costs only a clock read and an uncontended lock.
    """

    def __init__(
        self, content: AsyncIterator[bytes], *, heartbeat: float, headers: Mapping[str, str] | None = None
    ):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._events = content
        self.heartbeat = heartbeat

    async def stream_response(self, send: Send) -> None:
        if not self.heartbeat:
            await super().stream_response(send)
            return
        clock = asyncio.get_running_loop().time
        last = clock()
        # One message at a time; an uncontended asyncio lock does not even yield to the event loop.
        sending = asyncio.Lock()

        async def sent(body: bytes) -> None:
            nonlocal last
            async with sending:
                last = clock()
                await send({"type": "http.response.body", "body": body, "more_body": True})

        async def beat() -> None:
            with contextlib.suppress(OSError):  # the client left: the next event's send says so
                while True:
                    await asyncio.sleep(last + self.heartbeat - clock())
                    if clock() - last >= self.heartbeat:
                        await sent(KEEPALIVE)

        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        beating = asyncio.ensure_future(beat())
        try:
            async for chunk in self._events:
                await sent(chunk)
        finally:
            beating.cancel()  # it sends nothing more, even if it was about to: the end may follow
        await send({"type": "http.response.body", "body": b"", "more_body": False})
