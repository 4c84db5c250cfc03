"""lmroute's OpenAI-compatible server as a Ray Serve application: an ingress and a scoring deployment.

The **ingress** deployment runs the app of ``lmroute serve`` (:func:`lmroute.serving.app.create_app`:
the same routes, API keys, limits, errors, upstream calls, fallback and metrics); its routers are
:class:`RemoteRouter` stand-ins that score through the **scoring** deployment, which holds the real
routers and batches prompts across every ingress replica with Ray Serve's ``@serve.batch``. Ray
Serve's HTTP proxy is the one endpoint in front of all replicas; the replica counts and autoscaling
come from a :class:`~lmroute.cluster.config.RayConfig`.

When a scoring replica dies, the calls it held fail with Ray's ``RayActorError``; a remote router
sends them again (to a live replica, which Ray Serve picks) up to ``scoring_retries`` times and
counts each retry in ``lmroute_scoring_retries_total``, so a replica that is killed loses no request.

The control hub (target modes, drift, conversations) lives in each ingress replica, as in each
worker of ``lmroute serve --workers``: a state file therefore needs a single ingress replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.exceptions import RayServeException

from lmroute.cluster.config import RayConfig, absolute_router_path, embedder_keys
from lmroute.cluster.connect import init_ray
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError
from lmroute.registry import check_router_spec
from lmroute.routers.base import Router
from lmroute.serving.app import check_scoring, create_app, worker_config_json
from lmroute.serving.config import SERVER_KEYS_ENV, ServeConfig
from lmroute.serving.control import check_control_files
from lmroute.serving.fleet import check_vocabulary
from lmroute.serving.loading import held_here, load_routers, served_names
from lmroute.serving.thresholds import check_threshold_names, threshold_warnings
from lmroute.shrinkage import QualityShrinkage

log = logging.getLogger("lmroute.cluster")

#: Seconds a scoring call may take before the ingress gives up on it (and the router "fails").
SCORING_TIMEOUT = 60.0
#: Prompts in one scoring call at most (more are sent in several).
CALL_PROMPTS = 256

#: A scoring call's answer: a score and an embedding summary (None: none) per prompt.
Scored = tuple[list[float], list[list[float] | None]]


@serve.deployment(name="Scorer")
class Scorer:
    """The routers of ``specs`` (names or directories, as ``lmroute serve --routers``), scoring in
    batches that Ray Serve gathers from all callers."""

    def __init__(self, specs: Sequence[str], max_batch_size: int, batch_wait_timeout_s: float):
        # The routers' embedders record what they embed: the summaries go back with the scores, for
        # the ingress's drift detection (as lmroute serve takes them from its own routers).
        self.summaries = EmbeddingSummaries()
        self.routers = load_routers(specs, summaries=self.summaries)
        # An embedding router loads its model on its first call; one that cannot score fails the
        # replica's start, with lmroute serve's line naming it (the deployment's error).
        check_scoring(self.routers)
        # @serve.batch's wrapper has these setters; its type stub says it is the plain method.
        self.score.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self.score.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

    def describe(self) -> dict[str, dict[str, Any]]:
        """What the ingress's stand-ins must know of each router, by serving name: the models whose
        quality it predicts (empty: none), its quality shrinkage and its embedder's name (None: none)."""
        return {
            name: {
                "vocabulary": list(router.vocabulary),
                "embedder": router.embedder_name,
                "quality_shrinkage": None
                if router.quality_shrinkage is None
                else router.quality_shrinkage.to_dict(),
            }
            for name, router in self.routers.items()
        }

    async def predict_quality(self, name: str, prompts: list[str], models: list[str]) -> list[list[float]]:
        """``Router.predict_quality`` of router ``name`` (its quality shrinkage applied here)."""
        quality = await asyncio.to_thread(self.routers[name].predict_quality, prompts, models)
        return quality.tolist()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def score(self, calls: list[tuple[str, list[str]]]) -> list[Scored]:
        """Scores and embedding summaries per call of ``(router, prompts)``; one ``router.score``
        per router in the batch."""
        return await asyncio.to_thread(self._score_all, calls)

    def _score_all(self, calls: list[tuple[str, list[str]]]) -> list[Scored]:
        results: list[Scored] = [([], []) for _ in calls]
        for name in {name for name, _ in calls}:
            mine = [i for i, (n, _) in enumerate(calls) if n == name]
            prompts = [p for i in mine for p in calls[i][1]]
            router = self.routers[name]
            scores = router.score(prompts).tolist()
            # Taken once per distinct prompt: a prompt sent by two callers in one batch was embedded once.
            taken = {p: self.summaries.take(router.embedder_name, p) for p in dict.fromkeys(prompts)}
            summaries = [None if (s := taken[p]) is None else s.tolist() for p in prompts]
            start = 0
            for i in mine:
                end = start + len(calls[i][1])
                results[i] = (scores[start:end], summaries[start:end])
                start = end
        return results


