"""Every error leaves the server as OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

:func:`error_response` translates lmroute's error tree (:mod:`lmroute.exceptions`) into a status,
a type and a code; :func:`exception_handlers` gives the app's handlers for library errors,
Starlette's HTTP errors (404, 405) and anything unexpected (a logged 500).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from lmroute.exceptions import (
    ConfigError,
    InvalidModelNameError,
    LmrouteError,
    RequestError,
    RouterFailedError,
    UnknownRouterError,
    UpstreamError,
    UpstreamTimeoutError,
)
from lmroute.serving.protocol import ErrorBody, ErrorResponse

log = logging.getLogger("lmroute.serving")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
#: The status counted for a request whose client left before its answer (nginx's "client closed request").
CLIENT_CLOSED = 499
_Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def error_response(exc: LmrouteError) -> Response:
    """The OpenAI-shaped response for a library error."""
    status, kind, code, param = _classify(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429 and isinstance(exc, UpstreamError) and exc.retry_after is not None:
        headers = {"Retry-After": str(math.ceil(exc.retry_after))}
    # An upstream's URL, host and port are the server's business: only its log has them.
    message = exc.client_message if isinstance(exc, UpstreamError) else str(exc)
    return _error(status, message, kind, code=code, param=param, headers=headers)


def exception_handlers() -> dict[int | type[Exception], _Handler]:
    """The app's exception handlers (``Starlette(exception_handlers=...)``)."""
    return {
        LmrouteError: _lmroute_error,
        HTTPException: _http_error,
        ClientDisconnect: _client_left,
        Exception: _internal_error,
    }


async def _lmroute_error(request: Request, exc: LmrouteError) -> Response:
    if isinstance(exc, UpstreamError):
        log.warning("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(exc)


def trailing_slash(request: Request) -> RequestError | None:
    """The 404 of a path that names an endpoint but for its trailing slash (None for other paths):
    one clear error rather than Starlette's 307 redirect, which clients often do not follow for a
    POST (OpenAI answers such paths 404 too)."""
    path = request.scope["path"]  # as the routes match it
    meant = path.rstrip("/")
    if not meant or meant == path:
        return None
    scope = {**request.scope, "path": meant}
    if all(route.matches(scope)[0] == Match.NONE for route in request.app.router.routes):
        return None
    return RequestError(
        f"no endpoint at {request.method} {path}: the endpoint is {meant}, without the trailing slash",
        status=404,
        code="not_found",
    )


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404 and (wrong := trailing_slash(request)) is not None:
        return error_response(wrong)
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    # exc.headers carries the Allow header of a 405 (RFC 9110 requires it).
    return _error(
        exc.status_code, str(exc.detail), kind, code=_HTTP_CODES.get(exc.status_code), headers=exc.headers
    )


async def _client_left(request: Request, exc: ClientDisconnect) -> Response:
    # The client went away while sending its body: nobody reads the answer, and no error of ours.
    log.debug("the client left during %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s", request.url.path)
    return _error(500, "internal server error", "server_error", code="internal_error")


def _classify(exc: LmrouteError) -> tuple[int, str, str | None, str | None]:
    """(status, type, code, param) of a library error."""
    if isinstance(exc, RequestError):
        return exc.status, "invalid_request_error", exc.code, exc.param
    if isinstance(exc, InvalidModelNameError):
        return 400, "invalid_request_error", "invalid_model", "model"
    if isinstance(exc, UnknownRouterError):
        # A 400, as for every other bad model name: the request names something this server lacks.
        return 400, "invalid_request_error", "router_not_found", "model"
    if isinstance(exc, RouterFailedError):
        return 503, "server_error", "router_error", None
    if isinstance(exc, UpstreamTimeoutError):
        return 504, "upstream_error", "upstream_timeout", None
    if isinstance(exc, UpstreamError):
        if exc.status_code == 429:
            return 429, "rate_limit_error", "upstream_rate_limited", None
        if exc.status_code in (400, 413, 422):
            return 400, "invalid_request_error", "upstream_rejected_request", None
        return 502, "upstream_error", "upstream_error", None
    if isinstance(exc, ConfigError):
        return 400, "invalid_request_error", "invalid_value", None
    return 500, "server_error", "internal_error", None


def _error(
    status: int,
    message: str,
    kind: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
