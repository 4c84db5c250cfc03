"""What the configurations of the classifier routers (``bert``, ``causal_llm``) share."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lmroute.data.benchmarks import STRONG_MODEL, WEAK_MODEL
from lmroute.routers.base import RouterConfig


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
    #: ``auto``: bfloat16 where the CPU computes it natively (about 2x faster), else float32.
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("preset", "default") in cls.presets:
            return {**cls.presets[values.get("preset", "default")], **values}
        return values
