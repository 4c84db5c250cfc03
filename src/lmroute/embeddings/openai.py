"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, Ollama, ...).

The API key is read at request time from the environment variable named by ``api_key_env``
(never stored in a config); when that variable is unset no ``Authorization`` header is sent,
which local servers accept. Texts go in batches of ``batch_size``; 429 and 5xx answers (but 501 Not
Implemented and 505), timeouts and connection errors are retried with exponential backoff
(honouring ``Retry-After``), other errors raise :class:`~lmroute.exceptions.UpstreamError` at once.

**Long texts.** Texts longer than ``max_chars`` characters (default 8000, roughly 2000 English
tokens, and within the 8191-token input limit of OpenAI's embedding models for nearly any text)
are cut to their first ``max_chars`` characters before sending; the count is kept in
``embedder.truncated`` and logged like the MiniLM embedder does. A long-prompt policy
(:mod:`lmroute.embeddings.long_prompts`) cuts windows of ``max_chars`` characters instead.
Empty texts are sent as a single space, since the API rejects empty strings; an unpaired UTF-16
surrogate (which cannot be encoded) as U+FFFD.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from lmroute._keys import key_from_env
from lmroute.embeddings.base import CountsTruncation, Embedder, check_texts, encodable, normalize
from lmroute.exceptions import ConfigError, UpstreamError, UpstreamTimeoutError

logger = logging.getLogger(__name__)

#: Output sizes of OpenAI's embedding models; other models need ``dim=``.
KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_MAX_CHARS = 8000
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUS = frozenset({408, 409, 429})
#: 5xx answers that say what will not change by asking again (llama.cpp's server answers 501
#: "This server does not support embeddings" when started without --embeddings).
_FINAL_5XX = frozenset({501, 505})
_MAX_DELAY = 60.0
#: How the options an embedder's name may carry after ``?`` are read (others stay text).
_NUMBER_OPTIONS: dict[str, type] = {
    "dimensions": int,
    "dim": int,
    "max_chars": int,
    "batch_size": int,
    "max_retries": int,
    "backoff": float,
    "timeout": float,
}
_TEXT_OPTIONS = ("base_url", "api_key_env")


def options_from_query(query: str) -> dict[str, Any]:
    """The options written after ``?`` in ``openai:<model>?dimensions=256&max_chars=4000``, read as
    the constructor takes them (``max_chars=None``, as a name says no limit, as None)."""
    try:
        pairs = parse_qsl(query, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"cannot read the embedder options {query!r}: write key=value&key=value") from None
    options: dict[str, Any] = {}
    for key, value in pairs:
        kind = _NUMBER_OPTIONS.get(key)
        if kind is None:
            if key not in _TEXT_OPTIONS:
                known = ", ".join([*_NUMBER_OPTIONS, *_TEXT_OPTIONS])
                raise ConfigError(f"unknown openai embedder option {key!r}; known: {known}")
            options[key] = value
        elif key == "max_chars" and value == "None":
            options[key] = None
        else:
            try:
                options[key] = kind(value)
            except ValueError:
                options[key] = math.nan
            if not math.isfinite(options[key]):
                what = "a whole number" if kind is int else "a finite number"
                raise ConfigError(f"openai embedder option {key} must be {what}, got {value!r}")
    return options


def key_variable(name: str) -> tuple[str, bool] | None:
    """The environment variable the embedder named ``name`` (as ``get_embedder`` takes it) reads
    its API key from, and whether a key is needed: for OpenAI's own API, or a variable the name
    gives (``api_key_env=``); a local server asked under the default variable takes none. None for
    an embedder that is not ``openai:``."""
    if not name.startswith("openai:"):
        return None
    options = options_from_query(name.partition("?")[2])
    base_url = str(options.get("base_url", DEFAULT_BASE_URL)).rstrip("/")
    return str(options.get("api_key_env", "OPENAI_API_KEY")), (
        "api_key_env" in options or base_url == DEFAULT_BASE_URL
    )


class OpenAIEmbedder(CountsTruncation, Embedder):
    """Embeddings from an OpenAI-compatible endpoint, ``model`` at ``base_url``.

    ``dimensions`` is passed to the API (text-embedding-3 models can shorten their vectors);
    ``dim`` states the output size of a model not in :data:`KNOWN_DIMS`. ``client`` (an
    ``httpx.Client``) and ``sleep`` are collaborators for tests and custom transports.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str = "OPENAI_API_KEY",
        dimensions: int | None = None,
        dim: int | None = None,
        max_chars: int | None = DEFAULT_MAX_CHARS,
        batch_size: int = 64,
        max_retries: int = 4,
        backoff: float = 1.0,
        timeout: float = 60.0,
        client: Any = None,
        sleep: Callable[[float], None] | None = None,
    ):
        if not model:
            raise ConfigError("an OpenAI embedding model name is needed, e.g. text-embedding-3-small")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env or ""):
            raise ConfigError(
                f"api_key_env must be the NAME of the environment variable that holds the API key "
                f"(e.g. OPENAI_API_KEY), got {api_key_env[:4] + '...' if api_key_env else api_key_env!r}"
            )
        for option, value in (("batch_size", batch_size), ("dimensions", dimensions), ("dim", dim)):
            if value is not None and value < 1:
                raise ConfigError(f"{option} must be >= 1, got {value}")
        if max_chars is not None and max_chars < 1:
            raise ConfigError(f"max_chars must be >= 1 (or None for no limit), got {max_chars}")
        if max_retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigError("max_retries and backoff must be >= 0 and timeout > 0")
        size = dimensions or dim or KNOWN_DIMS.get(model)
        if size is None:
            raise ConfigError(f"the output size of {model!r} is not known: pass dim=<its vector length>")
        if dim is not None and dimensions is not None and dim != dimensions:
            raise ConfigError(f"dim={dim} contradicts dimensions={dimensions}")
        self.model = model
        self.dim = size
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.dimensions = dimensions
        self.max_chars = max_chars
        self.window_size = max_chars or 0
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self._client = client
        self._owns_client = False
        self._sleep = sleep or time.sleep
        options = []
        if dimensions is not None:
            options.append(f"dimensions={dimensions}")
        if max_chars != DEFAULT_MAX_CHARS:
            options.append(f"max_chars={max_chars}")
        # the name says what changes the vectors (not where they come from), for caches and checkpoints
        self.name = f"openai:{model}" + ("?" + "&".join(options) if options else "")
        self._endpoint: str | None = None  # made once: the disk cache asks for it per text
        if self.base_url != DEFAULT_BASE_URL:
            parts = urlsplit(self.base_url)
            host = parts.netloc.rpartition("@")[2]
            self._endpoint = parts._replace(netloc=host).geturl() if parts.netloc else self.base_url

    @property
    def cache_name(self) -> str:
        """:attr:`name`, then ``@`` and the endpoint (without a user or password in its URL) unless
        it is OpenAI's: two servers may each call a different model ``embed``, and the disk cache
        must not give one's vectors for the other's. OpenAI's keeps the plain name, under which
        its vectors were cached before endpoints were told apart."""
        return self.name if self._endpoint is None else f"{self.name}@{self._endpoint}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: ``(len(texts), dim)`` float32 unit rows, in input order."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(list(self.embed_parts(texts)))

    def embed_parts(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        """The rows of :meth:`embed`, one part per request of ``batch_size`` texts."""
        texts = check_texts(texts)
        limit = self.max_chars
        cut = 0 if limit is None else sum(len(t) > limit for t in texts)
        if cut:
            texts = [t[:limit] for t in texts]
        cut_means = f"were longer than {limit} characters and were truncated to their first {limit}"
        self._count(len(texts), cut, logger, cut_means)
        texts = [t or " " for t in encodable(texts)]
        for i in range(0, len(texts), self.batch_size):
            yield normalize(self._request(texts[i : i + self.batch_size]))

    def pieces(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Per text: None when it has at most ``max_chars`` characters, else its characters' spans."""
        limit = self.max_chars
        return [
            None
            if limit is None or len(t) <= limit
            else np.stack([np.arange(len(t)), np.arange(1, len(t) + 1)], 1)
            for t in check_texts(texts)
        ]

    def close(self) -> None:
        """Close the HTTP client this embedder created (a client passed in is left open)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()
        self._owns_client = False

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout)
            self._owns_client = True
        return self._client

    def _request(self, texts: list[str]) -> np.ndarray:
        import httpx

        url = f"{self.base_url}/embeddings"
        payload: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions is not None:
            payload["dimensions"] = self.dimensions
        headers = {}
        key = key_from_env(self.api_key_env, f"environment variable {self.api_key_env}")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        client = self._http()
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = client.post(url, json=payload, headers=headers, timeout=self.timeout)
            except httpx.TimeoutException as exc:
                error: UpstreamError = UpstreamTimeoutError(
                    f"{url} did not answer within {self.timeout:g} s ({type(exc).__name__})", model=self.model
                )
            except httpx.HTTPError as exc:
                error = UpstreamError(f"cannot reach {url}: {exc}", model=self.model)
            else:
                if response.status_code == 200:
                    return self._parse(response, len(texts), url)
                error = UpstreamError(
                    self._describe(response, url), status_code=response.status_code, model=self.model
                )
                status = response.status_code
                if (status < 500 and status not in _RETRY_STATUS) or status in _FINAL_5XX:
                    raise error
                retry_after = _retry_after(response)
            if attempt == self.max_retries:
                raise error
            delay = retry_after if retry_after is not None else self.backoff * 2**attempt
            logger.info("%s; retrying in %.1f s (%d/%d)", error, delay, attempt + 1, self.max_retries)
            self._sleep(min(delay, _MAX_DELAY))
        raise AssertionError("unreachable")  # pragma: no cover

    def _describe(self, response: Any, url: str) -> str:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300].strip() or response.reason_phrase
        text = f"{url} answered {response.status_code}: {message}"
        if response.status_code == 401:
            key = key_from_env(self.api_key_env, f"environment variable {self.api_key_env}")
            where = "holds a key that was refused" if key else "is not set"
            text += f" (the API key is read from ${self.api_key_env}, which {where})"
        return text

    def _parse(self, response: Any, n: int, url: str) -> np.ndarray:
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda item: item["index"])
            with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
                vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(
                f"{url} sent a malformed embeddings reply ({exc!r})", model=self.model
            ) from None
        if vectors.shape != (n, self.dim):
            raise UpstreamError(
                f"{url} sent vectors of shape {vectors.shape} for {n} texts; expected ({n}, {self.dim}): "
                "is dim/dimensions right for this model?",
                model=self.model,
            )
        if not np.isfinite(vectors).all():
            # a server serialising a NaN (as null, in Rust's serde_json) would give NaN scores, and
            # the disk cache would keep them for good
            raise UpstreamError(
                f"{url} sent an embedding holding a value that is not a finite number (null, NaN or "
                "beyond float32)",
                model=self.model,
            )
        return vectors


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to exponential backoff
        return None
