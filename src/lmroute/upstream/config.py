"""One OpenAI-compatible model endpoint as the server and the labelling runner call it.

An upstream is a base URL, the model name sent to it, and the *name* of the environment variable
holding its API key (keys never go in files)::

    base_url: https://api.openai.com/v1
    model: gpt-4o
    api_key_env: OPENAI_API_KEY
    timeout: 60
    price: {input_per_1m: 2.5, output_per_1m: 10, output_tokens: 300}   # optional

API keys are read from the environment when a client is made, never stored in a config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmroute._keys import key_from_env
from lmroute._yaml import validation_problems
from lmroute.exceptions import ConfigError
from lmroute.pricing import Price

#: The OpenAI API, used when a model is given by name only (``strong="gpt-4o"``).
OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_KEY_ENV = "OPENAI_API_KEY"


class UpstreamConfig(BaseModel):
    """One OpenAI-compatible model endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)
    #: The model name sent upstream (and reported back in ``response.model``).
    model: str = Field(min_length=1)
    #: Name of the environment variable holding the API key; None when the endpoint needs none.
    api_key_env: str | None = None
    #: Seconds to wait for a connection or for the next bytes of an answer.
    timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    #: Further attempts after a connection error, timeout, 408/409/429 or 5xx.
    max_retries: int = Field(default=2, ge=0, le=10)
    #: Seconds before the first retry; doubled for each further one (with jitter).
    retry_backoff: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    #: List prices, for estimated spend (metrics, spend targets); None when unknown.
    price: Price | None = None

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:  # a malformed IPv6 address
            host = None
        if not host:  # "http://" alone would fail only at the first request, as "cannot reach"
            raise ValueError(f"base_url needs a host, such as http://127.0.0.1:8080/v1, got {value!r}")
        try:
            parts.port  # noqa: B018 (read to check it: every request would raise on it)
        except ValueError:
            raise ValueError(f"base_url has a malformed port (0 to 65535), got {value!r}") from None
        if parts.query or parts.fragment:  # "/chat/completions" is appended to the base URL
            raise ValueError(f"base_url cannot carry a query (?...) or a fragment (#...), got {value!r}")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        # A key pasted where its variable's name belongs would end up in files and logs.
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError("api_key_env is the NAME of an environment variable (e.g. OPENAI_API_KEY)")
        return value

    def api_key(self) -> str | None:
        """The API key from the environment; ConfigError when the named variable is unset."""
        if self.api_key_env is None:
            return None
        where = f"environment variable {self.api_key_env} (api_key_env of model {self.model!r})"
        key = key_from_env(self.api_key_env, where)
        if not key:
            raise ConfigError(f"{where} is not set")
        return key


def openai_model(name: str) -> dict[str, str]:
    """The settings of an upstream named by a bare model name: that model on the OpenAI API."""
    return {"base_url": OPENAI_BASE_URL, "model": name, "api_key_env": OPENAI_KEY_ENV}


def upstream_from(value: str | Mapping[str, Any] | UpstreamConfig) -> UpstreamConfig:
    """An upstream from a config, a mapping, or a bare model name served by the OpenAI API."""
    if isinstance(value, UpstreamConfig):
        return value
    if isinstance(value, str):
        value = openai_model(value)
    if not isinstance(value, Mapping):
        raise ConfigError(
            "an upstream is a mapping with base_url, model and api_key_env, or a model name of the "
            f"OpenAI API; got {type(value).__name__}"
        )
    try:
        return UpstreamConfig.model_validate(dict(value))
    except ValidationError as exc:
        raise ConfigError(f"invalid upstream: {validation_problems(exc)}") from None
