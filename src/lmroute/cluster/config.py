"""How lmroute runs on Ray: the cluster's address and each deployment's replicas, from a YAML file.

::

    address: auto                  # a running cluster (ray start --head); omit for a local one
    ingress:                       # the HTTP deployment: auth, parsing, upstream calls, fallback
      num_replicas: 2
    scorer:                        # the routers: Ray Serve batches prompts across ingress replicas
      autoscaling: {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 32}
      max_batch_size: 64
      batch_wait_timeout_s: 0.002

``num_replicas`` and ``autoscaling`` exclude each other; ``autoscaling`` is Ray Serve's own
``autoscaling_config`` and is passed to it as written (checked against it before Ray starts:
:func:`lmroute.cluster.serve.check_autoscaling`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmroute._keys import key_from_env
from lmroute._yaml import read_yaml, validation_problems
from lmroute.embeddings.openai import key_variable
from lmroute.exceptions import ConfigError
from lmroute.routers.base import CONFIG_FILE, read_manifest


class DeploymentConfig(BaseModel):
    """Replicas and resources of one Ray Serve deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A fixed number of replicas (used when ``autoscaling`` is not given).
    num_replicas: int = Field(default=1, ge=1)
    #: Ray Serve's ``autoscaling_config`` (min_replicas, max_replicas, target_ongoing_requests, ...).
    autoscaling: dict[str, Any] | None = None
    #: Requests one replica works on at once; more wait in Ray Serve's queue.
    max_ongoing_requests: int = Field(default=256, ge=1)
    #: CPUs Ray reserves per replica (fractions share a core).
    num_cpus: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> DeploymentConfig:
        if self.autoscaling is not None and "num_replicas" in self.model_fields_set:
            raise ValueError("give num_replicas or autoscaling, not both")
        return self

    def options(self) -> dict[str, Any]:
        """Keyword arguments of Ray Serve's ``Deployment.options``."""
        scale: dict[str, Any] = (
            {"autoscaling_config": self.autoscaling}
            if self.autoscaling is not None
            else {"num_replicas": self.num_replicas}
        )
        return {
            **scale,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus},
        }


class ScorerConfig(DeploymentConfig):
    """The scoring deployment: replicas, and how Ray Serve batches prompts across callers."""

    max_batch_size: int = Field(default=64, ge=1)
    batch_wait_timeout_s: float = Field(default=0.002, ge=0)


class RayConfig(BaseModel):
    """Where and how lmroute runs on Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``ray.init``'s address: ``auto`` (the cluster this machine belongs to), ``ray://host:10001``
    #: or ``host:6379``; None starts a local cluster in this process.
    address: str | None = None
    #: The Ray Serve application's name (one lmroute server per cluster: it serves at the proxy's /).
    app_name: str = "lmroute"
    ingress: DeploymentConfig = DeploymentConfig()
    scorer: ScorerConfig = ScorerConfig()
    #: Times a scoring call is sent again when its replica died or became unreachable.
    scoring_retries: int = Field(default=3, ge=0)


def load_ray_config(path: str | Path | None = None, **overrides: Any) -> RayConfig:
    """The :class:`RayConfig` of a YAML file (defaults without one), ``overrides`` on top (None ignored)."""
    data = read_yaml(path, what=f"Ray config {path}") if path is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Ray config {path}: expected a mapping of settings, found {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"Ray config {path or '(defaults)'}: {validation_problems(exc)}") from None


def absolute_router_path(spec: str) -> str:
    """``spec`` (a router name or directory) with a directory made absolute from this folder: Ray's
    workers run in the folder where ``ray start`` ran, and would look for it there."""
    if "/" in spec or (Path(spec) / CONFIG_FILE).is_file():  # a directory, as load_router tells
        return str(Path(spec).absolute())
    return spec


def embedder_keys(specs: Iterable[str]) -> dict[str, str]:
    """The API keys, by variable, of the embedders that the routers of ``specs`` (names or
    directories, as ``--routers``: ``alias=`` allowed) call, from this environment: Ray's workers
    and replicas do not have the command's, and would call the endpoint without its key.
    ConfigError naming a variable a key is needed from and that is unset here. Only router
    directories on this machine are looked into (a registered name's shipped router embeds here)."""
    keys: dict[str, str] = {}
    for spec in specs:
        alias, sep, path = spec.partition("=")
        directory = Path(path if sep else alias)
        if not (directory / CONFIG_FILE).is_file():
            continue
        for embedder in _embedders(read_manifest(directory)["config"]):
            found = key_variable(embedder)
            if found is None:
                continue
            variable, needed = found
            key = key_from_env(variable, f"environment variable {variable}")
            if key:
                keys[variable] = key
            elif needed:
                raise ConfigError(
                    f"router {directory} embeds prompts with {embedder.partition('?')[0]}, whose API key "
                    f"is read from environment variable {variable}, which is not set here: set it where "
                    "the command runs (Ray's workers are given it from there)"
                )
    return keys


def _embedders(config: object) -> Iterator[str]:
    """The embedder names of a router's config, an ensemble's members' included."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "embedder" and isinstance(value, str):
                yield value
            else:
                yield from _embedders(value)
    elif isinstance(config, list):
        for value in config:
            yield from _embedders(value)
