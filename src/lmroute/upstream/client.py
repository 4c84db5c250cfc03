"""Calls to one OpenAI-compatible model through the official ``openai`` SDK, with retries and timeouts.

:class:`Upstream` sends a chat-completion payload as the client wrote it (only ``model`` is
replaced) and returns the upstream's JSON, or opens a server-sent-event stream. Failures become
:class:`~lmroute.exceptions.UpstreamError` (``UpstreamTimeoutError`` for timeouts) whose
``status_code`` is the upstream's HTTP status (None when no answer came); :func:`failure_kind`
names the kind of failure for metrics and fallback; an :class:`UpstreamObserver` (the server's
metrics) is told each call's latency, failure and retry. API keys are read from the environment
when a client is made and never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import importlib.util
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lmroute.exceptions import UpstreamError, UpstreamTimeoutError
from lmroute.upstream.breaker import CircuitBreaker
from lmroute.upstream.config import UpstreamConfig

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger("lmroute.upstream")
_T = TypeVar("_T")

#: Builds the SDK client of an upstream; tests pass one whose transport is a fake.
ClientFactory = Callable[[UpstreamConfig], "AsyncOpenAI"]

#: Statuses worth another attempt (as the SDK's own retry rule): timeouts, conflicts, rate limits, 5xx.
_RETRY_STATUSES = frozenset({408, 409, 429})
#: Seconds to wait for a connection at most, however long the answer may take.
_CONNECT_TIMEOUT = 10.0
#: A longer Retry-After than this is not waited for in the request: the client gets the 429 and it.
MAX_RETRY_AFTER = 30.0


def make_client(config: UpstreamConfig) -> AsyncOpenAI:
    """The SDK client of an upstream: its base URL, its key from the environment, its timeout.

    The SDK's own retries are off: :class:`Upstream` retries, so that retries are counted and
    streams are only retried before their first byte. When aiohttp is installed (the ``serve``
    extra installs ``openai[aiohttp]``) the SDK sends through it, which costs about half the CPU
    of its default transport per request.
    """
    from openai import AsyncOpenAI, Timeout

    # A placeholder, not None: the SDK would otherwise send $OPENAI_API_KEY to any base_url.
    api_key = config.api_key() or "no-key"
    timeout = Timeout(config.timeout, connect=min(config.timeout, _CONNECT_TIMEOUT))
    http_client = None
    if importlib.util.find_spec("aiohttp") is not None:
        from openai import DefaultAioHttpClient

        http_client = DefaultAioHttpClient(timeout=timeout)
    return AsyncOpenAI(
        base_url=config.base_url, api_key=api_key, timeout=timeout, max_retries=0, http_client=http_client
    )


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
        client: AsyncOpenAI,
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
        """An open event stream; retried until the upstream accepts it, never once it has begun."""
        return await self._with_retries(self._open_stream_once, payload)

    async def aclose(self) -> None:
        await self.client.close()

    # -- one attempt ------------------------------------------------------------------------
    async def _complete_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        import httpx2

        body = {**payload, "model": self.model, "stream": False}
        start = time.perf_counter()
        try:
            # client.post sends the body as given: every pass-through field reaches the upstream.
            response = await self.client.post("/chat/completions", body=body, cast_to=httpx2.Response)
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            self._observe(time.perf_counter() - start)
        try:
            data = json.loads(response.content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise self._count(
                UpstreamError(
                    f"model {self.model} answered with something that is not a chat completion "
                    f"({response.content[:80]!r})",
                    status_code=response.status_code,
                    model=self.model,
                )
            )
        return data

    async def _open_stream_once(self, payload: dict[str, Any]) -> UpstreamStream:
        rest = {k: v for k, v in payload.items() if k not in ("model", "messages", "stream")}
        manager = self.client.chat.completions.with_streaming_response.create(
            model=self.model, messages=payload["messages"], stream=True, extra_body=rest or None
        )
        start = time.perf_counter()
        try:
            response = await manager.__aenter__()
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            self._observe(time.perf_counter() - start)
        return UpstreamStream(self, manager, response)

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
                if n == retries or not _retryable(exc):
                    if self.breaker is not None and should_fall_back(exc):
                        self.breaker.failed(exc)
                    raise
                # Exponential backoff with up to 25% jitter, so that clients retrying together spread out.
                delay = self.config.retry_backoff * 2**n * (1 - 0.25 * self._rng.random())
                if exc.retry_after is not None:
                    if exc.retry_after > MAX_RETRY_AFTER:
                        raise
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
        """The SDK's or the transport's exception as an UpstreamError, told to the observer."""
        import httpx2
        import openai

        where = f"model {self.model} at {self.config.base_url}"
        transport = (openai.APIConnectionError, httpx2.HTTPError, OSError)
        if isinstance(exc, transport) and _timed_out(exc):
            waited = "sent nothing more" if streaming else "did not answer"
            err: UpstreamError = UpstreamTimeoutError(
                f"{where} {waited} within {self.config.timeout:g}s", model=self.model
            )
        elif isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                # The upstream's text may echo part of the key: say only which variable to check.
                detail = f"rejected lmroute's API key (check ${self.config.api_key_env})"
            else:
                detail = f"answered {status}: {_upstream_message(exc)}"
            err = UpstreamError(
                f"{where} {detail}", status_code=status, model=self.model, retry_after=_retry_after(exc)
            )
        elif isinstance(exc, transport):
            cause = _transport_cause(exc)
            what = f"{where} broke off the stream" if streaming else f"cannot reach {where}"
            err = UpstreamError(f"{what}: {type(cause).__name__}: {cause}", model=self.model)
        else:
            raise exc
        return self._count(err)

    def _count(self, err: UpstreamError) -> UpstreamError:
        if self.observer is not None:
            self.observer.count_upstream_error(self.model, failure_kind(err))
        return err

    def _observe(self, seconds: float) -> None:
        if self.observer is not None:
            self.observer.observe_upstream_call(self.model, seconds)


class UpstreamStream:
    """An accepted upstream stream: :meth:`chunks` yields each event's JSON object; close it after."""

    def __init__(self, upstream: Upstream, manager: Any, response: Any):
        self.upstream = upstream
        self._manager = manager
        self._response = response

    @property
    def model(self) -> str:
        return self.upstream.model

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Chunk objects until ``[DONE]``; UpstreamError when the upstream fails or sends an error."""
        upstream = self.upstream
        try:
            async for line in self._response.iter_lines():
                if not line.startswith("data:"):
                    continue  # comments, event names, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    chunk = None
                if not isinstance(chunk, dict):
                    raise upstream._count(
                        UpstreamError(
                            f"model {upstream.model} sent a malformed stream event ({data[:80]!r})",
                            status_code=200,
                            model=upstream.model,
                        )
                    )
                error = chunk.get("error")
                if error is not None:
                    message = error.get("message") if isinstance(error, dict) else error
                    raise upstream._count(
                        UpstreamError(
                            f"model {upstream.model} failed mid-stream: {message}", model=upstream.model
                        )
                    )
                yield chunk
        except UpstreamError:
            raise
        except Exception as exc:
            raise upstream._failed(exc, streaming=True) from exc

    async def aclose(self) -> None:
        await self._manager.__aexit__(None, None, None)


def _timed_out(exc: BaseException) -> bool:
    """Whether a transport failure was a timeout.

    The SDK's aiohttp transport reports every aiohttp connection error (refused, reset) as a
    connect *timeout*, so what aiohttp itself raised decides when it is in the chain.
    """
    import httpx2
    import openai

    raised = _aiohttp_error(exc)
    if raised is not None:
        return isinstance(raised, (TimeoutError, asyncio.TimeoutError))
    return isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException, TimeoutError))


def _transport_cause(exc: BaseException) -> BaseException:
    """The exception that says what went wrong, for messages: aiohttp's own when it is in the chain
    (not the ConnectTimeout the SDK wraps a refused connection in), else the SDK's cause."""
    return _aiohttp_error(exc) or exc.__cause__ or exc


def _aiohttp_error(exc: BaseException) -> BaseException | None:
    """The first exception raised by aiohttp in ``exc``'s chain, if any."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if type(seen).__module__.partition(".")[0] == "aiohttp":
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _retry_after(exc: Any) -> float | None:
    """Seconds from a response's ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        if value.strip().replace(".", "", 1).isdigit():
            return float(value)
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _upstream_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
    return str(getattr(exc, "message", exc))[:300]
