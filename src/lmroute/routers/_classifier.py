"""What the classifier routers (``bert``, ``causal_llm``) share: config options, and a base class.

Both fine-tune a torch network (:mod:`lmroute.networks`) through a solver in
:mod:`lmroute.training`; both save only what training changed, as named arrays, with the
fingerprint of the base model it was trained on, and rebuild the network from the base model on
first use after loading. A subclass says how to build its network and its solver's parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
from pydantic import Field, model_validator

from lmroute.data.benchmarks import STRONG_MODEL, WEAK_MODEL
from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.networks.precision import Precision
from lmroute.routers.base import Router, RouterConfig, check_model_pair

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from typing_extensions import Self

    from lmroute.data.battles import Battle
    from lmroute.networks.base_models import BaseModel
    from lmroute.training.classifier import TrainedClassifier
    from lmroute.training.prefix_cache import PrefixCache


class ClassifierConfig(RouterConfig):
    """Options of a router that learns the battle outcome of one model pair from prompts."""

    #: Option values per preset name; a subclass fills it in.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    #: A named budget (see the router's module docstring); explicit options override its values.
    preset: Literal["fast", "default", "full"] = "default"
    #: Battles between exactly these two map directly to the classes; other pairs by ratings.
    strong_model: str = STRONG_MODEL
    weak_model: str = WEAK_MODEL
    #: Battles between models rated closer than this (natural-log Bradley–Terry scale) are left out.
    min_rating_gap: float = Field(default=0.0, ge=0)
    #: Share of P(tie) counted as "the strong model is worth it" in the score (and binary target).
    tie_share: float = Field(default=0.5, ge=0, le=1)
    #: Learning rate of the output head (bert's classifier, causal_llm's label rows).
    head_learning_rate: float = Field(default=1e-2, gt=0)
    #: Fraction of the steps over which the learning rate warms up linearly (then decays linearly).
    warmup: float = Field(default=0.1, ge=0, lt=1)
    #: Train on at most this many distinct prompts (a seeded sample), to bound a fit's time.
    max_train_prompts: int | None = Field(default=None, ge=1)
    #: ``auto``: bfloat16 where the CPU computes it natively (about 2x faster), else float32; what
    #: each promises about batching: :mod:`lmroute.networks.precision`.
    precision: Precision = "auto"
    #: Seeds the network and the prompt sample (numpy's generators take no negative seed).
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("preset", "default") in cls.presets:
            return {**cls.presets[values.get("preset", "default")], **values}
        return values


class TrainableNetwork(Protocol):
    """What the base class needs of a network: its trained weights as named arrays, and back."""

    def trained_state(self) -> dict[str, np.ndarray]: ...

    def load_trained_state(self, arrays: dict[str, np.ndarray]) -> None: ...


ClassifierConfigT = TypeVar("ClassifierConfigT", bound=ClassifierConfig)
NetT = TypeVar("NetT", bound=TrainableNetwork)
DataclassT = TypeVar("DataclassT", bound="DataclassInstance")


class ClassifierRouter(Router[ClassifierConfigT], Generic[ClassifierConfigT, NetT]):
    """Base of the routers that fine-tune a torch network; torch loads on first fit or score."""

    #: How to get a trained router of this kind (the message of :meth:`pretrained`).
    how_to_train: ClassVar[str] = ""
    #: Added to "call fit()" where a subclass has more to say (causal_llm: its zero-shot router).
    fit_hint: ClassVar[str] = ""

    def __init__(
        self,
        config: RouterConfig | Mapping[str, Any] | None = None,
        *,
        prefix_cache: PrefixCache | None = None,
        **options: Any,
    ):
        """``prefix_cache``: a :class:`~lmroute.training.prefix_cache.PrefixCache` for the frozen
        layers' outputs (default: the process-wide one)."""
        super().__init__(config, **options)
        check_model_pair(self.config.strong_model, self.config.weak_model)
        self.prefix_cache = prefix_cache
        # a server's first concurrent requests must not each load the network
        self._lock = threading.Lock()
        self._state: dict[str, np.ndarray] | None = None
        self._net: NetT | None = None

    @classmethod
    def pretrained(cls, **options: Any) -> Self:
        raise CheckpointError(f"no {cls.name} router is shipped: {cls.how_to_train}")

    # -- what a subclass provides --------------------------------------------------------------
    def _train(self, battles: Sequence[Battle], *, progress: bool) -> TrainedClassifier[NetT]:
        """Call the solver with parameters built from the config."""
        raise NotImplementedError

    def _base_model(self) -> BaseModel:
        """The base model the config names."""
        raise NotImplementedError

    def _build(self, base: BaseModel) -> NetT:
        """The untrained network the config describes, on ``base``."""
        raise NotImplementedError

    def _check_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Raise CheckpointError unless ``arrays`` look like this router's trained state."""

    # -- training and the network --------------------------------------------------------------
    def fit(self, battles: Sequence[Battle], *, progress: bool = False) -> Self:
        """Fine-tune on battles (the loop is in :mod:`lmroute.training`)."""
        result = self._train(battles, progress=progress)
        self._net = result.network
        self._state = result.network.trained_state()
        self.metadata.update({"base_model": result.base.describe(), "fit": result.summary})
        return self

    def _trained_state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise ConfigError(
                f"this {self.name} router is not trained: call fit(){self.fit_hint} or load a trained "
                "directory"
            )
        return self._state

    def _network(self) -> NetT:
        """The trained network, built from the base model and the trained state on first use."""
        with self._lock:
            if self._net is None:
                state = self._trained_state()
                base = self._base_model()
                base.check(self.metadata.get("base_model"), self.name)
                net = self._build(base)
                net.load_trained_state(state)
                self._net = net
            return self._net

    # -- persistence ---------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise ConfigError(f"this {self.name} router is not trained: nothing to save")
        return dict(self._state)

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_arrays(arrays)
        self._state, self._net = dict(arrays), None


def from_config(cls: type[DataclassT], config: RouterConfig, **given: Any) -> DataclassT:
    """An instance of the dataclass ``cls``: each field is taken from ``given``, else from the
    config's option of the same name."""
    return cls(**{f.name: given[f.name] if f.name in given else getattr(config, f.name) for f in fields(cls)})