class RemoteRouter(Router):
    """A router of the scoring deployment, seen from an ingress replica: ``score`` and
    ``predict_quality`` (for the models of ``vocabulary``, the N-model modes) call it; its
    ``quality_shrinkage`` is the real router's, for the server's start-up check of ``models:``.

    Calls are sent again when the replica that held them died (``retries`` times at most);
    ``on_retry`` is told of each.
    """

    name = "remote"

    def __init__(
        self,
        served_name: str,
        handle: Any,
        *,
        retries: int,
        on_retry: Callable[[], None],
        vocabulary: Sequence[str] = (),
        quality_shrinkage: QualityShrinkage | None = None,
        embedder_name: str | None = None,
        summaries: EmbeddingSummaries | None = None,
    ):
        super().__init__()
        self.served_name = served_name
        self._handle = handle
        self._retries = retries
        self._on_retry = on_retry
        self._vocabulary = tuple(vocabulary)
        # For the start-up check of the fleet's models (check_vocabulary); the scoring replica applies it.
        self.quality_shrinkage = quality_shrinkage
        self._embedder_name = embedder_name
        self._summaries = summaries

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    @property
    def embedder_name(self) -> str | None:
        return self._embedder_name

    def _score(self, prompts: list[str]) -> np.ndarray:
        scores: list[float] = []
        # A call's time grows with its prompts, and each call has SCORING_TIMEOUT: a calibration
        # sample of thousands goes in pieces (a request's batch is one).
        for start in range(0, len(prompts), CALL_PROMPTS):
            piece = prompts[start : start + CALL_PROMPTS]
            scored, summaries = self._call("score", (self.served_name, piece))
            scores += scored
            if self._summaries is not None and self._embedder_name is not None:
                kept = [(p, s) for p, s in zip(piece, summaries, strict=True) if s is not None]
                if kept:
                    texts = [p for p, _ in kept]
                    self._summaries.keep(self._embedder_name, texts, np.array([s for _, s in kept]))
        return np.asarray(scores, dtype=np.float64)

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray:
        # The scoring replica's router checks, clips and shrinks: not again here (shrunk qualities
        # are deliberately not clipped).
        quality = self._call("predict_quality", self.served_name, list(prompts), list(models))
        return np.asarray(quality, dtype=np.float64)

    def _call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import RayActorError

        for attempt in range(self._retries + 1):
            try:
                response = getattr(self._handle, method).remote(*args)
                return response.result(timeout_s=SCORING_TIMEOUT)
            except RayActorError as exc:
                if attempt == self._retries:
                    raise
                log.warning("scoring replica lost (%s); sending the call again", type(exc).__name__)
                self._on_retry()
        raise AssertionError("unreachable")


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """The lmroute app of a config (as JSON, server keys included), scoring through ``scorer``."""

    def __init__(self, config_json: str, scorer: Any, retries: int):
        config = ServeConfig.model_validate_json(config_json)
        # A scoring thread here only waits for the scorer: one per batch a router keeps in flight.
        self._config = config.model_copy(update={"scoring_threads": max(config.scoring_threads, 2)})
        self._scorer = scorer
        self._retries = retries

    async def __serve_build_asgi_app__(self) -> Any:
        from prometheus_client import Counter

        described = await self._scorer.describe.remote()
        summaries = EmbeddingSummaries()
        routers = {
            name: RemoteRouter(
                name,
                self._scorer,
                retries=self._retries,
                on_retry=self._count_retry,
                vocabulary=router["vocabulary"],
                quality_shrinkage=(
                    None
                    if router["quality_shrinkage"] is None
                    else QualityShrinkage.from_dict(router["quality_shrinkage"])
                ),
                embedder_name=router["embedder"],
                summaries=summaries,
            )
            for name, router in sorted(described.items())
        }
        app = create_app(self._config, routers=routers, summaries=summaries)
        # In the app's own registry, so that its /metrics shows it beside the server's metrics.
        self._retries_counter = Counter(
            "lmroute_scoring_retries",
            "Scoring calls sent again because their scoring replica died",
            registry=app.state.metrics.registry,
        )
        return app

    def _count_retry(self) -> None:
        self._retries_counter.inc()


