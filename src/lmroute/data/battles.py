"""Preference battles: the one record every trainable router learns from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Winner = Literal["model_a", "model_b", "tie", "tie (bothbad)"]
WINNERS: tuple[str, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")


@dataclass(frozen=True, slots=True)
class Battle:
    """Two models answered ``prompt`` (the first user turn); ``winner`` says which did better."""

    prompt: str
    model_a: str
    model_b: str
    winner: Winner
    #: Where the record came from (``arena``, ``gold:mmlu``...), for provenance and licences.
    source: str = ""
