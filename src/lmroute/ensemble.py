"""The ``ensemble`` router: a weighted mean of other routers' scores, each put on one scale first.

Routers' scores live on different scales (mf's sigmoid of a logit gap, sw_ranking's Elo-based
win probability, the length router's squashed length), so averaging them raw would let the
widest-spread router decide. Each member's score is therefore replaced by its *quantile*: where
it falls among that member's scores of a fixed set of reference prompts (the training prompts, or
prompts like the traffic), stored with the router. The ensemble's score is the weighted mean of
the members' quantiles, a number in [0, 1] that a threshold cuts as any router's. On an evaluation
set whose prompts are the reference, this is the rank mean that was measured on MT-Bench (README,
MT-Bench under ``gold-1500``).

It sits above the registry (it builds its members by registered name), not in ``routers/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmroute.exceptions import CheckpointError, ConfigError, LmrouteError
from lmroute.registry import get_router_class
from lmroute.routers.base import Router, RouterConfig

if TYPE_CHECKING:
    from typing_extensions import Self

    from lmroute.data.battles import Battle
    from lmroute.embeddings.base import Embedder

_REFERENCE = "reference"
#: The folder of a saved ensemble under which each member that keeps files besides its weights
#: (an ONNX bert router) has its own, named by its position.
_MEMBERS = "members"


class Member(BaseModel):
    """One router of an ensemble: its registered name, its options and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    router: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    @field_validator("router")
    @classmethod
    def _not_an_ensemble(cls, name: str) -> str:
        if name == EnsembleRouter.name:
            raise ValueError("an ensemble cannot be a member of an ensemble")
        return name


class EnsembleConfig(RouterConfig):
    """The members (at least two) and how many reference prompts their score distributions keep."""

    members: tuple[Member, ...]
    #: Training prompts (at most this many, drawn with ``seed``) whose scores each member's
    #: quantiles are read against.
    reference_prompts: int = Field(default=4096, ge=2)
    #: Draws the reference prompts (numpy's generators take no negative seed).
    seed: int = Field(default=0, ge=0)

    @field_validator("members")
    @classmethod
    def _two_or_more(cls, members: tuple[Member, ...]) -> tuple[Member, ...]:
        # Not Field(min_length=2): that counts only the valid members, so one bad member of two
        # also reported "at least 2 items ..., not 1" beside its own error.
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        return members