def build_application(config: ServeConfig, ray_config: RayConfig) -> Any:
    """The Ray Serve application (``serve.run``'s argument) of a serving config."""
    config = _absolute_paths(config)
    # @serve.deployment made the classes Deployments (with .options); mypy still sees classes.
    scorer_deployment: Any = Scorer
    scorer_options = ray_config.scorer.options()
    # The routers' embedders' keys, as the ingress's upstream keys below.
    keys = embedder_keys(config.routers)
    if keys:
        scorer_options["ray_actor_options"]["runtime_env"] = {"env_vars": keys}
    scorer = scorer_deployment.options(**scorer_options).bind(
        list(config.routers), ray_config.scorer.max_batch_size, ray_config.scorer.batch_wait_timeout_s
    )
    ingress_options = ray_config.ingress.options()
    # What lmroute serve gives in-flight requests (a long stream) on shutdown; Ray Serve's default is 20 s.
    ingress_options["graceful_shutdown_timeout_s"] = config.server.graceful_shutdown
    # The upstream keys are read from the environment where the ingress runs: take this one's along.
    secrets = {
        name: os.environ[name]
        for name in {upstream.api_key_env for upstream in (config.strong, config.weak, *config.models)}
        if name and name in os.environ
    }
    if secrets:
        ingress_options["ray_actor_options"]["runtime_env"] = {"env_vars": secrets}
    ingress_deployment: Any = Ingress
    return ingress_deployment.options(**ingress_options).bind(
        worker_config_json(config), scorer, ray_config.scoring_retries
    )


def _absolute_paths(config: ServeConfig) -> ServeConfig:
    """``config`` with its router directories and control files made absolute from this folder:
    the replicas run in the folder where ``ray start`` ran, and would read them from there."""
    routers = []
    for spec in config.routers:
        alias, sep, path = spec.partition("=")
        routers.append(f"{alias}={absolute_router_path(path)}" if sep else absolute_router_path(alias))
    control = config.control.model_copy(
        update={
            name: str(Path(value).absolute())
            for name in ("state_file", "calibration_prompts")
            if (value := getattr(config.control, name))
        }
    )
    return config.model_copy(update={"routers": tuple(routers), "control": control})


def check_autoscaling(ray_config: RayConfig) -> None:
    """ConfigError naming the key when a deployment's ``autoscaling`` is not one Ray Serve takes:
    Ray Serve ignores a key it does not know (``max_replica: 8`` would leave its default of one
    replica) and refuses a bad value only when the application is built, with a traceback."""
    from ray.serve.config import AutoscalingConfig

    # __fields__: the pydantic.v1 models of older Ray releases.
    fields: Any = getattr(AutoscalingConfig, "model_fields", None) or AutoscalingConfig.__fields__
    for name, deployment in (("ingress", ray_config.ingress), ("scorer", ray_config.scorer)):
        if deployment.autoscaling is None:
            continue
        where = f"Ray config: {name}.autoscaling"
        for key in deployment.autoscaling:
            if key not in fields:
                known = ", ".join(fields)
                raise ConfigError(f"{where}.{key}: not a key of Ray Serve's autoscaling_config ({known})")
        try:
            AutoscalingConfig(**deployment.autoscaling)
        except ValueError as exc:  # pydantic's ValidationError (of pydantic.v1 in older Ray)
            invalid: Any = exc
            problems = []
            for error in invalid.errors():
                message = " ".join(error["msg"].split()).removeprefix("Value error, ")
                problems.append(f"{'.'.join([where, *map(str, error['loc'])])}: {message}")
            raise ConfigError("; ".join(problems)) from None
        except (ImportError, AttributeError) as exc:  # a policy function Ray Serve imports here
            if "policy" not in deployment.autoscaling:
                raise
            raise ConfigError(
                f"{where}.policy: its policy_function cannot be imported where the command runs, "
                f"which Ray Serve does to send it to the replicas: {exc}"
            ) from None


