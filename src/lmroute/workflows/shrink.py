"""Fitting a router's quality shrinkage on a benchmark of the deployed models, for serving.

A router's N-model predictions are relative and noisy; routing on them as they are can do worse
than mixing the single models (:mod:`lmroute.shrinkage`). The cross-fitted experiments shrink them
toward each model's measured mean; this does the same for a router that is going to serve: its
predictions on a custom benchmark file with the deployed models' scores (in [0, 1], e.g. 1 for a
correct answer) give each model's mean score, its mean prediction and the factor ``alpha``, and the
router saved with them predicts on the benchmark's scale from then on.

    lmroute shrink --router mf --models A B C --benchmark my-benchmark.jsonl --out routers/mf-shrunk
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmroute.catalogue import parse_model_specs
from lmroute.data.custom import read_custom
from lmroute.exceptions import ConfigError, DataError
from lmroute.registry import load_router
from lmroute.routers.base import Router
from lmroute.shrinkage import fit_shrinkage


@dataclass(frozen=True)
class ShrinkResult:
    """The router with its shrinkage (not yet saved) and what was fitted from what."""

    router: Router
    #: Lines used and skipped, alpha, and per model its mean score and mean prediction.
    summary: dict[str, Any]


def shrink_router(router: str | Path | Router, benchmark: str | Path, models: Sequence[str]) -> ShrinkResult:
    """``router`` with a quality shrinkage fitted on ``benchmark`` for ``models`` (NAME, or
    SERVED=VOCABULARY where the file names the model SERVED); lines lacking one of them are skipped."""
    base = router if isinstance(router, Router) else load_router(router)
    # A shrinkage it has is refitted, so its models do not limit the new one's: a model onboarded
    # after it (or one more deployed) was refused as one "to refit with lmroute shrink".
    raw = base.with_shrinkage(None)
    pairs = parse_model_specs(models)
    if len(pairs) < 2:
        raise DataError(f"a shrinkage compares models: give at least two, got {pairs[0][0]}")
    # The router's own check would say "named twice" of a name given once, as the vocabulary side.
    for known in dict.fromkeys(v for _, v in pairs):
        same = [s for s, v in pairs if v == known]
        if len(same) > 1:
            raise ConfigError(
                f"{', '.join(same)} are one model of the router's vocabulary, {known}: a shrinkage fits "
                "one mean score per vocabulary model; give it once (every served name of it then shares "
                "that shrinkage)"
            )
    vocabulary = [v for _, v in pairs]
    # Before the benchmark is read: a router that cannot predict N models says so (no prompt embedded).
    raw.predict_quality([], vocabulary)
    table = read_custom(benchmark)
    served = [s for s, _ in pairs]
    missing = [s for s in served if s not in table.scores]
    if missing:
        have = ", ".join(table.models)
        raise DataError(f"{benchmark} has no scores of {', '.join(missing)}; it has: {have}")
    rows, skipped = table.complete(served)
    if len(rows) < 2:
        raise DataError(
            f"{benchmark}: {len(rows)} line(s) score all of {', '.join(served)}; a shrinkage needs more"
        )
    scores = np.column_stack([rows.scores[s] for s in served])
    if scores.min() < 0 or scores.max() > 1:
        raise DataError(
            f"{benchmark}: scores must be in [0, 1] to be a quality (found {scores.min():g} to "
            f"{scores.max():g}); rescale them, e.g. a 1-10 grade g to (g - 1) / 9"
        )
    predicted = raw.predict_quality(list(rows.prompts), vocabulary)
    empty = np.zeros((0, len(vocabulary)))
    shrinkage = fit_shrinkage(vocabulary, empty, empty, scores, predicted)
    shrunk = raw.with_shrinkage(shrinkage)
    origin = {"benchmark": str(benchmark), "lines": len(rows), "skipped": skipped}
    shrunk.metadata["quality_shrinkage_from"] = origin
    summary = {
        "router": base.name,
        **origin,
        "alpha": shrinkage.alpha,
        "models": {
            s: {"vocabulary": v, "mean_score": float(q), "mean_predicted": float(p)}
            for (s, v), q, p in zip(pairs, shrinkage.mean_quality, shrinkage.mean_predicted, strict=True)
        },
    }
    return ShrinkResult(shrunk, summary)