class EnsembleRouter(Router[EnsembleConfig]):
    """Weighted mean of its member routers' scores, each read as a quantile of its reference scores."""

    name = "ensemble"
    config_class = EnsembleConfig

    def __init__(
        self,
        config: RouterConfig | Mapping[str, Any] | None = None,
        *,
        embedder: Embedder | None = None,
        **options: Any,
    ):
        super().__init__(config, **options)
        self.members: list[Router] = [_build(m, embedder) for m in self.config.members]
        _check_one_pair(self.members)
        self._references: list[np.ndarray] | None = None

    def check_options(self) -> None:
        for member in self.members:
            member.check_options()

    @classmethod
    def pretrained(cls, **options: Any) -> Self:
        """An ensemble has no shipped default: it needs its members (ConfigError without them)."""
        if "members" not in options:
            raise ConfigError(
                "the ensemble router ships no default: train one, e.g. lmroute train ensemble --data "
                "SOURCE... --out DIR --set 'members=[{router: mf}, {router: sw_ranking}]', or "
                "combine trained routers with EnsembleRouter.combine()"
            )
        return cls(**options)

    @classmethod
    def combine(
        cls,
        routers: Sequence[Router],
        reference_prompts: Sequence[str],
        *,
        weights: Sequence[float] | None = None,
    ) -> EnsembleRouter:
        """An ensemble of routers already trained, each member's scale read on ``reference_prompts``
        (prompts like the traffic it will route; at least two). The members are ``routers``
        themselves, not copies: :meth:`fit` on the ensemble refits them in place."""
        routers = list(routers)
        for i, router in enumerate(routers):
            if not isinstance(router, Router):
                raise ConfigError(
                    f"router {i} is a {type(router).__name__}, not a trained lmroute Router "
                    "(load one first: lmroute.load_router(name_or_dir))"
                )
        if isinstance(reference_prompts, str):  # its characters would be the reference prompts
            raise ConfigError("reference_prompts must be a sequence of prompts, not a single string")
        weights = [1.0] * len(routers) if weights is None else list(weights)
        if len(weights) != len(routers):
            raise ConfigError(f"{len(routers)} routers but {len(weights)} weights")
        members = [
            {"router": r.name, "options": r.config.model_dump(mode="json"), "weight": w}
            for r, w in zip(routers, weights, strict=True)
        ]
        prompts = list(reference_prompts)
        ensemble = cls(members=members, reference_prompts=max(2, len(prompts)))
        ensemble.members = list(routers)
        ensemble._set_references(prompts)
        return ensemble

    # -- collaborators ----------------------------------------------------------------------
    @property
    def embedder_name(self) -> str | None:
        """The embedder of the first member that embeds prompts (None: no member does)."""
        return next((m.embedder_name for m in self.members if m.embedder_name is not None), None)

    def use_embedder(self, embedder: Embedder) -> None:
        """Hand ``embedder`` to every member that embeds with an embedder of its name (a member
        with another embedder keeps its own); ConfigError when no member does."""
        takers = [m for m in self.members if m.embedder_name == embedder.name]
        if not takers:
            names = sorted({str(m.embedder_name) for m in self.members if m.embedder_name is not None})
            raise ConfigError(
                f"no member of this ensemble embeds with {embedder.name!r} (they use: "
                f"{', '.join(names) or 'none'})"
            )
        for member in takers:
            member.use_embedder(embedder)

    # -- learning ---------------------------------------------------------------------------
    def fit(self, battles: Sequence[Battle], *, progress: bool = False) -> Self:
        """Fit every member on ``battles``, then read their scales on a sample of its prompts."""
        battles = list(battles)  # read by every member and for the prompts: an iterator only once
        # Untrained until the end: a fit that fails half-way leaves the members before it refitted,
        # whose scores the old reference scores would misplace (an error, not silently moved scores).
        self._references = None
        for member in self.members:
            member.fit(battles, progress=progress)
        prompts = sorted({b.prompt for b in battles})
        if len(prompts) > self.config.reference_prompts:
            rng = np.random.default_rng(self.config.seed)
            take = rng.choice(len(prompts), size=self.config.reference_prompts, replace=False)
            prompts = [prompts[i] for i in np.sort(take)]
        self._set_references(prompts)
        return self

    def _set_references(self, prompts: list[str]) -> None:
        if len(set(prompts)) < 2:
            raise ConfigError("an ensemble needs at least two distinct reference prompts")
        self._references = [np.sort(m.score(prompts)) for m in self.members]
        # the members' own configs may have changed in training (e.g. the vocabulary): save those
        members = tuple(
            spec.model_copy(update={"options": m.config.model_dump(mode="json")})
            for spec, m in zip(self.config.members, self.members, strict=True)
        )
        self.config = self.config.model_copy(update={"members": members})
        self.metadata["members"] = [m.metadata for m in self.members]

    # -- scoring ----------------------------------------------------------------------------
    def _score(self, prompts: list[str]) -> np.ndarray:
        if self._references is None:
            raise LmrouteError("the ensemble router is not trained: fit() it or load a saved one")
        # Weights as fractions of the largest: weights of 1e308 summed to inf, and every score was 0.
        weights = np.array([spec.weight for spec in self.config.members])
        weights /= weights.max()
        total = np.zeros(len(prompts))
        for weight, member, reference in zip(weights, self.members, self._references, strict=True):
            total += weight * _quantiles(reference, member.score(prompts))
        return total / weights.sum()

    # -- persistence ------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        if self._references is None:  # saved, it would be a directory that cannot be loaded
            raise ConfigError("the ensemble router is not trained: fit() or combine() it before saving")
        arrays = {}
        for i, (member, reference) in enumerate(zip(self.members, self._references, strict=True)):
            arrays[f"{i}.{_REFERENCE}"] = reference
            arrays.update({f"{i}/{key}": value for key, value in member._arrays().items()})
        return arrays

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        saved = self.metadata.get("members")
        if not isinstance(saved, list) or len(saved) != len(self.members):
            raise CheckpointError("its metadata lacks the members' own metadata (metadata.members)")
        references = []
        for i, member in enumerate(self.members):
            if not isinstance(saved[i] or {}, dict):
                raise CheckpointError(f"member {i} ({member.name}): its metadata is not an object")
            member.metadata = dict(saved[i] or {})  # some members read their vocabulary from it
            reference = arrays.get(f"{i}.{_REFERENCE}")
            if reference is None or reference.ndim != 1 or len(reference) < 2:
                raise CheckpointError(f"member {i} ({member.name}) has no reference scores")
            references.append(np.asarray(reference, dtype=np.float64))
            prefix = f"{i}/"
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            try:
                member._load_arrays(own)
            except CheckpointError as exc:
                raise CheckpointError(f"member {i} ({member.name}): {exc}") from None
        self._references = references

    def _write_files(self, directory: Path) -> None:
        for i, member in enumerate(self.members):
            member._write_files(directory / _MEMBERS / str(i))

    def _use_files(self, directory: Path) -> None:
        for i, member in enumerate(self.members):
            try:
                member._use_files(directory / _MEMBERS / str(i))
            except CheckpointError as exc:
                raise CheckpointError(f"member {i} ({member.name}): {exc}") from None

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        members = config.get("members")
        if not isinstance(members, list):
            return config
        upgraded = []
        for member in members:
            if isinstance(member, dict) and isinstance(member.get("options"), dict):
                try:
                    member_class = get_router_class(str(member.get("router")))
                except LmrouteError:
                    pass  # validation names the unknown router
                else:
                    member = {**member, "options": member_class._saved_config(member["options"])}
            upgraded.append(member)
        return {**config, "members": upgraded}


def _build(member: Member, embedder: Embedder | None) -> Router:
    try:
        cls = get_router_class(member.router)
    except LmrouteError as exc:
        raise ConfigError(f"ensemble member: {exc}") from None
    if cls.stochastic:
        raise ConfigError(f"ensemble member {member.router!r} is random: it adds nothing to an ensemble")
    return cls.create(member.options, embedder)


def _check_one_pair(members: list[Router]) -> None:
    """ConfigError when members compare different model pairs: the mean of P(A beats B) and
    P(C beats D) is the probability of neither (members that compare no pair, as length, agree)."""
    pairs = {
        (i, m.name): (m.config.strong_model, m.config.weak_model)
        for i, m in enumerate(members)
        if hasattr(m.config, "strong_model") and hasattr(m.config, "weak_model")
    }
    if len(set(pairs.values())) > 1:
        compared = "; ".join(f"member {i} ({name}) {s} vs {w}" for (i, name), (s, w) in pairs.items())
        raise ConfigError(
            f"the ensemble's members compare different model pairs ({compared}): give every member "
            "the same strong_model and weak_model"
        )


def _quantiles(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Where each score falls among the sorted ``reference`` scores, in [0, 1] (ties: mid-rank)."""
    below = np.searchsorted(reference, scores, side="left")
    not_above = np.searchsorted(reference, scores, side="right")
    return (below + not_above) / (2.0 * len(reference))
