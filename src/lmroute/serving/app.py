"""The HTTP server: ``create_app``, the factory of a Starlette app serving :mod:`~lmroute.serving.routes`.

``create_app(config)`` does no work: routers are loaded (and warmed up) and upstream clients made
in the app's lifespan, and everything lives on ``app.state``, so tests can build many apps. Every
error leaves as OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with its status
(:mod:`~lmroute.serving.errors`), and every routing request is counted (:mod:`~lmroute.serving.middleware`).
``GET /openapi.json`` describes the API (:func:`openapi_schema`, written from the request and
response models: the routes read their bodies themselves, so no framework could infer it).

:func:`serve` runs it with uvicorn, in one process or in ``server.workers`` processes that share
the port (uvicorn's supervisor starts them afresh and restarts one that dies; each calls
:func:`worker_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmroute._malloc import use_one_arena
from lmroute._version import __version__
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError, LmrouteError
from lmroute.routers.base import Router
from lmroute.serving import console, routes
from lmroute.serving.config import SERVER_KEYS_ENV, ServeConfig
from lmroute.serving.control import check_control_files, prepare_control
from lmroute.serving.errors import exception_handlers
from lmroute.serving.fleet import check_vocabulary, dearest_and_cheapest
from lmroute.serving.loading import load_routers
from lmroute.serving.metrics import ServingMetrics
from lmroute.serving.middleware import RequestCounter
from lmroute.serving.protocol import ChatCompletionRequest, ErrorResponse, RouteRequest, RouteResponse
from lmroute.serving.service import RoutingService
from lmroute.upstream import ClientFactory

log = logging.getLogger("lmroute.serving")

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: How :func:`serve` hands the config to worker processes, which uvicorn starts afresh.
_WORKER_CONFIG_ENV = "LMROUTE_WORKER_CONFIG"
#: prometheus_client's own variable: the folder where every worker keeps its metric values.
_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def create_app(
    config: ServeConfig,
    *,
    routers: Mapping[str, Router] | None = None,
    upstream_factory: ClientFactory | None = None,
    metrics_dir: str | None = None,
    summaries: EmbeddingSummaries | None = None,
) -> Starlette:
    """The lmroute server for ``config``.

    ``routers`` (name -> router) replaces loading ``config.routers``; ``upstream_factory`` makes
    each upstream's transport (default: aiohttp, from its base URL and key variable);
    ``metrics_dir`` is the multi-process metrics folder of a server with several workers;
    ``summaries`` is the store where the given ``routers`` record the embedding summaries that drift
    detection compares (default: a new one, where the routers it loads record them).
    """
    metrics = ServingMetrics(multiprocess_dir=metrics_dir)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = summaries if summaries is not None else EmbeddingSummaries()
        loaded = (
            dict(routers)
            if routers is not None
            else await asyncio.to_thread(load_routers, config.routers, summaries=store)
        )
        # The first call of an embedding router loads its model: pay that before the first request.
        await asyncio.to_thread(_warm_up, loaded)
        service = RoutingService.from_config(
            config, routers=loaded, client_factory=upstream_factory, metrics=metrics, summaries=store
        )
        keys = [key.get_secret_value() for key in config.server.api_keys]
        await asyncio.to_thread(prepare_control, service.control, service.routers, store, keys)
        metrics.watch_control(service.control.status)
        app.state.service = service
        log.info(
            "serving routers %s; strong %s, weak %s",
            ", ".join(loaded),
            config.strong.model,
            config.weak.model,
        )
        try:
            yield
        finally:
            await service.aclose()

    app = Starlette(
        routes=[*routes.ROUTES, *(console.ROUTES if config.server.ui else ()), Route(OPENAPI_PATH, _openapi)],
        middleware=[Middleware(RequestCounter, metrics=metrics, endpoints=routes.COUNTED_ENDPOINTS)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    # A trailing slash gets the 404 that names the endpoint (errors.trailing_slash), not a redirect.
    app.router.redirect_slashes = False
    app.state.config = config
    app.state.metrics = metrics
    app.state.api_keys = [key.get_secret_value().encode() for key in config.server.api_keys]
    return app


OPENAPI_PATH = "/openapi.json"


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_schema())


#: The POST endpoints: summary, request body and answer (None: the upstream's own JSON or a stream).
_ENDPOINTS: dict[str, tuple[str, type[BaseModel], type[BaseModel] | None]] = {
    routes.CHAT_PATH: ("Route a chat completion to the strong or weak model", ChatCompletionRequest, None),
    routes.ROUTE_PATH: ("The routing decision alone, with no model call", RouteRequest, RouteResponse),
}
#: The GET endpoints: summary, media type and schema of the answer.
_READS: dict[str, tuple[str, str, dict[str, Any]]] = {
    routes.MODELS_PATH: ("The model strings and upstream models it serves", "application/json", {}),
    routes.STATUS_PATH: ("Online control: thresholds, realized shares, drift", "application/json", {}),
    "/health": ("The routers it has loaded", "application/json", {}),
    "/metrics": ("Prometheus metrics", "text/plain", {"type": "string"}),
}
_ERROR_STATUSES = (400, 401, 404, 413, 429, 502, 503, 504)


def openapi_schema() -> dict[str, Any]:
    """The server's OpenAPI 3.1 schema: every endpoint, the routing endpoints' request bodies and
    answers from the same pydantic models that validate them, and their OpenAI-shaped errors."""
    components: dict[str, Any] = {}
    documented: list[type[BaseModel]] = [ErrorResponse]
    for _, body, answer in _ENDPOINTS.values():
        documented += [body] if answer is None else [body, answer]
    for model in documented:
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    error = {
        "description": "OpenAI-shaped error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    paths: dict[str, Any] = {}
    for path, (summary, media_type, answer_schema) in _READS.items():
        ok = {"description": "Successful Response", "content": {media_type: {"schema": answer_schema}}}
        get = {"summary": summary, "operationId": _operation_id(path), "responses": {"200": ok}}
        paths[path] = {"get": get}
    # A model id may hold "/", which the route's ":path" takes and OpenAPI's {model} cannot say.
    parameter = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
    paths[routes.MODELS_PATH + "/{model}"] = {
        "get": {
            "summary": "The object /v1/models lists for one model string or upstream model",
            "operationId": "v1_models_retrieve",
            "parameters": [parameter],
            "responses": {"200": paths[routes.MODELS_PATH]["get"]["responses"]["200"], "404": error},
        }
    }
    for path, (summary, body, answer) in _ENDPOINTS.items():
        # A completion is the upstream's own JSON (any object); a stream is server-sent events.
        answered = {"$ref": f"#/components/schemas/{answer.__name__}"} if answer else {"type": "object"}
        ok = {"description": "Successful Response", "content": {"application/json": {"schema": answered}}}
        request = {"$ref": f"#/components/schemas/{body.__name__}"}
        paths[path] = {
            "post": {
                "summary": summary,
                "operationId": _operation_id(path),
                "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                "responses": {"200": ok, **{str(status): error for status in _ERROR_STATUSES}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "lmroute", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }


def _operation_id(path: str) -> str:
    return path.strip("/").replace("/", "_")


def _warm_up(routers: Mapping[str, Router]) -> None:
    for router in routers.values():
        router.score(["warm-up"])


def check_scoring(routers: Mapping[str, Router]) -> None:
    """ConfigError naming a router that cannot score (its embedder's key variable unset, its backend
    down): the app's warm-up would fail in uvicorn's start-up, a traceback (and a Ray Serve scoring
    replica's start with the bare error, naming no router)."""
    for name, router in routers.items():
        try:
            router.score(["warm-up"])
        except Exception as exc:
            what = str(exc) if isinstance(exc, LmrouteError) else f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"router {name!r} cannot score a prompt: {what}") from exc


