"""Server-sent events for streamed completions: every stream ends with ``data: [DONE]``.

When the upstream fails after the stream has begun, the client gets one event with an
OpenAI-shaped ``{"error": ...}`` object, then ``[DONE]``: it never waits on a stream that stops
without a word. A client that disconnects cancels the relay, which closes the upstream stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from lmroute.exceptions import UpstreamError, UpstreamTimeoutError
from lmroute.serving.answers import RoutedStream

log = logging.getLogger("lmroute.serving")

DONE = b"data: [DONE]\n\n"


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
