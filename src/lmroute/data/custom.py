"""Custom benchmark files: each prompt's score (and optionally cost) for any number of models.

The one reader of the format, for two-model evaluation (:func:`lmroute.data.benchmarks.load_custom`),
N-model evaluation and golden-label training (``gold:FILE`` sources). JSONL, one item a line::

    {"prompt": "...", "scores": {"model-a": 1, "model-b": 0.5}, "cost": {"model-a": 0.002},
     "id": "q1", "category": "math"}

or CSV with a ``prompt`` column, optional ``id`` and ``category`` columns, and one score column per
model. A line may leave models out (an empty CSV cell): many-model result files often miss a few.
A model without a score on a line is NaN there; every line gives costs or none does, for the models
the first line prices (as far as the line scores them), else NaN. Users of the table
keep the rows that have every model they need and count the others (:meth:`ScoreTable.complete`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from lmroute._jsonl import read_jsonl_objects
from lmroute.data.fields import cost_value, read_csv_rows, score_value
from lmroute.exceptions import DataError, UnknownModelError

_NOT_MODELS = ("prompt", "id", "category")
V = TypeVar("V")


@dataclass(frozen=True)
class ScoreTable:
    """Prompts and each model's score (and cost, where given) on them; NaN where a line has none.

    ``costs`` holds only the models with a cost on at least one line.
    """

    name: str
    prompts: tuple[str, ...]
    scores: Mapping[str, np.ndarray]
    costs: Mapping[str, np.ndarray] = field(default_factory=dict)
    ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def models(self) -> list[str]:
        """Every model with a score on some line, sorted."""
        return sorted(self.scores)

    def complete(self, models: Sequence[str]) -> tuple[ScoreTable, int]:
        """The rows on which every one of ``models`` has a score, restricted to those models, and
        how many rows were skipped for lacking one; UnknownModelError for a model on no line."""
        unknown = [m for m in models if m not in self.scores]
        if unknown:
            raise UnknownModelError(
                f"model(s) {', '.join(unknown)} not in {self.name!r}; it has: {', '.join(self.models)}"
            )
        keep = np.ones(len(self.prompts), dtype=bool)
        for model in models:
            keep &= np.isfinite(self.scores[model])
        if not keep.any():
            raise DataError(f"{self.name}: no line has a score for every one of {', '.join(models)}")
        idx = np.flatnonzero(keep)
        table = ScoreTable(
            self.name,
            tuple(self.prompts[i] for i in idx),
            {m: self.scores[m][idx] for m in models},
            {m: self.costs[m][idx] for m in models if m in self.costs},
            tuple(self.ids[i] for i in idx) if self.ids else (),
            tuple(self.categories[i] for i in idx) if self.categories else (),
        )
        return table, int(len(self.prompts) - idx.size)


def read_custom(path: str | Path) -> ScoreTable:
    """The items of a custom benchmark file (JSONL or ``.csv``), every failure a DataError naming
    the file and line."""
    path = Path(path)
    prompts: list[str] = []
    ids: list[str] = []
    categories: list[str] = []
    rows: list[dict[str, float]] = []
    cost_rows: list[dict[str, float]] = []
    if path.suffix.lower() == ".csv":
        for n, row in read_csv_rows(path, required=("prompt",)):
            if not row["prompt"].strip():
                raise DataError(f"{path}:{n}: 'prompt' is empty")
            prompts.append(row["prompt"])
            ids.append(str(row.get("id") or n))
            categories.append(str(row.get("category") or ""))
            cells = _model_names({m: v for m, v in row.items() if m not in _NOT_MODELS}, path, 1)
            rows.append({m: score_value(v, path, n, m) for m, v in cells.items() if v.strip()})
            cost_rows.append({})
    else:
        costed: set[str] | None = None  # the first line's cost models; None: no line has costs
        for n, record in read_jsonl_objects(path, what="benchmark items"):
            prompt, values = record.get("prompt"), record.get("scores")
            if not isinstance(prompt, str) or not prompt.strip():
                raise DataError(f"{path}:{n}: 'prompt' must be a non-empty string")
            if not isinstance(values, dict) or not values:
                raise DataError(f"{path}:{n}: 'scores' must be an object of model -> number")
            values = _model_names(values, path, n)
            if isinstance(record.get("cost"), dict):
                record = {**record, "cost": _model_names(record["cost"], path, n)}
            line_costs = _line_costs(record, values, costed, where=(path, n), first=not prompts)
            if not prompts and line_costs:
                costed = set(line_costs)
            prompts.append(prompt)
            ids.append(str(record.get("id", len(ids))))
            categories.append(str(record.get("category", "")))
            rows.append({m: score_value(v, path, n, m) for m, v in values.items()})
            cost_rows.append(line_costs)
    if not prompts:
        raise DataError(f"{path} has no benchmark items")
    models = sorted({m for row in rows for m in row})
    if not models:
        raise DataError(f"{path}: needs a 'prompt' column and one score column per model")
    priced = sorted({m for row in cost_rows for m in row})
    return ScoreTable(
        path.stem,
        tuple(prompts),
        {m: np.array([row.get(m, np.nan) for row in rows], dtype=np.float64) for m in models},
        {m: np.array([row.get(m, np.nan) for row in cost_rows], dtype=np.float64) for m in priced},
        tuple(ids),
        tuple(categories) if any(categories) else (),
    )


def _model_names(values: Mapping[str, V], path: Path, line: int) -> dict[str, V]:
    """``values`` keyed by model names without surrounding spaces, as the battle readers keep them
    (so ``"gpt-4 "`` here is the ``gpt-4`` of a battles file); an empty name, or two that differ
    only in such spaces, is a DataError: each would make a model of its own."""
    named: dict[str, V] = {}
    for name, value in values.items():
        model = name.strip()
        if not model:
            raise DataError(f"{path}:{line}: a model name is empty")
        if model in named:
            raise DataError(f"{path}:{line}: model {model!r} is named twice")
        named[model] = value
    return named


def _line_costs(
    record: Mapping[str, object],
    scores: Mapping[str, object],
    costed: set[str] | None,
    *,
    where: tuple[Path, int],
    first: bool,
) -> dict[str, float]:
    """A line's ``cost`` object as floats. Every line gives costs or none does; each line prices the
    first line's cost models that it scores (lines may leave models out); a cost needs a score."""
    path, line = where
    cost = record.get("cost")
    if cost is None:
        if costed is not None:
            raise DataError(
                f"{path}:{line}: no 'cost', but earlier lines have costs: give every line's costs or none"
            )
        return {}
    if not isinstance(cost, dict) or not cost:
        raise DataError(f"{path}:{line}: 'cost' must be an object of model -> number, got {cost!r}")
    if not first and costed is None:
        raise DataError(
            f"{path}:{line}: 'cost' here, but not on the lines before: give every line's costs or none"
        )
    for model in cost:
        if model not in scores:
            raise DataError(f"{path}:{line}: a cost for {model!r}, which has no score")
    if costed is not None and set(cost) != costed & set(scores):
        differ = ", ".join(sorted((costed & set(scores)) ^ set(cost)))
        raise DataError(f"{path}:{line}: cost models differ from the first line's ({differ})")
    return {m: cost_value(v, path, line, m) for m, v in cost.items()}