def serve(
    config: ServeConfig, *, routers: Mapping[str, Router] | None = None, data_dir: str | Path | None = None
) -> None:
    """Run the server with uvicorn until interrupted; in-flight requests get time to finish.

    Routers are loaded (and score a first prompt), the API-key variables and the port checked before
    uvicorn starts, so that a bad config is one clear error rather than a failed application
    start-up; a configured threshold that routes (nearly) everything one way is a warning
    (:mod:`lmroute.serving.thresholds`, whose public sample is looked up in ``data_dir`` and by the
    rest of lmroute's data rule). With
    ``server.workers`` > 1 each worker process loads the routers of ``config.routers`` again.
    The process's allocator keeps one arena (:mod:`lmroute._malloc`), before any thread starts.
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    for upstream in (config.strong, config.weak, *config.models):
        upstream.api_key()
    workers = config.server.workers
    if routers is not None and workers > 1:
        raise ConfigError(
            "several workers load their routers themselves: give them as names or directories "
            "(config.routers), not as router objects"
        )
    if workers > 1 and config.control.state_file is not None:
        # Every worker holds its own control state (controllers, drift, conversations): several
        # would overwrite one another's saves of the same file.
        raise ConfigError(
            "control.state_file needs a single server process: each of --workers keeps its own "
            "control state (serve with --workers 1, or remove control.state_file from --config)"
        )
    if workers > 1 and config.control.conversations.enabled:
        log.warning(
            "each of the %d workers remembers its own conversations: a turn answered by another "
            "worker than the last one is scored afresh",
            workers,
        )
    check_control_files(config.control)
    use_one_arena()
    if routers is None:
        routers = load_routers(config.routers)
    check_vocabulary(config.models, routers)
    from lmroute.serving.thresholds import check_threshold_names, threshold_warnings

    check_threshold_names(config, routers)
    check_scoring(routers)
    for warning in threshold_warnings(config, routers, data_dir=data_dir):
        log.warning("%s", warning)
    if config.server.host not in _LOOPBACK and not config.server.api_keys:
        log.warning(
            "serving on %s without API keys: anyone who can reach this port can spend your upstream "
            "credits (set --api-key or %s)",
            config.server.host,
            SERVER_KEYS_ENV,
        )
    _check_port(config.server.host, config.server.port)
    level = config.server.log_level
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["lmroute"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    options: dict[str, Any] = {
        "host": config.server.host,
        "port": config.server.port,
        "log_level": level,
        "log_config": log_config,
        "access_log": level in ("info", "debug"),
        "timeout_graceful_shutdown": config.server.graceful_shutdown,
    }
    if workers == 1:
        uvicorn.run(create_app(config, routers=routers), **options)
        return
    del routers  # loaded to check the config; every worker loads its own
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lmroute-metrics-") as metrics_dir:
        variables = {_WORKER_CONFIG_ENV: worker_config_json(config), _METRICS_DIR_ENV: metrics_dir}
        with _environment(variables):
            uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **options)


def worker_app() -> Starlette:
    """The app of one worker process of :func:`serve` (uvicorn's factory, called in each worker).

    Workers start afresh rather than forking the serving process, so the config comes from the
    environment that :func:`serve` set for them.
    """
    use_one_arena()
    config = ServeConfig.model_validate_json(os.environ[_WORKER_CONFIG_ENV])
    return create_app(config, metrics_dir=os.environ.get(_METRICS_DIR_ENV))


def worker_config_json(config: ServeConfig) -> str:
    """``config`` as JSON for the workers, the server's own keys included (JSON hides secrets)."""
    data = config.model_dump(mode="json")
    data["server"]["api_keys"] = [key.get_secret_value() for key in config.server.api_keys]
    if config.models:
        # A tier taken from models: is dumped as a bare upstream, without its serving name (which
        # names it in the per-model counters): left out, the worker takes it from models: again.
        for tier, derived in zip(("strong", "weak"), dearest_and_cheapest(config.models), strict=True):
            if getattr(config, tier) == derived:
                del data[tier]
    return json.dumps(data)


@contextlib.contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in this process's environment (which new workers inherit), then restored."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_port(host: str, port: int) -> None:
    """ConfigError when ``host:port`` cannot be bound (uvicorn would print several lines and exit 3)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is free, one listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server on it? choose "
                "another with `lmroute serve --port`)"
            ) from None
