"""The models a labelling run calls, and the async function that calls them.

A model is an OpenAI-compatible upstream (``base_url``, ``model``, ``api_key_env``, ``timeout``:
the fields of :class:`~lmroute.upstream.UpstreamConfig`) plus the name
it gets in battles and the request fields it is sampled with. API keys are read from the
environment variable ``api_key_env`` names, never from a file or a flag.

The runner calls upstreams through a :class:`ChatCaller`: any async callable taking a model and
chat messages and returning a :class:`ChatResult`. :class:`UpstreamCaller`, the default, goes
through :class:`~lmroute.upstream.Upstream` (as the server does); tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmroute._yaml import validation_problems
from lmroute.exceptions import ConfigError, UpstreamError
from lmroute.pricing import reported_tokens

if TYPE_CHECKING:
    from lmroute.upstream import ClientFactory, Upstream, UpstreamConfig


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
    #: Seconds to wait for one answer.
    timeout: float = Field(default=120.0, gt=0)
    #: Request body fields (temperature, max_tokens, seed, a server's own such as llama.cpp's
    #: ``grammar``...) over the run's defaults.
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_upstream(self) -> LabelModel:
        self.upstream  # noqa: B018  (validates base_url and api_key_env as the server does)
        return self

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    @property
    def upstream(self) -> UpstreamConfig:
        """The upstream config of this endpoint. Retries are the runner's, so none here."""
        from lmroute.upstream import upstream_from

        return upstream_from(
            {
                "base_url": self.base_url,
                "model": self.upstream_model,
                "api_key_env": self.api_key_env,
                "timeout": self.timeout,
                "max_retries": 0,
            }
        )

    def api_key(self) -> str | None:
        """The API key from the environment; ConfigError when the named variable is unset."""
        return self.upstream.api_key()


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
        raise ConfigError(f"model {what!r}: {validation_problems(exc, root='model')}") from None


def read_upstreams(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``name -> {base_url, model, api_key_env, params}`` mapping of a YAML upstreams file
    (top level, or under an ``upstreams:`` key)."""
    from lmroute._yaml import read_yaml

    data = read_yaml(path, what=f"upstreams file {path}")
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


class UpstreamCaller:
    """Calls OpenAI-compatible endpoints through :class:`~lmroute.upstream.Upstream`, one per
    endpoint and model; ``params`` are sent as request body fields as they are."""

    def __init__(self, *, client_factory: ClientFactory | None = None) -> None:
        self.client_factory = client_factory
        self._upstreams: dict[tuple[str, str, str | None, float], Upstream] = {}

    def _upstream(self, model: LabelModel) -> Upstream:
        from lmroute.upstream import Upstream, make_client

        key = (model.base_url, model.upstream_model, model.api_key_env, model.timeout)
        if key not in self._upstreams:
            config = model.upstream
            self._upstreams[key] = Upstream(config, (self.client_factory or make_client)(config))
        return self._upstreams[key]

    async def __call__(
        self, model: LabelModel, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]
    ) -> ChatResult:
        from lmroute.upstream import content_text

        data = await self._upstream(model).complete({**params, "messages": list(messages)})
        try:
            content = data["choices"][0]["message"]["content"]
        except (IndexError, KeyError, TypeError):
            raise UpstreamError(
                f"{model.name} answered without a message ({str(data)[:120]})",
                status_code=200,
                model=model.name,
            ) from None
        # A count that is none (absent, "n/a", negative) is 0, as for a reply without usage: the
        # answer was paid for and is kept.
        usage = data.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        return ChatResult(
            # A list of parts (a reasoning model's thinking, then its answer) was stored, graded and
            # judged as its Python repr: "[{'type': 'text', 'text': ...}]".
            text=content_text(content),
            prompt_tokens=reported_tokens(usage.get("prompt_tokens")) or 0,
            completion_tokens=reported_tokens(usage.get("completion_tokens")) or 0,
        )

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        for upstream in self._upstreams.values():
            await upstream.aclose()
        self._upstreams.clear()