class _LoadedOnUse(Mapping[str, Router]):
    """The routers of ``specs`` that this machine holds, by their served names, each loaded here
    when first looked up: the threshold check loads only routers with thresholds, and only when it
    has a sample to score, the check of ``models:`` only when there are models (the replicas load
    their own)."""

    def __init__(self, specs: Sequence[str]):
        here = [s for s in specs if held_here(s)]
        names = served_names(here)
        assert names is not None  # every directory of ``here`` is on this machine
        self._specs = dict(zip(names, here, strict=True))
        self._loaded: dict[str, Router] = {}

    def __getitem__(self, name: str) -> Router:
        if name not in self._loaded:
            self._loaded.update(load_routers([self._specs[name]]))
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs  # Mapping's own would load the router to find out

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _check_proxy_address(host: str, port: int) -> None:
    """ConfigError when the cluster's Ray Serve listens elsewhere than ``host:port``: Ray Serve takes
    its HTTP address when it first starts on a cluster (it stays after an application is deleted,
    as a stopped ``lmroute serve --ray`` deletes its own), and ``serve.start`` keeps it, only logging
    that the new one is ignored: the server would answer at the old address, not the one given."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()  # serve.start has just started Ray Serve, or found it running
    assert client is not None  # without a running Ray Serve, it raises
    http = client.http_config
    if (http.host, http.port) != (host, port):
        raise ConfigError(
            f"Ray Serve already runs on this cluster at {http.host}:{http.port}, not {host}:{port} "
            f"(it keeps the address it first started with): serve with --host {http.host} --port "
            f"{http.port}, or shut Ray Serve down on the cluster first (`serve shutdown`)"
        )


def _check_app_name_free(app_name: str) -> None:
    """ConfigError when an application named ``app_name`` is on the cluster already: ``serve.run``
    would replace it in place, silently, and the command that deployed it would delete this one
    when it stops."""
    application = serve.status().applications.get(app_name)
    if application is not None:
        raise ConfigError(
            f"Ray Serve already has an application named {app_name} on this cluster "
            f"({application.status.value}; another `lmroute serve --ray`, or one whose command was killed): "
            f"stop that command, or delete the application with `serve delete {app_name}`"
        )


def _deploy_failure(app_name: str) -> str | None:
    """Why a deployment of ``app_name`` failed: the last line of the error its replicas raised
    (Ray keeps it as the text of a traceback), with the deployment's name; None if none failed."""
    from ray.serve.schema import DeploymentStatus

    application = serve.status().applications.get(app_name)
    for name, deployment in (application.deployments if application else {}).items():
        lines = deployment.message.strip().splitlines()
        if deployment.status == DeploymentStatus.DEPLOY_FAILED and lines:
            error = lines[-1].removeprefix("lmroute.exceptions.")
            return f"its {name} replicas failed to start: {error}"
    return None


