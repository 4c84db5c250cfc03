"""The models a labelling run calls, and the one async function that calls them.

A model is an OpenAI-compatible upstream (``base_url``, ``model``, ``api_key_env``: the same shape
as the serving upstreams) plus the name it gets in battles and the request parameters it is
sampled with. API keys are read from the environment variable ``api_key_env`` names, never from
a file or a flag.

The runner calls upstreams through a :class:`ChatCaller`: any async callable taking a model and
chat messages and returning a :class:`ChatResult`. :class:`OpenAICaller` is the default; tests
pass fakes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmroute.exceptions import ConfigError, UpstreamError, UpstreamTimeoutError


class LabelModel(BaseModel):
    """One model to collect responses from (or the judge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The model's name in responses and battles (what ``lmroute train`` learns about).
    name: str = Field(min_length=1)
    base_url: str = Field(min_length=1)
    #: The model id sent upstream; defaults to ``name``.
    model: str = ""
    #: Environment variable holding the API key; None for servers that need none.
    api_key_env: str | None = None
    #: Request parameters (temperature, max_tokens, seed, extra_body...) over the run's defaults.
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    def api_key(self) -> str | None:
        """The API key from the environment; ConfigError when the named variable is unset."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"model {self.name}: environment variable {self.api_key_env} is not set")
        return key


def parse_model_spec(spec: str, upstreams: Mapping[str, Mapping[str, Any]] | None = None) -> LabelModel:
    """A model from ``NAME`` (an entry of the upstreams file) or inline ``key=value,...``
    (``name=gpt4o,base_url=https://api.openai.com/v1,model=gpt-4o,api_key_env=OPENAI_API_KEY``)."""
    if "=" in spec:
        fields: dict[str, Any] = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"model spec {spec!r}: expected key=value pairs separated by commas")
            fields[key.strip()] = value.strip()
        if "api_key" in fields:
            raise ConfigError("API keys are read from the environment: use api_key_env=VARIABLE")
        return _validated(fields, spec)
    if not upstreams or spec not in upstreams:
        known = ", ".join(sorted(upstreams or {})) or "none (no --upstreams file)"
        raise ConfigError(
            f"unknown model {spec!r}; upstreams file has: {known}. Or give it inline: "
            "name=NAME,base_url=URL[,model=ID,api_key_env=VAR]"
        )
    entry = dict(upstreams[spec])
    entry.setdefault("name", spec)
    return _validated(entry, spec)


def _validated(fields: Mapping[str, Any], what: str) -> LabelModel:
    if "api_key" in fields:
        raise ConfigError(f"{what}: API keys are read from the environment: use api_key_env: VARIABLE")
    try:
        return LabelModel.model_validate(dict(fields))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"model {what!r}: {problems}") from None


def read_upstreams(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``name -> {base_url, model, api_key_env, params}`` mapping of a YAML upstreams file
    (top level, or under an ``upstreams:`` key)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read upstreams file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"upstreams file {path} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("upstreams"), dict):
        data = data["upstreams"]
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"upstreams file {path} must map each name to {{base_url, model, api_key_env}}")
    return data


@dataclass(frozen=True)
class ChatResult:
    """One finished completion."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class ChatCaller(Protocol):
    """Makes one chat completion; raises :class:`UpstreamError` (``status_code`` set when known)."""

    async def __call__(
        self, model: LabelModel, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]
    ) -> ChatResult: ...


class OpenAICaller:
    """Calls OpenAI-compatible endpoints with the ``openai`` SDK, one async client per endpoint.

    The SDK's own retries are off: the runner retries, so that it can count and budget each try.
    """

    def __init__(self, *, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._clients: dict[tuple[str, str | None], Any] = {}

    def _client(self, model: LabelModel):
        from openai import AsyncOpenAI

        key = (model.base_url, model.api_key_env)
        if key not in self._clients:
            # The SDK insists on a key; local servers ignore this placeholder.
            api_key = model.api_key() or "not-needed"
            self._clients[key] = AsyncOpenAI(
                base_url=model.base_url, api_key=api_key, timeout=self.timeout, max_retries=0
            )
        return self._clients[key]

    async def __call__(
        self, model: LabelModel, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]
    ) -> ChatResult:
        import openai

        client = self._client(model)
        try:
            reply = await client.chat.completions.create(
                model=model.upstream_model, messages=list(messages), **params
            )
        except openai.APITimeoutError:
            raise UpstreamTimeoutError(
                f"{model.name} did not answer within {self.timeout:g}s", model=model.name
            ) from None
        except openai.APIStatusError as exc:
            raise UpstreamError(
                f"{model.name} answered HTTP {exc.status_code}: {_short(exc.message)}",
                status_code=exc.status_code,
                model=model.name,
            ) from None
        except openai.APIConnectionError as exc:
            message = f"cannot reach {model.name} at {model.base_url}: {exc}"
            raise UpstreamError(message, model=model.name) from None
        if not reply.choices:
            raise UpstreamError(f"{model.name} returned no choices", model=model.name)
        text = reply.choices[0].message.content or ""
        usage = reply.usage
        return ChatResult(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
