"""What the learned embedding routers share: a prompt embedder, a model vocabulary, a model pair.

Such a router is trained on battles between many models, and scores the probability that its
``strong_model`` beats its ``weak_model``; both must be in the vocabulary learned from the
training data (saved in the checkpoint's ``config.json`` as ``metadata["models"]``). A deployed
pair with other names is mapped onto training models with the ``strong_model=`` and
``weak_model=`` options, also on a loaded or shipped router (:meth:`EmbeddingPairRouter.with_models`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
from pydantic import Field

from lmroute.embeddings.base import Embedder, normalize
from lmroute.embeddings.long_prompts import LongPromptEmbedder, LongPromptPolicy
from lmroute.exceptions import CheckpointError, ConfigError, UnknownModelError
from lmroute.routers.base import CONFIG_FILE, Router, RouterConfig, check_model_pair

if TYPE_CHECKING:
    from typing_extensions import Self

STRONG_MODEL = "gpt-4-1106-preview"
WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"

#: The long-prompt policy of new routers, chosen by measurement (README, "Long prompts").
LONG_PROMPTS_DEFAULT: LongPromptPolicy = "head_tail"
#: Options that only choose which learned models to compare, so a trained router may change them.
PAIR_OPTIONS = ("strong_model", "weak_model")
_PROGRESS_CHUNK = 512


class EmbeddingPairConfig(RouterConfig):
    #: The training model whose win probability is the score.
    strong_model: str = Field(default=STRONG_MODEL, min_length=1)
    #: The training model it is compared with.
    weak_model: str = Field(default=WEAK_MODEL, min_length=1)
    #: Name of the embedder of prompts (``lmroute.embeddings.get_embedder``); checked on load.
    embedder: str = Field(default="minilm", min_length=1)
    #: What of a prompt longer than the embedder reads is embedded, in training and scoring
    #: (:mod:`lmroute.embeddings.long_prompts`). Checkpoints saved before this option existed
    #: load as ``head``, what they were trained with.
    long_prompts: LongPromptPolicy = LONG_PROMPTS_DEFAULT
    #: Train on the battles of at most this many distinct prompts (a seeded sample), to bound a fit.
    max_train_prompts: int | None = Field(default=None, ge=1)


PairConfigT = TypeVar("PairConfigT", bound=EmbeddingPairConfig)


FitT = TypeVar("FitT", bound=Callable[..., Any])


def unchanged_on_failure(fit: FitT) -> FitT:
    """Decorate a router's ``fit`` so that a failure half-way (bad data, an embedder error) restores
    the router as it was: a trained router must not keep a new vocabulary over its old weights."""

    @functools.wraps(fit)
    def wrapper(self: Router, *args: Any, **kwargs: Any) -> Any:
        saved = {**self.__dict__, "metadata": copy.deepcopy(self.metadata)}
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return wrapper  # type: ignore[return-value]


class EmbeddingPairRouter(Router[PairConfigT]):
    """Base of routers that embed prompts and compare two models of a learned vocabulary."""

    config_class: ClassVar[type[RouterConfig]] = EmbeddingPairConfig

    def __init__(
        self,
        config: RouterConfig | Mapping[str, Any] | None = None,
        *,
        embedder: Embedder | None = None,
        **options: Any,
    ):
        super().__init__(config, **options)
        check_model_pair(self.config.strong_model, self.config.weak_model)
        if embedder is not None:
            given = config.model_fields_set if isinstance(config, RouterConfig) else (config or {})
            explicit = "embedder" in options or "embedder" in given
            if explicit and self.config.embedder != embedder.name:
                raise ConfigError(
                    f"the {self.name} router is configured for embedder {self.config.embedder!r} "
                    f"but was given embedder {embedder.name!r}; pass one or the other"
                )
            self.config = self.config.model_copy(update={"embedder": embedder.name})
        self._embedder = embedder
        self._long: LongPromptEmbedder | None = None
        #: Model names learned from the training data, in index order.
        self.models: list[str] = []
        #: Mean and spread of the training prompts' log lengths, when a length coordinate is used.
        self._length_stats = np.zeros(0)

    def check_options(self) -> None:
        if self._embedder is None:
            from lmroute.embeddings import get_embedder

            get_embedder(self.config.embedder, cache=False)  # an embedder loads its model on first use

    # -- collaborators -----------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The prompt embedder, created from the config's name on first use."""
        if self._embedder is None:
            from lmroute.embeddings import get_embedder

            self._embedder = get_embedder(self.config.embedder)
        return self._embedder

    @property
    def embedder_name(self) -> str:
        """Name of the embedder this router scores with by default (``config.embedder``): the one
        it was trained with, or a quantised copy of it (``minilm-int8`` for ``minilm``)."""
        return self.config.embedder

    def use_embedder(self, embedder: Embedder) -> None:
        """Embed prompts with ``embedder``, which must be the kind this router was trained with. A
        quantised copy (or the original of one) becomes :attr:`embedder_name`, as it is what the
        router now scores with, and what :meth:`save` records."""
        self._check_embedder(embedder.name, embedder.name)
        if embedder.name not in (self.config.embedder, _name_of_embedder(self.config.embedder)):
            self.config = self.config.model_copy(update={"embedder": embedder.name})
        self._embedder = embedder

    def _check_embedder(self, made: str | None, asked: str) -> None:
        """ConfigError unless an embedder named ``made`` (None: none can be made of ``asked``) gives
        the vectors this router was trained on, or a quantised copy of them."""
        # The configured name may hold what does not change the vectors (a backend, "minilm-onnx"; an
        # endpoint, "openai:m?base_url=..."), which the embedder made from it leaves out of its name.
        # A quantised copy of the model ("minilm-int8" for "minilm") approximates the same vectors.
        from lmroute.embeddings import approximated

        expected = self.config.embedder
        trained = _name_of_embedder(expected)
        if made is None or (
            made not in (expected, trained) and approximated(made) != approximated(trained or expected)
        ):
            raise ConfigError(
                f"this {self.name} router was trained with embedder {expected!r}; "
                f"embedder {asked!r} would give other vectors"
            )

    @property
    def prompt_embedder(self) -> LongPromptEmbedder:
        """The embedder with this router's long-prompt policy: what ``fit`` and ``score`` embed
        with. Its ``truncated`` counts the long prompts it met."""
        inner = self.embedder
        if (
            self._long is None
            or self._long.inner is not inner
            or self._long.policy != self.config.long_prompts
        ):
            self._long = LongPromptEmbedder(inner, self.config.long_prompts)
        return self._long

    def _embed(self, texts: Sequence[str], *, dim: int | None = None, progress: bool = False) -> np.ndarray:
        """Unit-length float32 embeddings of ``texts``, checked against the expected width."""
        texts = list(texts)
        embedder = self.prompt_embedder
        if progress and len(texts) > _PROGRESS_CHUNK:
            from tqdm import tqdm

            parts = [
                np.asarray(embedder.embed(texts[i : i + _PROGRESS_CHUNK]), dtype=np.float32)
                for i in tqdm(range(0, len(texts), _PROGRESS_CHUNK), desc="embedding prompts", unit="chunk")
            ]
            vectors = np.concatenate(parts)
        else:
            vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ConfigError(f"embedder {self.embedder.name!r} returned shape {vectors.shape}")
        if dim is not None and vectors.shape[1] != dim:
            raise ConfigError(
                f"embedder {self.embedder.name!r} gives {vectors.shape[1]}-d vectors but this "
                f"{self.name} router was trained on {dim}-d ones"
            )
        return normalize(vectors)

    # -- prompt length -----------------------------------------------------------------------
    # Unit-length sentence embeddings lose the prompt's length, which alone routes well: a router
    # may append it to the embedding as one standardised coordinate.
    def _fit_length(self, texts: Sequence[str], *, enabled: bool) -> None:
        """Learn how to standardise log lengths from the training prompts (or turn it off)."""
        self._length_stats = np.zeros(0)
        if enabled:
            logs = _log_lengths(texts)
            self._length_stats = np.array([logs.mean(), max(float(logs.std()), 1e-6)])

    def _features(
        self, texts: Sequence[str], *, weight: float = 1.0, width: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """The texts' embeddings, with ``weight`` times the standardised log length appended when
        learned; ``width``: the feature width a trained router expects (checks the embedder)."""
        has_length = bool(self._length_stats.size)
        vectors = self._embed(texts, dim=None if width is None else width - has_length, progress=progress)
        if not has_length:
            return vectors
        mean, sd = self._length_stats
        column = (weight * (_log_lengths(texts) - mean) / sd).astype(np.float32)[:, None]
        return np.hstack([vectors, column])

    def _load_length_stats(self, arrays: Mapping[str, np.ndarray]) -> None:
        stats = np.asarray(arrays.get("length_stats", np.zeros(0)), dtype=np.float64)
        if stats.shape not in ((0,), (2,)):
            raise CheckpointError(f"{self.name} length_stats has shape {stats.shape}, expected (2,)")
        # a spread of 0 or a NaN made every length coordinate inf or NaN: mf scored 0.5 (or 0 or 1)
        # on every prompt, sw_ranking raised a ValueError at every score
        if stats.size and not (np.isfinite(stats).all() and stats[1] > 0):
            raise CheckpointError(
                f"{self.name} length_stats must be a finite mean and a positive spread, got {stats.tolist()}"
            )
        self._length_stats = stats

    # -- model vocabulary --------------------------------------------------------------------
    def _check_pair(self, models: Sequence[str]) -> tuple[int, int]:
        """Indices of the configured strong and weak models in ``models``."""
        index = {m: i for i, m in enumerate(models)}
        found = []
        for role in PAIR_OPTIONS:
            name = getattr(self.config, role)
            if name not in index:
                raise UnknownModelError(
                    f"{role} {name!r} is not a model this {self.name} router knows; known models: "
                    f"{', '.join(models)} (set {role}= to one of them)"
                )
            found.append(index[name])
        return found[0], found[1]

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The models learned from the training data (and any onboarded since), in index order."""
        return tuple(self.models)

    def model_indices(self, models: Sequence[str]) -> np.ndarray:
        """Indices of ``models`` in the vocabulary; UnknownModelError listing it otherwise."""
        index = {m: i for i, m in enumerate(self.models)}
        unknown = [m for m in models if m not in index]
        if unknown:
            raise UnknownModelError(
                f"model(s) {', '.join(map(repr, unknown))} not in this {self.name} router's vocabulary "
                f"({len(self.models)} models: {', '.join(self.models)}); map a served name onto one of "
                "them (served=vocabulary), or teach the router a new model from a probe file: "
                "lmroute onboard --router ROUTER --probe FILE --model NAME --out DIR"
            )
        return np.array([index[m] for m in models], dtype=np.int64)

    def _check_known(self, models: list[str]) -> None:
        if self.models:  # an untrained router has no vocabulary to check against yet
            self.model_indices(models)

    def _reference_models(self) -> np.ndarray:
        """Indices of the models whose mean logit is the reference of :meth:`predict_quality`: the
        models trained together (an onboarded model does not move the scale of the others)."""
        onboarded = set(self.metadata.get("onboarded") or {})
        return np.array([i for i, m in enumerate(self.models) if m not in onboarded], dtype=np.int64)

    def with_models(self, *, strong_model: str | None = None, weak_model: str | None = None) -> Self:
        """A copy of this trained router that compares another pair of its training models."""
        given = (("strong_model", strong_model), ("weak_model", weak_model))
        for key, value in given:
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{key} must be a model name, got {value!r}")  # "" kept the old one
        update = {k: v for k, v in given if v is not None}
        router = self._copy_with(update)
        router._check_pair(router.models)
        return router

    def with_long_prompts(self, policy: str) -> Self:
        """A copy of this trained router that reads long prompts by another policy, its weights
        unchanged: to compare policies (a router reads best the way it was trained)."""
        return self._copy_with({"long_prompts": policy})

    def with_embedder(self, name: str) -> Self:
        """A copy of this trained router that scores with the embedder named ``name``, its weights
        unchanged: one that gives the vectors it was trained on or a quantised copy of them
        (``minilm-int8`` for a router trained on ``minilm``); any other is a ConfigError."""
        self._check_embedder(_name_of_embedder(name), name)
        router = self._copy_with({"embedder": name})
        router._embedder = None
        return router

    def _copy_with(self, update: Mapping[str, Any]) -> Self:
        router = copy.copy(self)  # shares the (read-only) learned arrays
        router.config = type(self)({**self.config.model_dump(), **update}).config
        router.metadata = copy.deepcopy(self.metadata)
        router._long = None
        return router

    # -- persistence -------------------------------------------------------------------------
    def _save_vocabulary(self) -> None:
        self.metadata["models"] = list(self.models)

    def _load_vocabulary(self, count: int) -> None:
        models = self.metadata.get("models")
        if (
            not isinstance(models, list)
            or len(models) != count
            or not all(isinstance(m, str) and m for m in models)
        ):
            raise CheckpointError(
                f"this {self.name} checkpoint's config.json lacks its list of {count} models "
                "(metadata.models)"
            )
        # A name listed twice was looked up as its last entry: another model's weights, silently.
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise CheckpointError(
                f"this {self.name} checkpoint's metadata.models names {', '.join(map(repr, repeated))} "
                "more than once: each model has one row of weights"
            )
        onboarded = self.metadata.get("onboarded")
        # read as the models kept out of predict_quality's reference: a number there was a TypeError
        # traceback at the first N-model request, a string silently moved every model's quality
        if onboarded is not None and (not isinstance(onboarded, dict) or not set(onboarded) < set(models)):
            raise CheckpointError(
                f"this {self.name} checkpoint's metadata.onboarded must map some of its models (not all) "
                "to how they were onboarded"
            )
        self.models = list(models)

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        # checkpoints from before the long-prompt policy embedded the head of every prompt
        return {"long_prompts": "head", **config}

    @classmethod
    def load(cls, directory: str | Path, *, embedder: Embedder | None = None) -> Self:
        """Load a saved router; ``embedder`` (optional) must be the one it was trained with."""
        router = super().load(directory)
        if embedder is not None:
            try:
                router.use_embedder(embedder)
            except ConfigError as exc:
                raise ConfigError(f"{directory}: {exc}") from None
        return router

    @classmethod
    def pretrained(cls, **options: Any) -> Self:
        """The checkpoint shipped in the package (``lmroute/checkpoints/<name>/``).

        Options: ``strong_model``, ``weak_model`` (training models to compare), ``long_prompts``
        (see :meth:`with_long_prompts`) and ``embedder`` (an Embedder instance of the checkpoint's
        kind).
        """
        embedder = options.pop("embedder", None)
        policy = options.pop("long_prompts", None)
        other = sorted(set(options) - set(PAIR_OPTIONS))
        if other:
            raise ConfigError(
                f"the shipped {cls.name} router takes only strong_model, weak_model, long_prompts and "
                f"embedder; to change {', '.join(other)}, train a router (lmroute train {cls.name} ...)"
            )
        directory = shipped_checkpoint(cls.name)
        router = cls.load(directory, embedder=embedder)
        if policy is not None:
            router = router.with_long_prompts(policy)
        return router.with_models(**options) if options else router


def _name_of_embedder(name: str) -> str | None:
    """The name an embedder made from ``name`` carries (building one loads no model); None when
    ``get_embedder`` makes none of that name (an embedder passed in, such as a test's)."""
    from lmroute.embeddings import get_embedder

    try:
        return get_embedder(name, cache=False).name
    except ConfigError:
        return None


def _log_lengths(texts: Sequence[str]) -> np.ndarray:
    return np.log1p(np.fromiter((len(t) for t in texts), dtype=np.float64, count=len(texts)))


def shipped_checkpoint(name: str) -> Path:
    """The folder of the router checkpoint shipped inside the package, or a CheckpointError."""
    folder = resources.files("lmroute") / "checkpoints" / name
    path = Path(str(folder))
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"this lmroute has no shipped {name} checkpoint (expected at {path}); train one with "
            f"`lmroute train {name} --data ... --out DIR` and load DIR instead"
        )
    return path
