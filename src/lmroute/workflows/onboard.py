"""Onboarding a model the router's training data did not have, from a small probe set.

A *probe file* says how the new model did on some prompts beside models the router knows: either
a custom benchmark file with the new model's scores and known models' scores on the same lines
(:mod:`lmroute.data.custom`; each line gives one golden-label battle per known model), or a
battles JSONL file of the new model against known models. The router fits only the new model's
parameters on those battles, every other weight frozen (:meth:`lmroute.routers.base.Router.onboard`;
``mf``: :mod:`lmroute.training.onboard`), and the result is saved as a new router directory.

    lmroute onboard --router mf --probe probe.jsonl --model my-model --out my-router
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmroute.data.battles import Battle
from lmroute.data.custom import ScoreTable, read_custom
from lmroute.exceptions import DataError
from lmroute.registry import load_router
from lmroute.routers.base import Router


@dataclass(frozen=True)
class OnboardResult:
    router: Router
    directory: Path
    summary: dict[str, Any]


def probe_battles(
    path: str | Path, model: str, known: Sequence[str]
) -> tuple[list[Battle], Counter[str], list[str]]:
    """The battles of ``model`` against the ``known`` models in a probe file (see the module notes),
    the lines of a battles file that made no battle, by reason (a missing winner...), and the probe's
    other models that are not ``known``, whose battles are left out."""
    path = Path(path)
    if _is_battles_file(path):
        from lmroute.data.battles import read_battles_jsonl

        read = read_battles_jsonl(path, source=f"probe:{path.name}")
        battles = [b for b in read.battles if model in (b.model_a, b.model_b)]
        if not battles:
            raise DataError(f"probe file {path} has no battle of {model!r}")
        met = {b.model_b if b.model_a == model else b.model_a for b in battles}
        return battles, read.dropped, sorted(met - {model} - set(known))
    table = read_custom(path)
    if model not in table.scores:
        raise DataError(f"probe file {path} has no scores of {model!r}; it has: {', '.join(table.models)}")
    others = [m for m in table.models if m != model]
    if not others:
        raise DataError(
            f"probe file {path} has scores of one model only ({model}): onboarding compares it with models "
            "the router knows, so each line needs their scores too"
        )
    opponents = [m for m in others if m in known]
    if not opponents:
        raise DataError(
            f"none of the probe file's other models ({', '.join(others)}) is in the router's vocabulary "
            f"({', '.join(known)})"
        )
    battles = battles_against_known(table, model, known, source=f"probe:{path.name}")
    return battles, Counter(), [m for m in others if m not in known]


def battles_against_known(
    table: ScoreTable, model: str, known: Sequence[str], *, source: str = "probe"
) -> list[Battle]:
    """Golden-label battles of ``model`` against each ``known`` model of the table, on every line
    where both have a score (:func:`lmroute.data.gold.battles_from_scores`)."""
    from lmroute.data.gold import battles_from_scores

    battles: list[Battle] = []
    for other in (m for m in table.models if m != model and m in known):
        battles += battles_from_scores(
            list(table.prompts), dict(table.scores), models=[model, other], source=source, name=table.name
        )
    return battles


def onboard(
    router: str | Path | Router, probe: str | Path, model: str, out: str | Path, **options: Any
) -> OnboardResult:
    """Teach ``router`` the model ``model`` from ``probe`` and save the result in ``out``."""
    base = router if isinstance(router, Router) else load_router(router)
    # Say what the router cannot do before what is wrong with the probe (sw_ranking has a vocabulary).
    if type(base).onboard is Router.onboard:
        base.onboard(model, [])  # raises the router's own error
    battles, dropped, unknown = probe_battles(probe, model, base.vocabulary)
    taught = base.onboard(model, battles, **options)
    taught.metadata.setdefault("onboarded_from", {})[model] = str(probe)
    directory = taught.save(out)
    summary = {
        "model": model,
        "router": base.name,
        "out": str(directory),
        **taught.metadata["onboarded"][model],
        "lines_dropped": dict(dropped),
        "unknown_models": unknown,
    }
    return OnboardResult(taught, directory, summary)


def _is_battles_file(path: Path) -> bool:
    """A JSONL file whose first record has ``model_a`` (battles), not ``scores`` (a benchmark)."""
    if path.suffix.lower() == ".csv":
        return False
    from lmroute._jsonl import read_lines

    for _, line in read_lines(path, what="probe items"):
        if line.strip():
            try:
                first = json.loads(line)
            # ValueError: a JSONDecodeError, or an integer of more digits than Python converts
            except (ValueError, RecursionError):
                return False  # the benchmark reader reports the line
            return isinstance(first, dict) and "model_a" in first and "scores" not in first
    raise DataError(f"probe file {path} is empty")