def run_serve(
    config: ServeConfig,
    ray_config: RayConfig,
    *,
    blocking: bool = True,
    data_dir: str | Path | None = None,
) -> str:
    """Deploy lmroute on the Ray cluster of ``ray_config.address`` (a local one when None) and
    serve on ``config.server``'s host and port; returns the base URL. ``blocking`` waits until
    interrupted, then deletes the application. ``data_dir`` is where the start-up threshold check
    looks for the Arena-Hard sample, as in ``lmroute serve``."""
    check_autoscaling(ray_config)
    for upstream in (config.strong, config.weak, *config.models):
        upstream.api_key()  # ConfigError when its variable is unset here, as lmroute serve
    ingress = ray_config.ingress
    if config.control.state_file is not None and (ingress.autoscaling or ingress.num_replicas > 1):
        # Each ingress replica holds its own control state: several would overwrite one file.
        raise ConfigError(
            "control.state_file needs a single ingress replica: each keeps its own control state "
            "(set ingress: {num_replicas: 1} in --ray-config, or remove control.state_file from --config)"
        )
    if config.control.conversations.enabled and (ingress.autoscaling or ingress.num_replicas > 1):
        log.warning(
            "each ingress replica remembers its own conversations: a turn answered by another replica "
            "than the last one is scored afresh"
        )
    if config.server.host not in ("127.0.0.1", "localhost", "::1") and not config.server.api_keys:
        log.warning(
            "serving on %s without API keys (set --api-key or %s)", config.server.host, SERVER_KEYS_ENV
        )
    for spec in config.routers:  # else the scoring replicas fail to start, and serve.run with a traceback
        alias, sep, path = spec.partition("=")
        check_router_spec(path if sep else alias)
    embedder_keys(config.routers)  # ConfigError when one is unset here, as the upstreams' keys
    # As lmroute serve checks them; in the ingress replica a misspelt name was silently unused and
    # a bad file Ray's traceback. The files are checked here, at the path the replicas read.
    names = served_names(config.routers)
    if names is not None:
        check_threshold_names(config, names)
    check_control_files(config.control)
    here = _LoadedOnUse(config.routers)
    for name in here if config.models else ():
        # As lmroute serve checks them; else the ingress replicas fail to start, in Ray's traceback.
        try:
            router = here[name]
        except ImportError as exc:  # a package only the cluster's nodes have
            log.info("models: not checked against router %r: this machine cannot load it (%s)", name, exc)
            continue
        check_vocabulary(config.models, {name: router})
    if names is not None:
        # lmroute serve's warnings about thresholds that route (nearly) everything one way.
        try:
            warnings = threshold_warnings(config, here, data_dir=data_dir)
        except ImportError as exc:  # a package only the cluster's nodes have
            log.info("thresholds not checked: this machine cannot load their routers (%s)", exc)
            warnings = []
        for warning in warnings:
            log.warning("%s", warning)
    init_ray(ray_config.address)
    serve.start(http_options={"host": config.server.host, "port": config.server.port})
    _check_proxy_address(config.server.host, config.server.port)
    _check_app_name_free(ray_config.app_name)
    level = config.server.log_level
    try:
        serve.run(
            build_application(config, ray_config),
            name=ray_config.app_name,
            route_prefix="/",
            # As lmroute serve: a line per request only at info and debug.
            logging_config={"log_level": level.upper(), "enable_access_log": level in ("info", "debug")},
        )
    except RayServeException as exc:  # refused: another application on this cluster serves / already
        refusal = " ".join(str(getattr(exc, "cause", exc)).split())  # without Ray's traceback
        raise ConfigError(f"Ray Serve did not deploy {ray_config.app_name}: {refusal}") from None
    except RuntimeError as exc:
        if not str(exc).startswith(f"Deploying application {ray_config.app_name} failed"):
            raise
        failure = _deploy_failure(ray_config.app_name) or str(exc)
        # Left there, the failed application keeps an ingress replica waiting for ever for its scorer.
        serve.delete(ray_config.app_name)
        raise ConfigError(f"Ray Serve did not deploy {ray_config.app_name}: {failure}") from None
    except (KeyboardInterrupt, SystemExit):
        # Stopped while Ray Serve deployed it (a Ctrl-C during a slow start, a process manager's
        # stop): the application would come up all the same, and outlive the command.
        serve.delete(ray_config.app_name)
        raise
    url = f"http://{config.server.host}:{config.server.port}/v1"
    log.info("lmroute on Ray Serve: %s", url)
    if blocking:
        try:
            while True:
                import time

                time.sleep(3600)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM, which ray.init makes a SystemExit
            # On a cluster this command joined, the application would outlive it, still serving.
            serve.delete(ray_config.app_name)
    return url
