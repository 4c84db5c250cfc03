"""Settings of the upstream models and of the server, from a YAML file and/or command-line flags.

A config names the strong and the weak model, each an OpenAI-compatible endpoint
(:class:`~lmroute.upstream.config.UpstreamConfig`)::

    strong:
      base_url: https://api.openai.com/v1
      model: gpt-4o
      api_key_env: OPENAI_API_KEY      # the *name* of the variable; keys never go in files
    weak:
      base_url: http://127.0.0.1:8080/v1
      model: llama-3.1-8b-instruct     # api_key_env omitted: the server needs no key
      timeout: 30
    routers: [mf, my_router=./checkpoints/mf-custom]
    fallback: true
    route_on: last_user                # or last_user_with_system, user_turns, conversation, ...
    on_router_error: strong            # a router that raises: strong, weak or error (503)
    thresholds: {mf: 0.52}             # advertised in /v1/models; any threshold is accepted
    control: {calibration_prompts: my_traffic.jsonl, state_file: control.json}   # target modes,
                                       # drift, conversations (lmroute.control.config)
    server: {host: 127.0.0.1, port: 6060, workers: 1, max_request_bytes: 1048576, max_messages: 2048,
             ui: true}

It may instead (or as well) list N priced models under ``models:`` (:mod:`lmroute.serving.fleet`),
routed among by ``router-<router>-lambda-<value>`` and ``router-<router>-quality-<value>``; without
``strong``/``weak`` sections the dearest of them is the strong model and the cheapest the weak one.

API keys are read from the environment when a client is made, never stored in a config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from lmroute._yaml import validation_problems
from lmroute.control.config import ControlConfig
from lmroute.data.conversations import DEFAULT_ROUTE_ON, RouteOn
from lmroute.exceptions import ConfigError
from lmroute.serving.fleet import FleetModel, dearest_and_cheapest, fleet_models
from lmroute.upstream.config import UpstreamConfig, openai_model, upstream_from

#: Environment variable with the server's accepted API keys, comma-separated.
SERVER_KEYS_ENV = "LMROUTE_API_KEYS"

OnRouterError = Literal["strong", "weak", "error"]


class ServerConfig(BaseModel):
    """Where and how ``lmroute serve`` listens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Loopback by default: exposing the server is an explicit choice.
    host: str = "127.0.0.1"
    port: int = Field(default=6060, ge=0, le=65535)
    #: Requests with a larger body are refused with 413.
    max_request_bytes: int = Field(default=1 << 20, gt=0)
    #: Requests with more messages are refused with 400 (OpenAI's own API takes at most 2048).
    max_messages: int = Field(default=2048, gt=0)
    #: Accepted bearer keys; empty means no authentication. From --api-key or LMROUTE_API_KEYS only.
    api_keys: tuple[SecretStr, ...] = ()
    #: Seconds without an event after which a stream sends an SSE comment, so that an idle timeout
    #: on the way (a proxy's, a client's) does not cut a model that thinks mid-answer; 0: never.
    stream_heartbeat: float = Field(default=15.0, ge=0, allow_inf_nan=False)
    #: Seconds in-flight requests get to finish on shutdown.
    graceful_shutdown: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    #: Server processes sharing the port (uvicorn's workers), each with its own routers; more than
    #: one needs routers given by name or directory, not as objects.
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    #: Serve the web console at /ui (static files; they hold no key or upstream address).
    ui: bool = True

    @field_validator("api_keys")
    @classmethod
    def _no_empty_key(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        # An unset variable (--api-key "$KEY") made a key "", which "Authorization: Bearer" matched.
        if any(not key.get_secret_value().strip() for key in value):
            raise ValueError(
                "an API key is empty (an unset variable?): a request with 'Authorization: Bearer' and no "
                "key would be let in"
            )
        return value

    @field_validator("host")
    @classmethod
    def _named_host(cls, value: str) -> str:
        # uvicorn binds "" to every interface: an unset template variable would expose the server.
        if not value.strip():
            raise ValueError(
                "no address given; name one to listen on (127.0.0.1: this machine only, 0.0.0.0: "
                "every interface)"
            )
        return value


class ServeConfig(BaseModel):
    """Everything the controller and the server need: upstreams, routers, routing and batching."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strong: UpstreamConfig
    weak: UpstreamConfig
    #: Router names or saved router directories, optionally ``alias=directory``.
    routers: tuple[str, ...] = Field(default=("mf",), min_length=1)
    #: On a connection error, timeout, 5xx or malformed answer, ask the other model.
    fallback: bool = True
    #: Seconds a model is skipped (its failure answered at once, so fallback is immediate) after a
    #: request to it failed every attempt; 0: never skip (lmroute.upstream.breaker).
    circuit_breaker: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    #: What of a conversation the router scores (:mod:`lmroute.data.conversations`).
    route_on: RouteOn = DEFAULT_ROUTE_ON
    #: When a router raises (a bug, its embedding backend down): send the request to this model,
    #: or answer 503 ("error").
    on_router_error: OnRouterError = "strong"
    #: Per-router thresholds advertised in /v1/models (e.g. from ``lmroute calibrate``); at start-up
    #: the server warns about one that routes (nearly) everything one way (lmroute.serving.thresholds).
    #: Strict numbers, at least one a router: `true` would read as 1.0 and `[]` hid the router from
    #: /v1/models and the console.
    thresholds: dict[str, Annotated[tuple[StrictFloat, ...], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    #: Prompts that start-up check uses (a file as ``lmroute calibrate --prompts`` reads; your traffic
    #: is best); default: the Arena-Hard sample, if a data folder or the user cache holds it.
    calibration_prompts: str | None = None
    #: Most prompts scored in one call of a router.
    batch_size: int = Field(default=64, ge=1)
    #: Milliseconds an idle router waits for more prompts before scoring a batch.
    batch_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    #: Threads that run router scoring (scoring never runs on the event loop).
    scoring_threads: int = Field(default=1, ge=1, le=64)
    #: Target modes (share, spend), drift detection, conversations and their state file.
    control: ControlConfig = Field(default_factory=ControlConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    #: N priced models to route among (:mod:`lmroute.serving.fleet`); empty: two-model routing only.
    models: tuple[FleetModel, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _tiers_from_models(cls, value: Any) -> Any:
        # A config of N models serves the two-model names too: dearest = strong, cheapest = weak.
        if (
            not isinstance(value, Mapping)
            or not value.get("models")
            or ("strong" in value and "weak" in value)
        ):
            return value
        strong, weak = dearest_and_cheapest(fleet_models(value["models"]))
        return {"strong": strong, "weak": weak, **value}

    @field_validator("models")
    @classmethod
    def _fleet(cls, value: tuple[FleetModel, ...]) -> tuple[FleetModel, ...]:
        return fleet_models(value) if value else value

    @field_validator("strong", "weak", mode="before")
    @classmethod
    def _model_by_name(cls, value: Any) -> Any:
        return upstream_from(value) if isinstance(value, str) else value

    @field_validator("thresholds", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (v,) if isinstance(v, (int, float)) else v for k, v in value.items()}
        return value

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, value: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        for name, thresholds in value.items():
            for t in thresholds:
                if not 0.0 <= t <= 1.0:
                    raise ValueError(f"threshold {t} of router {name!r} is outside [0, 1]")
        return value


def build_config(
    path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    api_keys: Sequence[str] | None = None,
    upstream: Mapping[str, Any] | None = None,
) -> ServeConfig:
    """A validated :class:`ServeConfig` from a YAML file (optional) with ``overrides`` on top.

    ``overrides`` uses the file's keys; nested sections (``strong``, ``weak``, ``control``, ``server``) are
    merged key by key, and None values are ignored, so command-line flags map onto it directly.
    ``upstream`` (``timeout``, ``max_retries``; None values ignored) is set on every upstream: the
    strong and the weak model and each of ``models:``.
    The server's own API keys come from ``api_keys`` or ``$LMROUTE_API_KEYS``, never from the file.
    """
    data = _read_yaml(path) if path is not None else {}
    where = f" in {path}" if path else ""
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if v is not None}
            if value:
                data[key] = {**_section(data, key, where), **value}
        elif value is not None:
            data[key] = value
    settings = {k: v for k, v in (upstream or {}).items() if v is not None}
    if settings:
        # Only on the tiers the config names: those it leaves out are taken from models:, which get
        # the settings too (a tier made of them alone would lack its base_url and model).
        for tier in ("strong", "weak"):
            if tier in data:
                data[tier] = {**_section(data, tier, where), **settings}
        if isinstance(data.get("models"), list):
            data["models"] = [{**m, **settings} if isinstance(m, Mapping) else m for m in data["models"]]
    keys = list(api_keys or ()) or split_keys(os.environ.get(SERVER_KEYS_ENV, ""))
    if keys:
        data["server"] = {**_section(data, "server", where), "api_keys": tuple(keys)}
    for tier in ("strong", "weak"):
        if tier not in data and not data.get("models"):
            where = f"{path} has no {tier!r} section" if path else f"no {tier} model given"
            raise ConfigError(
                f"{where}: name the {tier} model with base_url, model and api_key_env "
                f"(or --{tier}-base-url/--{tier}-model)"
            )
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid serving config{where}: {validation_problems(exc)}") from None


def _section(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """The file's ``key`` section as a mapping that flags can be merged into: a bare model name
    (``strong: gpt-4o``) is that model on the OpenAI API."""
    value = data.get(key, {})
    if isinstance(value, str) and key in ("strong", "weak"):
        return openai_model(value)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"invalid serving config{where}: {key}: expected a mapping of settings, got "
            f"{'nothing' if value is None else type(value).__name__}"
        )
    return value


def _read_yaml(path: str | Path) -> dict[str, Any]:
    from lmroute._yaml import read_yaml

    data = read_yaml(path, what=f"config {path}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping with strong:, weak:, routers: ...")
    _refuse_keys(data, str(path))
    return data


def _refuse_keys(data: Any, where: str) -> None:
    """Keys in files leak through backups, repositories and logs: only variable names are allowed."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key in ("api_key", "api_keys"):
                raise ConfigError(
                    f"{where}: {key!r} is not allowed in a config file. Put the key in an environment "
                    "variable and name it with api_key_env (server keys: `lmroute serve --api-key` or "
                    f"{SERVER_KEYS_ENV})"
                )
            _refuse_keys(value, where)
    elif isinstance(data, list):  # the entries of models:
        for item in data:
            _refuse_keys(item, where)


def split_keys(text: str) -> list[str]:
    """The keys of a comma-separated list (``$LMROUTE_API_KEYS``), empty entries left out."""
    return [key.strip() for key in text.split(",") if key.strip()]
