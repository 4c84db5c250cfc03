"""Golden-label battles: turn known per-model outcomes on benchmark prompts into preference battles.

For a prompt and two models, the model with the higher score wins and equal scores tie. On a
correctness benchmark (every score 0 or 1) two wrong answers are ``tie (bothbad)``: neither
model is worth calling, which differs from both being right.

A benchmark of many models has many pairs per prompt (48 models: 1,128 pairs, ~900k battles on
800 prompts), so ``max_pairs_per_prompt`` samples that many distinct pairs per prompt, uniformly
and with a seeded local generator: every model appears about equally often and no pair is
preferred. To cover a chosen set of models completely instead, pass ``models`` (all their pairs).
A model without a score on a prompt (NaN, or absent from that line of a custom file) takes part
in no battle on it.

**Margins.** What routing gains on a prompt is the strong model's score minus the weak one's, and
on graded scores (MT-Bench's 1-10) a win by 8 points matters far more than a win by half a point.
So a decisive battle weighs its score gap divided by the mean gap of all decisive battles (mean
weight 1) and a tie weighs 1. On correctness scores every gap is 1: every weight is 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Literal

import numpy as np

from lmroute.data.battles import Battle
from lmroute.data.benchmarks import Benchmark
from lmroute.exceptions import ConfigError, DataError, UnknownModelError

_LABELS = ("model_a", "model_b", "tie", "tie (bothbad)")


def gold_battles(
    benchmark: Benchmark,
    *,
    models: Sequence[str] | None = None,
    max_pairs_per_prompt: int | None = None,
    seed: int = 0,
    bothbad_at: float | Literal["auto"] | None = "auto",
    weigh_margins: bool = True,
    source: str | None = None,
) -> list[Battle]:
    """Battles between a benchmark's models on each of its prompts (see :func:`battles_from_scores`).

    ``source`` defaults to ``gold:<benchmark name>``.
    """
    return battles_from_scores(
        benchmark.prompts,
        benchmark.scores,
        models=models,
        max_pairs_per_prompt=max_pairs_per_prompt,
        seed=seed,
        bothbad_at=bothbad_at,
        weigh_margins=weigh_margins,
        source=source or f"gold:{benchmark.name}",
        name=benchmark.name,
    )


def battles_from_scores(
    prompts: Sequence[str],
    scores: Mapping[str, Sequence[float] | np.ndarray],
    *,
    models: Sequence[str] | None = None,
    max_pairs_per_prompt: int | None = None,
    seed: int = 0,
    bothbad_at: float | Literal["auto"] | None = "auto",
    weigh_margins: bool = True,
    source: str = "gold",
    name: str = "scores",
) -> list[Battle]:
    """Battles labelled by ``scores[model][i]``, each model's quality on ``prompts[i]`` (NaN: none).

    ``models`` restricts the models (default: all, sorted; ``model_a`` is the earlier one of each
    pair). ``max_pairs_per_prompt`` samples at most that many of a prompt's pairs (None: all).
    Equal scores at or below ``bothbad_at`` are ``tie (bothbad)``; ``"auto"`` means 0 when every
    score is 0 or 1 and never otherwise (graded scores such as MT-Bench's 1-10 have no "wrong").
    ``weigh_margins`` weighs each decisive battle by its score gap (see the module notes); False
    gives every battle weight 1.
    """
    names = sorted(scores) if models is None else list(dict.fromkeys(models))
    unknown = [m for m in names if m not in scores]
    if unknown:
        raise UnknownModelError(
            f"model(s) {', '.join(unknown)} not in {name!r}; it has: {', '.join(sorted(scores))}"
        )
    if len(names) < 2:
        raise DataError(f"golden labels need at least two models; {name!r} gives {names}")
    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise ConfigError(f"max_pairs_per_prompt must be at least 1, got {max_pairs_per_prompt}")
    if seed < 0:  # numpy's generators take no negative seed
        raise ConfigError(f"{name!r}: seed must be 0 or more, got {seed}")
    table = np.stack([np.asarray(scores[m], dtype=np.float64) for m in names])  # (models, prompts)
    if table.shape[1] != len(prompts):
        raise DataError(f"{name!r}: {table.shape[1]} scores per model for {len(prompts)} prompts")
    scored = np.isfinite(table)
    if bothbad_at == "auto":
        bothbad_at = 0.0 if np.isin(table[scored], (0.0, 1.0)).all() else None
    pairs = np.array(list(combinations(range(len(names)), 2)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []  # (prompt index, model a, model b) of every battle
    for i in range(len(prompts)):
        valid = np.flatnonzero(scored[pairs[:, 0], i] & scored[pairs[:, 1], i])
        if max_pairs_per_prompt is not None and len(valid) > max_pairs_per_prompt:
            valid = np.sort(rng.choice(valid, size=max_pairs_per_prompt, replace=False))
        chosen.append(np.column_stack([np.full(len(valid), i), pairs[valid]]))
    item, a, b = np.concatenate(chosen).T if chosen else np.zeros((3, 0), dtype=np.int64)
    sa, sb = table[a, item], table[b, item]
    winner = np.where(sa > sb, 0, np.where(sa < sb, 1, 2))
    if bothbad_at is not None:
        winner[(winner == 2) & (sa <= bothbad_at)] = 3
    gap = np.abs(sa - sb)
    weight = np.ones(len(gap))
    if weigh_margins and (gap > 0).any():
        weight = np.where(gap > 0, gap / gap[gap > 0].mean(), 1.0)
    return [
        Battle(prompts[i], names[x], names[y], _LABELS[w], source, wt)  # type: ignore[arg-type]
        for i, x, y, w, wt in zip(
            item.tolist(), a.tolist(), b.tolist(), winner.tolist(), weight.tolist(), strict=True
        )
    ]
