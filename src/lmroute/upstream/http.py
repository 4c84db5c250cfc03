"""HTTP to one OpenAI-compatible endpoint: an aiohttp connection pool, JSON bodies in, bytes or lines out.

:class:`HttpClient` is what :class:`~lmroute.upstream.client.Upstream` sends through. It only moves
bytes: statuses, retries and what a failure means are the caller's. It raises aiohttp's and the
socket's own exceptions (``aiohttp.ClientError``, ``OSError``, ``TimeoutError``).

It replaced the ``openai`` SDK on this path: the SDK builds request options, an httpx request and
headers through pydantic models for every call, which was 40% of the server's CPU per request in a
profile of ``lmroute serve`` (``benchmarks/bench_server.py``); a request here is one aiohttp call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lmroute._version import __version__
from lmroute.exceptions import ConfigError
from lmroute.upstream.config import UpstreamConfig

if TYPE_CHECKING:
    import aiohttp

#: Seconds to wait for a connection at most, however long the answer may take.
CONNECT_TIMEOUT = 10.0
#: Open connections per upstream at most (the openai SDK's default); more requests wait for one.
MAX_CONNECTIONS = 1000


@dataclass(frozen=True)
class Reply:
    """A whole HTTP answer."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class StreamReply(Protocol):
    """An HTTP answer whose body is read line by line (server-sent events)."""

    @property
    def status(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers (case-insensitive)."""

    async def read(self) -> bytes:
        """The whole body (of an error answer)."""

    def lines(self) -> AsyncIterator[str]:
        """The body's lines, without their line ends."""

    def close(self) -> None:
        """Give the connection back (or drop it when the body was not read to its end)."""


class Transport(Protocol):
    """Sends chat-completion requests to one endpoint; tests pass fakes."""

    async def post(self, path: str, body: Mapping[str, Any]) -> Reply:
        """POST ``body`` as JSON and read the whole answer."""

    async def stream(self, path: str, body: Mapping[str, Any]) -> StreamReply:
        """POST ``body`` as JSON and return once the answer's headers have come."""

    async def close(self) -> None:
        """Close the connections."""


def encode_json(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as a request body."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class HttpClient:
    """A :class:`Transport` over one aiohttp session, made on first use in the running event loop.

    ``timeout`` bounds the connection (at most :data:`CONNECT_TIMEOUT`) and every wait for more
    bytes of an answer, so a slow stream is fine as long as it keeps sending. The key is read from
    the environment once, here; the proxy from ``*_proxy`` variables once, on first use (aiohttp's
    ``trust_env`` would look it up on every request). Once closed, it refuses requests (ConfigError)
    rather than open a new session that nothing would close.
    """

    def __init__(self, config: UpstreamConfig):
        self.base_url = config.base_url
        self.timeout = config.timeout
        key = config.api_key()
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"lmroute/{__version__}",
            **({"Authorization": f"Bearer {key}"} if key else {}),
        }
        self._proxy: Any = None
        self._proxy_auth: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._closed:
            # A retry or fallback still running when its owner closed: a session made now would leak.
            raise ConfigError(f"the HTTP client of {self.base_url} is closed")
        if self._session is None:
            self._proxy, self._proxy_auth = _env_proxy(self.base_url)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=min(self.timeout, CONNECT_TIMEOUT), sock_read=self.timeout
                ),
                headers=self._headers,
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def post(self, path: str, body: Mapping[str, Any]) -> Reply:
        """POST ``body`` as JSON to ``base_url + path``; the whole answer."""
        session = self._open()
        async with session.post(
            self.base_url + path,
            data=encode_json(body),
            proxy=self._proxy,
            proxy_auth=self._proxy_auth,
            allow_redirects=False,
        ) as response:
            return Reply(response.status, response.headers, await response.read())

    async def stream(self, path: str, body: Mapping[str, Any]) -> StreamReply:
        """POST ``body`` as JSON; the answer once its headers have come, its body still to read."""
        response = await self._open().post(
            self.base_url + path,
            data=encode_json(body),
            proxy=self._proxy,
            proxy_auth=self._proxy_auth,
            headers={"Accept": "text/event-stream"},
            allow_redirects=False,
        )
        return _AiohttpStream(response)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        return await self._response.read()

    async def lines(self) -> AsyncIterator[str]:
        # Split here, not by aiohttp's line reader: it refuses a line over 512 KiB (LineTooLong),
        # and one event may be larger (a base64 image, a long tool call), as a whole answer may.
        partial: list[bytes] = []
        async for data in self._response.content.iter_any():
            *complete, rest = data.split(b"\n")
            if complete:
                complete[0] = b"".join([*partial, complete[0]])
                partial.clear()
                for line in complete:
                    yield _line(line)
            if rest:
                partial.append(rest)
        if partial:
            yield _line(b"".join(partial))

    def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def _line(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").rstrip("\r")


def _env_proxy(url: str) -> tuple[Any, Any]:
    """The proxy and its credentials that ``*_proxy`` variables give for ``url``, or (None, None);
    aiohttp's own rule for ``trust_env``."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
