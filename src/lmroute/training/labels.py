"""Battle outcomes as classifier targets: how often the strong side won, tied or lost, per prompt.

The classifier routers (``bert``, ``causal_llm``) learn one distribution per prompt over three
classes, as in the paper: the strong model wins / a tie / the weak model wins. A battle between
the configured ``strong_model`` and ``weak_model`` maps directly. Any other battle needs to know
which side is the "strong" one: here it is the side with the higher Bradley–Terry rating, fitted
on all the training battles at once; battles whose two models are closer than ``min_rating_gap``
tell little about "strong vs weak" and are left out.

Both ties (``tie`` and ``tie (bothbad)``) are the tie class. Battles are aggregated per distinct
prompt, so a prompt judged 60 times (AlpacaEval) and a gold item judged once each give one
training example: its soft target is the mean of its battles' outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lmroute.data.battles import Battle
from lmroute.exceptions import DataError
from lmroute.training.bradley_terry import count_wins, fit_ratings, outcome_codes

STRONG, TIE, WEAK = 0, 1, 2
CLASSES: tuple[str, ...] = ("strong", "tie", "weak")

_SIDE_A, _SIDE_B = 0, 1


@dataclass(frozen=True)
class OutcomeTargets:
    """Distinct training prompts and the counts of each outcome class among their battles."""

    prompts: list[str]
    #: ``(len(prompts), 3)`` weighted counts of battles won by the strong side, tied, won by the weak side.
    counts: np.ndarray
    #: Battles that gave a label (the rest were between models closer than the rating gap).
    used: int
    dropped: int
    #: Bradley–Terry ratings (natural-log scale, sum zero) of every model in the battles.
    ratings: dict[str, float] = field(default_factory=dict)

    def probabilities(self) -> np.ndarray:
        """Each prompt's outcome distribution: ``counts`` normalised per row."""
        return self.counts / self.counts.sum(axis=1, keepdims=True)

    def summary(self) -> dict[str, object]:
        """JSON-ready facts about the targets, for a checkpoint's metadata."""
        totals = self.counts.sum(axis=0)
        return {
            "prompts": len(self.prompts),
            "battles_used": self.used,
            "battles_dropped_close_ratings": self.dropped,
            "outcome_shares": {
                c: round(float(t / totals.sum()), 4) for c, t in zip(CLASSES, totals, strict=True)
            },
        }


def outcome_targets(
    battles: Sequence[Battle],
    *,
    strong_model: str,
    weak_model: str,
    min_rating_gap: float = 0.0,
) -> OutcomeTargets:
    """Per-prompt outcome counts (strong side wins / tie / weak side wins) from battles.

    A battle between ``strong_model`` and ``weak_model`` maps directly; any other pair is oriented
    by Bradley–Terry ratings fitted on all ``battles`` and kept only when the ratings differ by
    more than ``min_rating_gap`` (natural-log scale: 0.7 is 2:1 odds, about 120 Elo).
    """
    battles = list(battles)
    if not battles:
        raise DataError("no training battles: give at least one source of preference data")
    if min_rating_gap < 0:
        raise DataError(f"min_rating_gap must be >= 0, got {min_rating_gap}")
    models = sorted({m for b in battles for m in (b.model_a, b.model_b)})
    index = {m: i for i, m in enumerate(models)}
    a = np.fromiter((index[b.model_a] for b in battles), dtype=np.int64, count=len(battles))
    b_ = np.fromiter((index[b.model_b] for b in battles), dtype=np.int64, count=len(battles))
    outcome = outcome_codes([b.winner for b in battles])
    weight = np.fromiter((b.weight for b in battles), dtype=np.float64, count=len(battles))
    # A small penalty keeps the ratings finite when a model never lost (no MLE exists then).
    wins = count_wins(a, b_, outcome, len(models), weights=weight, same_player="drop")
    ratings = fit_ratings(wins, l2=1e-4)

    strong_side = np.where(ratings[a] >= ratings[b_], _SIDE_A, _SIDE_B)
    keep = (np.abs(ratings[a] - ratings[b_]) > min_rating_gap) & (a != b_)
    if strong_model in index and weak_model in index:
        s, w = index[strong_model], index[weak_model]
        direct_a = (a == s) & (b_ == w)
        direct_b = (a == w) & (b_ == s)
        strong_side = np.where(direct_a, _SIDE_A, np.where(direct_b, _SIDE_B, strong_side))
        keep |= direct_a | direct_b

    # Outcome codes: 0 = model_a won, 1 = model_b won, 2 = tie.
    label = np.where(outcome == 2, TIE, np.where((outcome == 0) == (strong_side == _SIDE_A), STRONG, WEAK))
    rows: dict[str, int] = {}
    prompt_row = np.empty(len(battles), dtype=np.int64)
    for i, battle in enumerate(battles):
        prompt_row[i] = rows.setdefault(battle.prompt, len(rows))
    kept_rows, kept_labels = prompt_row[keep], label[keep]
    if kept_rows.size == 0:
        raise DataError(
            f"none of the {len(battles)} training battles gives a label: they are all between models "
            f"rated within min_rating_gap={min_rating_gap} of each other; lower min_rating_gap or add "
            f"battles of {strong_model} vs {weak_model}"
        )
    counts = np.zeros((len(rows), len(CLASSES)))
    np.add.at(counts, (kept_rows, kept_labels), weight[keep])
    present = counts.sum(axis=1) > 0
    prompts = [p for p, r in rows.items() if present[r]]
    return OutcomeTargets(
        prompts=prompts,
        counts=counts[present],
        used=int(keep.sum()),
        dropped=int((~keep).sum()),
        ratings={m: round(float(r), 6) for m, r in zip(models, ratings, strict=True)},
    )


def score_targets(probabilities: np.ndarray, *, tie_share: float) -> np.ndarray:
    """The binary target "routing to the strong model pays": P(strong) + ``tie_share`` * P(tie)."""
    return probabilities[:, STRONG] + tie_share * probabilities[:, TIE]
