"""Calls to one OpenAI-compatible model, with retries and timeouts.

:class:`Upstream` sends a chat-completion payload as the client wrote it (only ``model`` is
replaced) and returns the upstream's JSON, or opens a server-sent-event stream; the bytes go
through a :class:`~lmroute.upstream.http.Transport` (aiohttp, :mod:`lmroute.upstream.http`).
Failures become :class:`~lmroute.exceptions.UpstreamError` (``UpstreamTimeoutError`` for timeouts)
whose ``status_code`` is the upstream's HTTP status (None when no answer came); :func:`failure_kind`
names the kind of failure for metrics and fallback; an :class:`UpstreamObserver` (the server's
metrics) is told each call's latency, failure and retry. API keys are read from the environment
when a client is made and never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from lmroute.exceptions import UpstreamError, UpstreamTimeoutError
from lmroute.upstream.breaker import CircuitBreaker
from lmroute.upstream.config import UpstreamConfig
from lmroute.upstream.http import HttpClient, StreamReply, Transport

log = logging.getLogger("lmroute.upstream")
_T = TypeVar("_T")

#: Builds the transport of an upstream; tests pass one that fails on purpose.
ClientFactory = Callable[[UpstreamConfig], Transport]

#: Statuses worth another attempt: timeouts, conflicts, rate limits, 5xx.
_RETRY_STATUSES = frozenset({408, 409, 429})
#: A longer Retry-After than this is not waited for in the request: the client gets the 429 and it.
MAX_RETRY_AFTER = 30.0
_PATH = "/chat/completions"
#: What json.loads raises on a body it cannot read: ValueError covers bad UTF-8, bad JSON and an
#: integer of more digits than Python converts; RecursionError, nesting past the interpreter's limit.
_UNREADABLE_JSON = (ValueError, RecursionError)


def make_client(config: UpstreamConfig) -> Transport:
    """The transport of an upstream: its base URL, its key from the environment, its timeout."""
    return HttpClient(config)


class UpstreamObserver(Protocol):
    """Told what each upstream call cost and how it failed (the server's metrics implement it)."""

    def observe_upstream_call(self, model: str, seconds: float) -> None:
        """One attempt took ``seconds`` (the whole answer, or until a stream was accepted)."""

    def count_upstream_error(self, model: str, kind: str) -> None:
        """One attempt failed; ``kind`` is :func:`failure_kind`'s."""

    def count_upstream_retry(self, model: str) -> None:
        """A failed attempt is about to be repeated."""


def failure_kind(exc: UpstreamError) -> str:
    """``timeout``, ``connection``, ``malformed`` (a 2xx answer that is not a completion), ``4xx``
    or ``5xx``."""
    if isinstance(exc, UpstreamTimeoutError):
        return "timeout"
    if exc.status_code is None:
        return "connection"
    if exc.status_code < 300:
        return "malformed"
    return "5xx" if exc.status_code >= 500 else "4xx"


def should_fall_back(exc: UpstreamError) -> bool:
    """Whether the other model may answer instead: the upstream failed, not the request."""
    return failure_kind(exc) in ("timeout", "connection", "malformed", "5xx")


def _retryable(exc: UpstreamError) -> bool:
    kind = failure_kind(exc)
    return kind in ("timeout", "connection", "5xx") or exc.status_code in _RETRY_STATUSES


class Upstream:
    """One model endpoint: ``complete`` and ``open_stream`` with retries and exponential backoff."""

    def __init__(
        self,
        config: UpstreamConfig,
        client: Transport,
        *,
        observer: UpstreamObserver | None = None,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
    ):
        self.config = config
        self.client = client
        self.observer = observer
        self._rng = rng or random.Random(0)
        #: Skips this model for a while after a request failed every attempt (None: never).
        self.breaker = breaker

    @property
    def model(self) -> str:
        return self.config.model

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The upstream's chat-completion JSON for ``payload`` (its ``model`` replaced)."""
        return await self._with_retries(self._complete_once, payload)

    async def open_stream(self, payload: dict[str, Any]) -> UpstreamStream:
        """An open event stream whose first event has come; retried until one does (an upstream
        that fails before its first event has sent nothing to relay), never once it has begun."""
        return await self._with_retries(self._open_stream_once, payload)

    async def aclose(self) -> None:
        await self.client.close()

    # -- one attempt ------------------------------------------------------------------------
    async def _complete_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            reply = await self.client.post(_PATH, {**payload, "model": self.model, "stream": False})
            if reply.status >= 300:
                raise self._status_error(reply.status, reply.headers, reply.content)
        except UpstreamError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            self._observe(time.perf_counter() - start)
        try:
            data = json.loads(reply.content)
        except _UNREADABLE_JSON:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise self._bad_answer(
                f"answered with something that is not a chat completion ({reply.content[:80]!r})",
                reply.status,
            )
        return data

    async def _open_stream_once(self, payload: dict[str, Any]) -> UpstreamStream:
        start = time.perf_counter()
        try:
            reply = await self.client.stream(_PATH, {**payload, "model": self.model, "stream": True})
            if reply.status >= 300:
                try:
                    content = await reply.read()
                finally:
                    reply.close()
                raise self._status_error(reply.status, reply.headers, content)
            if reply.headers.get("content-type", "").startswith("application/json"):
                # An upstream that ignores "stream" (or fails with a 200) answers JSON, whose lines
                # hold no events: relayed, it would be an empty stream that looks complete.
                try:
                    content = await reply.read()
                finally:
                    reply.close()
                raise self._bad_answer(
                    "answered a stream request with JSON, not an event stream "
                    f"({_upstream_message(content)[:80]})",
                    reply.status,
                )
        except UpstreamError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            self._observe(time.perf_counter() - start)
        stream = UpstreamStream(self, reply)
        try:
            await stream.begin()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    # -- retries and errors -----------------------------------------------------------------
    async def _with_retries(
        self, attempt: Callable[[dict[str, Any]], Awaitable[_T]], payload: dict[str, Any]
    ) -> _T:
        if self.breaker is not None:
            self.breaker.check()
        retries = self.config.max_retries
        for n in range(retries + 1):
            try:
                result = await attempt(payload)
            except UpstreamError as exc:
                # A Retry-After too long to wait for in the request ends the retries too.
                too_long = exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER
                if n == retries or not _retryable(exc) or too_long:
                    if self.breaker is not None and should_fall_back(exc):
                        self.breaker.failed(exc)
                    raise
                # Exponential backoff with up to 25% jitter, so that clients retrying together spread out.
                delay = self.config.retry_backoff * 2**n * (1 - 0.25 * self._rng.random())
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.info(
                    "model %s failed (%s); retry %d of %d in %.2fs", self.model, exc, n + 1, retries, delay
                )
                if self.observer is not None:
                    self.observer.count_upstream_retry(self.model)
                await asyncio.sleep(delay)
            else:
                if self.breaker is not None:
                    self.breaker.succeeded()
                return result
        raise AssertionError("unreachable")

    def _failed(self, exc: BaseException, *, streaming: bool = False) -> UpstreamError:
        """A transport's exception as an UpstreamError, told to the observer; anything else (a bug)
        is raised again. Its public message leaves out the URL and the exception's text (which
        names the host, port and address)."""
        named, where = f"model {self.model}", f"model {self.model} at {self.config.base_url}"
        if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
            waited = "sent nothing more" if streaming else "did not answer"
            waited += f" within {self.config.timeout:g}s"
            err: UpstreamError = UpstreamTimeoutError(
                f"{where} {waited}", model=self.model, public=f"{named} {waited}"
            )
        elif _is_transport_error(exc):
            what = "{} broke off the stream" if streaming else "cannot reach {}"
            kind = type(exc).__name__
            err = UpstreamError(
                f"{what.format(where)}: {kind}: {exc}",
                model=self.model,
                public=f"{what.format(named)} ({kind})",
            )
        else:
            raise exc
        return self._count(err)

    def _status_error(self, status: int, headers: Mapping[str, str], content: bytes) -> UpstreamError:
        """An HTTP error answer as an UpstreamError (its public message without the URL), told to
        the observer."""
        named, where = f"model {self.model}", f"model {self.model} at {self.config.base_url}"
        private = None  # the detail for the log, when it differs: a redirect's address
        if status in (401, 403) and self.config.api_key_env is None:
            detail = "asks for an API key and none is configured (set api_key_env)"
        elif status in (401, 403):
            # The upstream's text may echo part of the key: say only which variable to check.
            detail = f"rejected lmroute's API key (check ${self.config.api_key_env})"
        elif 300 <= status < 400:
            # e.g. http:// for an https-only API; a POST is not followed (its body would be lost).
            followed = "(not followed: set base_url to the address it gives)"
            detail = f"answered {status}, a redirect {followed}"
            if headers.get("location"):
                private = f"answered {status}, a redirect to {headers['location']} {followed}"
        else:
            detail = f"answered {status}: {_upstream_message(content)}"
        return self._count(
            UpstreamError(
                f"{where} {private or detail}",
                status_code=status,
                model=self.model,
                retry_after=_retry_after(headers),
                public=f"{named} {detail}",
            )
        )

    def _bad_answer(self, what: str, status: int | None) -> UpstreamError:
        """An answer that is no usable completion (``what`` it did) as an UpstreamError, counted."""
        return self._count(UpstreamError(f"model {self.model} {what}", status_code=status, model=self.model))

    def _count(self, err: UpstreamError) -> UpstreamError:
        if self.observer is not None:
            self.observer.count_upstream_error(self.model, failure_kind(err))
        return err

    def _observe(self, seconds: float) -> None:
        if self.observer is not None:
            self.observer.observe_upstream_call(self.model, seconds)


class UpstreamStream:
    """An accepted upstream stream: :meth:`chunks` yields each event's JSON object; close it after."""

    def __init__(self, upstream: Upstream, reply: StreamReply):
        self.upstream = upstream
        self._reply = reply
        self._events = self._read()
        self._first: dict[str, Any] | None = None

    @property
    def model(self) -> str:
        return self.upstream.model

    async def begin(self) -> None:
        """Wait for the first event, so that a stream failing before it fails here, while the
        request may still be retried or go to another model; UpstreamError as :meth:`chunks`."""
        # StopAsyncIteration: [DONE] at once, an empty answer, relayed as such
        with contextlib.suppress(StopAsyncIteration):
            self._first = await anext(self._events)

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Chunk objects until ``[DONE]``; UpstreamError when the upstream fails, sends an error,
        ends without sending a single event, or ends without ``[DONE]`` before its answer did."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        async for chunk in self._events:
            yield chunk

    async def _read(self) -> AsyncGenerator[dict[str, Any], None]:
        upstream = self.upstream
        events = 0
        unfinished: set[Any] = set()  # the choices begun without a finish_reason yet
        try:
            async for data in _event_data(self._reply.lines()):
                if data.strip() == "[DONE]":
                    return
                events += 1
                try:
                    chunk = json.loads(data)
                except _UNREADABLE_JSON:
                    chunk = None
                if not isinstance(chunk, dict):
                    raise upstream._bad_answer(f"sent a malformed stream event ({data[:80]!r})", 200)
                error = chunk.get("error")
                if error is not None:
                    message = error.get("message") if isinstance(error, dict) else error
                    raise upstream._bad_answer(f"failed mid-stream: {message}", None)
                _track_choices(chunk, unfinished)
                yield chunk
        except UpstreamError:
            raise
        except Exception as exc:
            raise upstream._failed(exc, streaming=True) from exc
        if not events:
            # Not even [DONE]: relaying nothing but lmroute's own [DONE] would pass for an empty answer.
            raise upstream._bad_answer("ended its stream without sending any event", 200)
        if unfinished:
            # The body ended cleanly, but mid-answer: relayed as it was, a cut answer looks complete.
            # (A server that ends finished answers without [DONE] is fine: nothing is missing.)
            raise upstream._bad_answer("ended its stream before the answer was finished (no [DONE])", None)

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            self._reply.close()


async def _event_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each server-sent event in ``lines``, as the SSE spec reads it: an event's
    ``data:`` lines joined with newlines, a blank line ending it; comments (``:``) and the other
    fields (``event:``, ``id:``, ``retry:``) carry no data, and an event without data (a
    heartbeat such as ``data:`` alone) is none."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if any(data):
                yield "\n".join(data)
            data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if any(data):  # the body ended without the blank line after its last event
        yield "\n".join(data)


def _track_choices(chunk: dict[str, Any], unfinished: set[Any]) -> None:
    """Keep in ``unfinished`` the index of each choice ``chunk`` continues and does not finish."""
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            index = choice.get("index")
            index = index if isinstance(index, (int, str)) else None
            if choice.get("finish_reason"):
                unfinished.discard(index)
            else:
                unfinished.add(index)


def _is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the connection (refused, reset, cut), not a bug."""
    if isinstance(exc, OSError):
        return True
    try:
        import aiohttp
    except ImportError:
        return False
    return isinstance(exc, aiohttp.ClientError)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a response's ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    try:
        if headers.get("retry-after-ms") is not None:
            return _finite(float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        if value.strip().replace(".", "", 1).isdigit():
            return _finite(float(value))
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _finite(seconds: float) -> float | None:
    # "inf", "nan" and 400 digits parse as floats, but no wait (nor Retry-After header) is infinite.
    return max(0.0, seconds) if math.isfinite(seconds) else None


def content_text(content: Any) -> str:
    """A chat message's text: its content string, or the text of its parts (a list of
    ``{"type": "text", "text": ...}``, beside images or a reasoning model's thinking); "" for none."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part["text"]
        for part in content
        if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def _upstream_message(content: bytes) -> str:
    """The message of an error answer: OpenAI's ``error.message``, else the start of the body."""
    try:
        body = json.loads(content)
    except _UNREADABLE_JSON:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
    return content[:300].decode("utf-8", errors="replace") or "(no body)"
