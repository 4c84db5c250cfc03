"""The router contract: every router is built from a config, may ``fit``, scores batches, saves and loads.

A router answers one question for a batch of prompts: the probability that the strong model's
answer beats the weak model's (:meth:`Router.score`). Routers that learned a vocabulary of models
(``mf``, ``sw_ranking``) also predict each of several models' quality on one common scale
(:meth:`Router.predict_quality`), which the N-model policies (:mod:`lmroute.policies`) route on.
Everything else (evaluation, calibration, serving) only calls these, so no caller ever
special-cases a router.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from lmroute._files import read_failures, replacing_folder, write_atomic, write_failures
from lmroute._version import __version__
from lmroute.exceptions import CheckpointError, ConfigError, WriteError

if TYPE_CHECKING:
    from typing_extensions import Self

    from lmroute.data.battles import Battle
    from lmroute.embeddings.base import Embedder
    from lmroute.shrinkage import QualityShrinkage

FORMAT = "lmroute-router"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"

Decision = Literal["strong", "weak"]


class RouterConfig(BaseModel):
    """Base of every router's configuration; unknown keys are errors, not silently ignored, and so
    are infinite or NaN numbers (a learning rate of inf trained a router of NaN weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


ConfigT = TypeVar("ConfigT", bound=RouterConfig)


class Router(Generic[ConfigT]):
    """Base class of all routers, generic in the type of their config.

    Subclasses set ``name`` and ``config_class`` (the class of ``ConfigT``, e.g.
    ``class MFRouter(EmbeddingPairRouter[MFConfig])`` with ``config_class = MFConfig``), implement
    :meth:`_score`, and where they learn, :meth:`fit`, :meth:`_arrays` and :meth:`_load_arrays`.
    """

    name: ClassVar[str] = "router"
    config_class: ClassVar[type[RouterConfig]] = RouterConfig
    #: Scores depend on a seed; evaluation averages such routers over several seeds.
    stochastic: ClassVar[bool] = False
    #: Scoring takes microseconds and no model, file or network (``random``, ``length``): a server
    #: scores such a router on its event loop, where a hop to a scoring thread would cost more.
    fast_scoring: ClassVar[bool] = False
    #: Puts :meth:`predict_quality` on a benchmark's own scale for the models it was fitted on
    #: (:meth:`with_shrinkage`; ``lmroute shrink``); saved with the router.
    quality_shrinkage: QualityShrinkage | None = None

    def __init__(self, config: RouterConfig | Mapping[str, Any] | None = None, **options: Any):
        if isinstance(config, RouterConfig):
            values = {**config.model_dump(), **options}
        else:
            values = {**(config or {}), **options}
        try:
            # config_class is ConfigT at runtime (a class variable cannot name a type variable)
            self.config: ConfigT = cast(ConfigT, self.config_class.model_validate(values))
        except ValidationError as exc:
            raise ConfigError(f"invalid options for router {self.name!r}: {_short(exc)}") from exc
        #: Free-form, JSON-serialisable facts about how the router was made (data sources...).
        self.metadata: dict[str, Any] = {}

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, options: Mapping[str, Any], embedder: Embedder | None = None) -> Self:
        """A router of this class from ``options``, scoring with ``embedder`` where it embeds
        prompts (a router that embeds nothing is built without it)."""
        if embedder is not None and "embedder" in inspect.signature(cls).parameters:
            return cls(options, embedder=embedder)
        return cls(options)

    @classmethod
    def pretrained(cls, **options: Any) -> Self:
        """The router this name stands for when no directory is given (a shipped default)."""
        return cls(**options)

    def with_seed(self, seed: int) -> Self:
        """A copy of this router with another seed (only stochastic routers have one)."""
        raise ConfigError(f"router {self.name!r} has no seed")

    def with_models(self, *, strong_model: str | None = None, weak_model: str | None = None) -> Self:
        """A copy of this router that compares another pair of the models it learned (only
        routers with a model vocabulary can; an unknown model is an UnknownModelError)."""
        raise ConfigError(
            f"router {self.name!r} learned no models of its own: it cannot compare another pair"
        )

    def fit(self, *args: Any, **kwargs: Any) -> Self:
        """Learn from preference data. Routers that do not learn return themselves unchanged."""
        return self

    def check_options(self) -> None:
        """ConfigError where an option names what cannot be had (an embedder, a base model), found
        without loading any model: called before the minutes of loading training data."""

    # -- collaborators --------------------------------------------------------------------
    @property
    def embedder_name(self) -> str | None:
        """Name of the prompt embedder this router scores with (None: it embeds nothing)."""
        return None

    def use_embedder(self, embedder: Embedder) -> None:
        """Score with ``embedder`` (e.g. one without a disk cache, in a server); it must be the
        embedder the router was configured or trained with, named :attr:`embedder_name`."""
        raise ConfigError(f"router {self.name!r} embeds no prompts: it takes no embedder")

    # -- prediction -----------------------------------------------------------------------
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """P(strong model wins) for each prompt: a float64 array of shape ``(len(prompts),)``."""
        prompts = _check_prompts(prompts, "score")
        if not prompts:
            return np.zeros(0, dtype=np.float64)
        scores = np.asarray(self._score(prompts), dtype=np.float64)
        if scores.shape != (len(prompts),):
            raise RuntimeError(f"{self.name} returned shape {scores.shape} for {len(prompts)}")
        return np.where(np.isnan(scores), 0.5, np.clip(scores, 0.0, 1.0))  # nan_to_num: twice as slow

    def route(self, prompt: str, threshold: float) -> Decision:
        """``"strong"`` when the prompt's score is at least ``threshold``, else ``"weak"``."""
        check_threshold(threshold)
        return "strong" if self.score([prompt])[0] >= threshold else "weak"

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray:
        """Each model's predicted quality on each prompt: float64 ``(len(prompts), len(models))``.

        The common scale is the probability that the model's answer beats the answer of the
        router's *reference*: the average model of its training vocabulary (a fixed virtual model
        whose logit is the mean of the trained models' logits on the prompt). ``models`` are names
        of the router's vocabulary; each prompt is embedded once, however many models are asked.
        The two-model score is the special case:
        ``score = sigmoid(logit(q[:, strong]) - logit(q[:, weak]))``.

        A router with a :attr:`quality_shrinkage` returns its models' qualities shrunk onto the
        scale of the benchmark it was fitted on (e.g. the probability of a correct answer), not
        clipped; asking for a model it was not fitted on is a ConfigError.
        """
        prompts = _check_prompts(prompts, "predict_quality")
        names = _check_models(models)
        if type(self)._predict_quality is Router._predict_quality:
            raise ConfigError(
                f"router {self.name!r} scores only its two models (score()); routing among N models "
                "needs a router that learned a vocabulary of models: mf or sw_ranking"
            )
        # Before the prompts are embedded, and with none at all (how commands check a router before
        # reading or downloading prompts): a model the router or its shrinkage lacks.
        self._check_known(names)
        shrinkage = self.quality_shrinkage.select(names) if self.quality_shrinkage is not None else None
        if not prompts:
            return np.zeros((0, len(names)), dtype=np.float64)
        quality = np.asarray(self._predict_quality(prompts, names), dtype=np.float64)
        if quality.shape != (len(prompts), len(names)):
            raise RuntimeError(
                f"{self.name} returned shape {quality.shape} for {len(prompts)} x {len(names)}"
            )
        quality = np.clip(np.nan_to_num(quality, nan=0.5), 0.0, 1.0)
        return shrinkage.apply(quality) if shrinkage is not None else quality

    def with_shrinkage(self, shrinkage: QualityShrinkage | None) -> Self:
        """A copy of this router whose :meth:`predict_quality` applies ``shrinkage`` (None: none),
        its learned state shared; ConfigError if the shrinkage names a model outside the vocabulary."""
        if shrinkage is not None:
            unknown = [m for m in shrinkage.models if m not in self.vocabulary]
            if unknown:
                raise ConfigError(
                    f"the shrinkage names model(s) {', '.join(unknown)} outside this {self.name} router's "
                    "vocabulary"
                )
        router = copy.copy(self)
        router.metadata = copy.deepcopy(self.metadata)
        router.quality_shrinkage = shrinkage
        return router

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Names of the models whose quality :meth:`predict_quality` predicts (empty: none)."""
        return ()

    def onboard(self, model: str, battles: Sequence[Battle], *, prior: float = 5.0) -> Self:
        """A copy of this router that also knows ``model``, learned from battles against models it
        knows, with every other learned parameter frozen (see :mod:`lmroute.workflows.onboard`);
        ``prior``: how many pseudo-battles pull the new model toward the known models' average."""
        raise ConfigError(
            f"router {self.name!r} cannot onboard a model: only mf learns one model's parameters "
            "alone (sw_ranking tiers every model from all battles: retrain it with the new model's)"
        )

    def _score(self, prompts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _predict_quality(self, prompts: list[str], models: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _check_known(self, models: list[str]) -> None:
        """UnknownModelError for a model :meth:`predict_quality` cannot predict, found without a prompt."""

    # -- persistence ----------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned state as named arrays (saved as safetensors)."""
        return {}

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the state written by :meth:`_arrays`; raise CheckpointError if it does not fit."""
        if arrays:
            raise CheckpointError(f"router {self.name!r} has no weights, found {sorted(arrays)}")

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` (and ``weights.safetensors`` when there are weights) to a directory.

        A router saved there before is replaced only once the new one is complete: a save that
        fails half-way leaves it as it was.
        """
        return save_folder(directory, self._write)

    def _write(self, directory: Path) -> None:
        """Write the router's files into the existing folder ``directory``, ``config.json`` last."""
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "router": self.name,
            "lmroute_version": __version__,
            "config": self.config.model_dump(mode="json"),
            "metadata": self.metadata,
            "weights": None,
        }
        if self.quality_shrinkage is not None:
            manifest["quality_shrinkage"] = self.quality_shrinkage.to_dict()
        if arrays:
            # through our writer, not safetensors' save_file: its files are private (0600)
            data = save(arrays)
            write_atomic(directory / WEIGHTS_FILE, data)
            manifest["weights"] = {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest()}
        self._write_files(directory)
        write_atomic(directory / CONFIG_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))

    def _write_files(self, directory: Path) -> None:
        """Write files a router keeps besides its weights (bert's ONNX model) into ``directory``,
        made if need be (an ensemble gives each member a folder of its own)."""

    def _use_files(self, directory: Path) -> None:
        """Take the folder :meth:`_write_files` wrote to as the one to read those files from;
        CheckpointError when the config says they are there but not as what."""

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A saved config as this version reads it: options added since take the value that
        gives what the saving version did (not necessarily today's default)."""
        return config

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Load a router saved by :meth:`save`, validating the files before trusting them."""
        manifest = read_manifest(directory)
        if cls is Router:
            # the class a directory needs comes from the registry, a layer above the routers
            raise CheckpointError(
                f"{directory} holds a {manifest['router']!r} router: load it with "
                f"lmroute.load_router({str(directory)!r}), which picks its class"
            )
        if manifest["router"] != cls.name:
            raise CheckpointError(f"{directory} holds a {manifest['router']!r} router, not {cls.name!r}")
        try:
            router = cls(cls._saved_config(manifest["config"]))
        except ConfigError as exc:
            saved = manifest.get("lmroute_version")
            by = f" (saved by lmroute {saved}; this is {__version__})" if saved != __version__ else ""
            raise CheckpointError(f"{directory}/{CONFIG_FILE}: {exc}{by}") from None
        router.metadata = dict(manifest.get("metadata") or {})
        arrays = _read_weights(Path(directory), manifest)
        try:
            router._load_arrays(arrays)
            router._use_files(Path(directory))
        except CheckpointError as exc:
            raise CheckpointError(f"{directory}: {exc}") from None
        if manifest.get("quality_shrinkage") is not None:
            from lmroute.shrinkage import QualityShrinkage

            try:
                router = router.with_shrinkage(QualityShrinkage.from_dict(manifest["quality_shrinkage"]))
            except ConfigError as exc:
                raise CheckpointError(f"{directory}/{CONFIG_FILE}: quality_shrinkage: {exc}") from None
        return router


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise ConfigError unless it is a number in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise ConfigError(f"threshold must be a number in [0, 1], got {threshold!r}")
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
    return value


def check_model_pair(strong_model: str, weak_model: str) -> None:
    """ConfigError when a router that compares two models is configured with one model twice."""
    if strong_model == weak_model:
        raise ConfigError(
            f"strong_model and weak_model are both {strong_model!r}: a router compares two models"
        )


def _check_prompts(prompts: Sequence[str], method: str) -> list[str]:
    if isinstance(prompts, (str, bytes)):
        raise ConfigError(f"{method}() takes a sequence of prompts, not a single string")
    prompts = _listed(prompts, f"{method}() takes a sequence of prompts")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt {i} is {type(prompt).__name__}, expected str")
    return prompts


def _check_models(models: Sequence[str]) -> list[str]:
    if isinstance(models, (str, bytes)):
        raise ConfigError("predict_quality() takes a sequence of model names, not a single string")
    names = _listed(models, "predict_quality() takes a sequence of model names")
    if not names or not all(isinstance(m, str) and m for m in names):
        raise ConfigError(f"predict_quality() needs a list of model names, got {names!r}")
    if len(set(names)) != len(names):
        repeated = sorted({m for m in names if names.count(m) > 1})
        raise ConfigError(f"model(s) named twice: {', '.join(repeated)}")
    return names


def _listed(items: Sequence[Any], expected: str) -> list[Any]:
    """``items`` as a list; ConfigError saying what was ``expected`` for what cannot be one (None,
    a number: list() raised a TypeError)."""
    if not isinstance(items, Iterable):
        raise ConfigError(f"{expected}, got {type(items).__name__}")
    return list(items)


def save_folder(directory: str | Path, write: Callable[[Path], None]) -> Path:
    """``directory`` once ``write`` has filled it with a router's files: a router saved there before
    is replaced only once the new one is complete (``write`` fills a folder beside it), so a write
    that fails half-way leaves it as it was; WriteError, before ``write`` runs, for a folder whose
    ``config.json`` is not a router's."""
    directory = Path(directory)
    check_save_folder(directory)
    if (directory / CONFIG_FILE).is_file():
        with replacing_folder(directory) as staging:
            write(staging)
    else:
        with write_failures(directory):
            directory.mkdir(parents=True, exist_ok=True)
        write(directory)
    return directory


def check_save_folder(directory: str | Path) -> None:
    """WriteError when saving a router to ``directory`` would replace a ``config.json`` that is not
    a router's (``--out`` naming a model's folder); checked before the work that makes the router."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):  # as read_manifest: unreadable, not a router's
        manifest = None
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT):
        raise WriteError(
            f"cannot write {directory}: its {CONFIG_FILE} is not an lmroute router's, which a router "
            "saved there would replace; give a new folder or a saved router's"
        )


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and validate a router directory's ``config.json``."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a router directory: no {CONFIG_FILE}")
    try:
        with read_failures(str(path), CheckpointError):  # unreadable (another user's 0600): OSError
            manifest = json.loads(path.read_text("utf-8"))
    # ValueError: bad UTF-8, bad JSON, or an integer of more digits than Python converts;
    # RecursionError: "[[[[..."
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lmroute router config")
    version = manifest.get("format_version")
    # true (an int to Python), 0 or -3 loaded as version 1; "1" or 1.0 were told to upgrade lmroute
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{path} has format version {version!r}, which no lmroute writes (a whole number from 1): "
            "the file is damaged"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version!r}; this lmroute ({__version__}) reads up to "
            f"{FORMAT_VERSION}: upgrade lmroute"
        )
    if not isinstance(manifest.get("router"), str) or not isinstance(manifest.get("config"), dict):
        raise CheckpointError(f"{path} lacks a router name or config")
    if not isinstance(manifest.get("metadata") or {}, dict):
        raise CheckpointError(f"{path}: 'metadata' must be an object")
    weights = manifest.get("weights")
    if weights is not None and not (isinstance(weights, dict) and isinstance(weights.get("file", ""), str)):
        raise CheckpointError(f"{path}: 'weights' must be an object with the weights file's name and sha256")
    return manifest


def _read_weights(directory: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    weights = manifest.get("weights")
    if not weights:
        return {}
    path = directory / str(weights.get("file", WEIGHTS_FILE))
    if path.parent.resolve() != directory.resolve() or not path.is_file():
        raise CheckpointError(f"{directory}: weights file {weights.get('file')!r} is missing")
    if weights.get("sha256"):
        with read_failures(str(path), CheckpointError):
            digest = _sha256(path)
        if digest != weights["sha256"]:
            raise CheckpointError(f"{path} is corrupted: its checksum does not match config.json")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from exc
    # a dtype numpy has not: a TypeError (bfloat16) or AttributeError (float8) traceback
    except (TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} holds arrays of a type numpy cannot read ({exc}): save them as float32 or float16"
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
    )
