"""Calls to OpenAI-compatible model endpoints, shared by the server and the labelling runner.

``config`` (:class:`UpstreamConfig`: base URL, model, the *name* of the key's variable, timeout and
retries), ``client`` (:class:`Upstream`: async calls with retries, timeouts and named failure
kinds, reported to an optional :class:`UpstreamObserver`), ``http`` (the aiohttp transport) and
``breaker`` (:class:`CircuitBreaker`: skip a model that just failed, for a while).
This package imports nothing of lmroute but the error tree, so any layer above may call upstreams.
"""

from lmroute.upstream.breaker import CircuitBreaker
from lmroute.upstream.client import (
    MAX_RETRY_AFTER,
    ClientFactory,
    Upstream,
    UpstreamObserver,
    UpstreamStream,
    content_text,
    failure_kind,
    make_client,
    should_fall_back,
)
from lmroute.upstream.config import OPENAI_BASE_URL, OPENAI_KEY_ENV, UpstreamConfig, upstream_from
from lmroute.upstream.http import HttpClient, Reply, StreamReply, Transport

__all__ = [
    "MAX_RETRY_AFTER",
    "OPENAI_BASE_URL",
    "OPENAI_KEY_ENV",
    "CircuitBreaker",
    "ClientFactory",
    "HttpClient",
    "Reply",
    "StreamReply",
    "Transport",
    "Upstream",
    "UpstreamConfig",
    "UpstreamObserver",
    "UpstreamStream",
    "content_text",
    "failure_kind",
    "make_client",
    "should_fall_back",
    "upstream_from",
]
