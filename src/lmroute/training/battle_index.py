"""Battles as index arrays, the form the solvers of battle-trained routers (``mf``, ``sw_ranking``) take."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Real

import numpy as np

from lmroute.data.battles import Battle
from lmroute.exceptions import DataError
from lmroute.training.bradley_terry import outcome_codes


@dataclass(frozen=True)
class IndexedBattles:
    """Battles as index arrays: distinct prompts, the model vocabulary, and per battle its codes."""

    prompts: list[str]
    models: list[str]
    prompt: np.ndarray  # (n,) index into prompts
    a: np.ndarray  # (n,) index into models
    b: np.ndarray
    outcome: np.ndarray  # (n,) 0 = model_a won, 1 = model_b won, 2 = tie
    weight: np.ndarray  # (n,) how many battles each counts as
    #: Battles dropped because a model met itself (they say nothing about a pair of models).
    self_battles: int


def checked_battles(battles: Iterable[Battle]) -> list[Battle]:
    """``battles`` as a list, or a DataError naming the first item that is not a Battle, whose
    models are not named or whose weight is not a positive finite number. Battles built in code
    skip the readers' checks: a NaN weight would train a router to score 0.5 everywhere without a
    word, a model named ``""`` a router whose checkpoint cannot be loaded, and a name that is not a
    string failed with a TypeError where the vocabulary is sorted."""
    if isinstance(battles, (str, bytes)):
        raise DataError("battles must be a sequence of lmroute Battles, not a string")
    listed = list(battles)
    for i, battle in enumerate(listed):
        if not isinstance(battle, Battle):
            raise DataError(f"battle {i} is a {type(battle).__name__}, not an lmroute Battle")
        for name in (battle.model_a, battle.model_b):
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"battle {i} has model {name!r}: a model name is a non-blank string")
        weight = battle.weight
        if isinstance(weight, bool) or not isinstance(weight, Real) or not 0 < weight < math.inf:
            raise DataError(f"battle {i} has weight {weight!r}: a weight is a positive finite number")
    return listed


def index_battles(battles: Iterable[Battle]) -> IndexedBattles:
    """Index battles for training; the vocabulary is every model that appears, sorted by name.
    Battles are checked as :func:`checked_battles` does."""
    battles = checked_battles(battles)
    kept = [x for x in battles if x.model_a != x.model_b]
    if not kept:
        raise DataError("no battles between two different models to train on")
    models = sorted({x.model_a for x in kept} | {x.model_b for x in kept})
    model_index = {m: i for i, m in enumerate(models)}
    prompt_index: dict[str, int] = {}
    prompt = np.fromiter(
        (prompt_index.setdefault(x.prompt, len(prompt_index)) for x in kept), dtype=np.int64, count=len(kept)
    )
    return IndexedBattles(
        prompts=list(prompt_index),
        models=models,
        prompt=prompt,
        a=np.array([model_index[x.model_a] for x in kept], dtype=np.int64),
        b=np.array([model_index[x.model_b] for x in kept], dtype=np.int64),
        outcome=outcome_codes([x.winner for x in kept]),
        weight=np.fromiter((x.weight for x in kept), dtype=np.float64, count=len(kept)),
        self_battles=len(battles) - len(kept),
    )
