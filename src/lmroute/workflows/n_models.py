"""Experiments on routing among N models with prices (``kind: n-models`` experiment files).

* ``cross-fit``: on each multi-model file, prompts are split into ``folds`` folds (by question
  text: prompts that differ only in their answer options stay together); each fold's qualities
  are predicted by a router trained on golden labels of the other folds only. With ``shrink``
  (the default), one more fold of those is held out of the router's training as validation, and
  the predictions are shrunk toward each model's mean score on the training folds by a factor
  chosen on that validation fold (:mod:`lmroute.shrinkage`): nothing of the evaluated fold is used.
* ``leave-one-source-out``: for each file, a router trained on the golden labels of every other
  file predicts it whole; only the file's models that the training data also holds can be routed.

Each file is then evaluated as :mod:`lmroute.evaluation.routing` does: the router's curve over a
sweep of the policy's knob against every single model, their hull (the mixing baseline) and the
oracle. Costs are estimated from the price file (``prices``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmroute.catalogue import Catalogue, read_prices
from lmroute.data.custom import ScoreTable, read_custom
from lmroute.evaluation.routing import CostQualityEvaluation, evaluate_choices
from lmroute.exceptions import ConfigError, DataError
from lmroute.shrinkage import QualityShrinkage, fit_shrinkage
from lmroute.workflows.experiment import RouterSpec, cross_fit_splits

if TYPE_CHECKING:
    from lmroute.embeddings.base import Embedder
    from lmroute.routers.base import Router

NProtocol = Literal["cross-fit", "leave-one-source-out"]
_PROTOCOLS: tuple[NProtocol, ...] = ("cross-fit", "leave-one-source-out")


class NModelExperimentConfig(BaseModel):
    """An N-model routing experiment (a YAML file with ``kind: n-models``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["n-models"]
    #: Multi-model custom benchmark files, relative to the data directory.
    files: list[str] = Field(min_length=1)
    protocols: list[NProtocol] = Field(default_factory=lambda: list(_PROTOCOLS), min_length=1)
    #: Price file (relative to the experiment file's folder, or absolute).
    prices: str
    router: RouterSpec
    #: Candidates per file label (:func:`file_label`); default: the file's priced models scored on at least
    #: ``min_coverage`` of its lines (lines lacking one are skipped and counted).
    models: dict[str, list[str]] = Field(default_factory=dict)
    min_coverage: float = Field(default=0.9, ge=0, le=1)
    #: Golden-label battles sampled per training prompt (all pairs: None).
    max_pairs: int | None = Field(default=40, ge=1)
    folds: int = Field(default=10, ge=2)
    policy: Literal["lambda", "quality"] = "lambda"
    knobs: int = Field(default=200, ge=2)
    #: Cross-fit: shrink the predictions toward each model's mean score (:mod:`lmroute.shrinkage`),
    #: chosen on a validation fold of the training folds.
    shrink: bool = True
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed (a traceback)

    @model_validator(mode="after")
    def _labels(self) -> NModelExperimentConfig:
        # Files are told apart, and models: is keyed, by label: a misspelt one was silently unused.
        labels = [file_label(f) for f in self.files]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"files: two files have the label {repeated[0]!r} (their folder or stem)")
        if len(set(self.protocols)) < len(self.protocols):  # it ran twice, its routers trained twice
            raise ValueError(f"protocols: {', '.join(self.protocols)}: one is given twice")
        # A run that evaluates nothing wrote empty results over the output folder's.
        if set(self.protocols) == {"leave-one-source-out"} and len(self.files) < 2:
            raise ValueError(
                "protocol leave-one-source-out needs two files at least: each is predicted by a router "
                "trained on the others"
            )
        for label, candidates in self.models.items():
            # one model failed after the first fold's training ("shrinkage needs at least two
            # models"), a repeated one without naming the entry
            if len(set(candidates)) != len(candidates) or len(candidates) < 2:
                raise ValueError(f"models.{label}: {candidates} are not two or more different models")
        unknown = [name for name in self.models if name not in labels]
        if unknown:
            raise ValueError(
                f"models: {', '.join(map(repr, unknown))} is no file's label (the labels of files: "
                f"{', '.join(labels)})"
            )
        return self


@dataclass
class NModelResult:
    config: NModelExperimentConfig
    evaluations: dict[tuple[str, str], CostQualityEvaluation] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Cross-fit with ``shrink``: each fold's shrinkage factor alpha, per file.
    alphas: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "notes": self.notes,
            "shrinkage_alphas": self.alphas,
            "evaluations": [{"protocol": p, **ev.to_dict()} for (p, _), ev in self.evaluations.items()],
        }


def file_label(path: str) -> str:
    """A file's name in tables: its stem, or its folder's name for a generic stem
    (``mmlu-pro/outcomes.jsonl`` -> ``mmlu-pro``, ``zeroeval/crux.jsonl`` -> ``crux``)."""
    p = Path(path)
    return p.parent.name if p.stem in ("outcomes", "scores") and p.parent.name else p.stem


def question_groups(prompts: Sequence[str]) -> np.ndarray:
    """A group id per prompt: prompts whose text before their options (``\\nA) ``) is the same
    share one, so cross-fitting never trains on a question it scores."""
    keys = [p.split("\nA) ", 1)[0].strip() for p in prompts]
    _, groups = np.unique(np.array(keys, dtype=object), return_inverse=True)
    return groups.astype(np.int64)


def grouped_splits(groups: np.ndarray, folds: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`cross_fit_splits` over groups, as (train rows, held-out rows)."""
    splits = cross_fit_splits(int(groups.max()) + 1, folds, seed=seed)
    return [(np.flatnonzero(np.isin(groups, tr)), np.flatnonzero(np.isin(groups, te))) for tr, te in splits]


def run_n_model_experiment(
    config: NModelExperimentConfig,
    *,
    data_dir: str | Path,
    config_dir: str | Path = ".",
    embedder: Embedder | None = None,
    log: Callable[[str], None] | None = None,
) -> NModelResult:
    """Run every protocol on every file; see the module notes."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    check_n_model_router(config.router, embedder)
    prices_path = Path(config.prices)
    if not prices_path.is_absolute():
        prices_path = Path(config_dir) / prices_path
    prices = read_prices(prices_path)
    tables = {file_label(f): read_custom(Path(data_dir) / f) for f in config.files}
    result = NModelResult(config)
    # Every file's candidates and prices checked before any training: an unknown or unpriced model
    # of a later file was found only after the files before it had run.
    prepared = {}
    for name, table in tables.items():
        candidates = _candidates(name, table, config, prices)
        rows, skipped = table.complete(candidates)
        catalogue = Catalogue.from_prices(candidates, prices, where=str(prices_path))
        prepared[name] = (candidates, rows, skipped, catalogue.costs(list(rows.prompts)))
    for name, table in tables.items():
        candidates, rows, skipped, costs = prepared[name]
        scores = np.column_stack([rows.scores[m] for m in candidates])
        say(f"[{name}] {len(rows)} prompts ({skipped} skipped), {len(candidates)} models")
        for protocol in config.protocols:
            started = time.perf_counter()
            if protocol == "cross-fit":
                predicted, alphas = cross_fit_qualities(rows, table, candidates, config, embedder, say)
                models = candidates
                if config.shrink:
                    result.alphas[name] = alphas
            else:
                others = [t for n, t in tables.items() if n != name]
                # a router trained on the others knows at most their models: skip before training
                known = {m for t in others for m in t.models}
                if len(shared := [m for m in candidates if m in known]) < 2:
                    result.notes.append(_cannot_route(name, shared))
                    say(result.notes[-1])
                    continue
                router = train_on(
                    others,
                    None,
                    max_pairs=config.max_pairs,
                    seed=config.seed,
                    spec=config.router,
                    embedder=embedder,
                )
                models = [m for m in candidates if m in router.vocabulary]
                if len(models) < 2:
                    result.notes.append(_cannot_route(name, models))
                    say(result.notes[-1])
                    continue
                predicted = router.predict_quality(list(rows.prompts), models)
            keep = [candidates.index(m) for m in models]
            ev = evaluate_choices(
                models,
                scores[:, keep],
                costs[:, keep],
                {config.router.title: (predicted, costs[:, keep])},
                policy=config.policy,
                knobs=config.knobs,
                benchmark=name,
            )
            ev.skipped = skipped
            result.evaluations[(protocol, name)] = ev
            mine, hull = ev.curves[0], ev.baseline
            reach = (
                f"reaches the best model's quality at {mine.reach_cost:.3f} $/1k (saving {mine.saving:.0%})"
                if np.isfinite(mine.reach_cost)
                else "never reaches the best model's quality"
            )
            say(
                f"[{name}/{protocol}] AIQ {mine.aiq:.4f} vs hull {hull.aiq:.4f}; {reach} "
                f"({time.perf_counter() - started:.0f} s)"
            )
    if not result.evaluations:  # its results, notes only, replaced the output folder's
        raise DataError(f"nothing could be evaluated: {'; '.join(result.notes)}")
    return result


def _cannot_route(name: str, shared: list[str]) -> str:
    return (
        f"{name}: leave-one-source-out cannot route: the other files hold {len(shared)} of its "
        f"models ({', '.join(shared) or 'none'})"
    )


def _candidates(name: str, table: ScoreTable, config: NModelExperimentConfig, prices: dict) -> list[str]:
    if name in config.models:
        return list(config.models[name])
    n = len(table)
    covered = [m for m in table.models if np.isfinite(table.scores[m]).sum() >= config.min_coverage * n]
    unpriced = [m for m in covered if m not in prices]
    if unpriced:
        raise ConfigError(f"{name}: no price for {', '.join(unpriced)} in {config.prices}")
    if len(covered) < 2:
        raise DataError(f"{name}: fewer than two models cover {config.min_coverage:.0%} of its lines")
    return covered


def cross_fit_qualities(
    rows: ScoreTable,
    table: ScoreTable,
    candidates: list[str],
    config: NModelExperimentConfig,
    embedder: Embedder | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[np.ndarray, list[float]]:
    """Predicted qualities ``(len(rows), len(candidates))`` of every row of ``rows`` (the rows of
    ``table`` where every candidate has a score), each from a router (and a shrinkage) that never
    saw its question, and each fold's shrinkage factor (none without ``config.shrink``)."""
    groups = question_groups(rows.prompts)
    splits = grouped_splits(groups, config.folds, seed=config.seed)
    scores = np.column_stack([rows.scores[m] for m in candidates])
    predicted = np.full((len(rows), len(candidates)), np.nan)
    alphas: list[float] = []
    # training uses every model of the file on the training rows, not only the candidates
    index = {p: i for i, p in enumerate(table.prompts)}
    for k, (train_idx, held_idx) in enumerate(splits):
        val_idx = np.zeros(0, dtype=np.int64)
        if config.shrink:  # one fold's worth of the training rows validates the shrinkage
            inner_groups = np.unique(groups[train_idx], return_inverse=True)[1]
            inner = grouped_splits(inner_groups, max(config.folds - 1, 2), seed=config.seed + 1 + k)[0]
            train_idx, val_idx = train_idx[inner[0]], train_idx[inner[1]]
        router = train_on(
            [take_rows(table, np.array([index[rows.prompts[i]] for i in train_idx]))],
            candidates,
            max_pairs=config.max_pairs,
            seed=config.seed,
            spec=config.router,
            embedder=embedder,
        )
        held = router.predict_quality([rows.prompts[i] for i in held_idx], candidates)
        if config.shrink:
            shrinkage = _fit_fold_shrinkage(router, rows, scores, candidates, train_idx, val_idx)
            held = shrinkage.apply(held)
            alphas.append(shrinkage.alpha)
        predicted[held_idx] = held
        say(f"  fold {k + 1}/{len(splits)}" + (f" (alpha {alphas[-1]:.3f})" if config.shrink else ""))
    return predicted, alphas


def _fit_fold_shrinkage(
    router: Router,
    rows: ScoreTable,
    scores: np.ndarray,
    candidates: list[str],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
) -> QualityShrinkage:
    """The shrinkage of one fold, from its router's training rows and validation rows only."""

    def predict(idx: np.ndarray) -> np.ndarray:
        return router.predict_quality([rows.prompts[i] for i in idx], candidates)

    return fit_shrinkage(candidates, scores[train_idx], predict(train_idx), scores[val_idx], predict(val_idx))


def check_n_model_router(spec: RouterSpec, embedder: Embedder | None) -> Router:
    """The untrained router ``spec`` names; ConfigError, before any work, for one that cannot
    predict N models' qualities (bert, causal_llm) or whose options name what cannot be had. Such
    a router was refused only after the first fold's training (with bert: minutes of fine-tuning),
    or for lacking the pair options its training adds (length)."""
    from lmroute.registry import get_router_class

    router = get_router_class(spec.name).create(dict(spec.options), embedder)
    router.check_options()
    router.predict_quality([], ["a", "b"])  # no prompt: only whether it can
    return router


def train_on(
    tables: Sequence[ScoreTable],
    needed: list[str] | None,
    *,
    max_pairs: int | None,
    seed: int,
    spec: RouterSpec,
    embedder: Embedder | None = None,
) -> Router:
    """A router as ``spec`` says, trained on golden-label battles of every table (``max_pairs``
    sampled pairs per prompt); DataError if a ``needed`` model has no battle."""
    from lmroute.data.gold import battles_from_scores
    from lmroute.registry import get_router_class

    battles = []
    for i, t in enumerate(tables):
        battles += battles_from_scores(
            list(t.prompts),
            dict(t.scores),
            max_pairs_per_prompt=max_pairs,
            seed=seed + i,
            source=f"gold:{t.name}",
            name=t.name,
        )
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    if needed and (missing := [m for m in needed if m not in models]):
        raise DataError(f"no training battles of {', '.join(missing)}")
    # the pair names only the two-model score, which N-model prediction does not use
    options = {"strong_model": models[0], "weak_model": models[1], **spec.options}
    return get_router_class(spec.name).create(options, embedder).fit(battles, progress=False)


def take_rows(table: ScoreTable, idx: np.ndarray, *, models: Sequence[str] | None = None) -> ScoreTable:
    """The table's rows at ``idx`` (scores only), of ``models`` (default: all)."""
    return ScoreTable(
        table.name,
        tuple(table.prompts[i] for i in idx),
        {m: table.scores[m][idx] for m in (models if models is not None else table.scores)},
    )


def write_n_model_experiment(result: NModelResult, out: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.json`` (every point) and one plot per (protocol, file)."""
    from lmroute._files import write_atomic, write_json
    from lmroute.evaluation.plots import plot_cost_quality
    from lmroute.evaluation.routing import format_summary

    out = Path(out)
    sections = []
    for (protocol, name), ev in result.evaluations.items():
        alphas = result.alphas.get(name) if protocol == "cross-fit" else None
        shrunk = f"\nshrinkage alpha per fold: {', '.join(f'{a:.3f}' for a in alphas)}\n" if alphas else ""
        sections.append(f"## {name} ({protocol})\n\n{format_summary(ev)}\n{shrunk}")
    sections += [f"- {n}" for n in result.notes]
    markdown = "# N-model routing\n\n" + "\n".join(sections) + "\n"
    written = [
        write_atomic(out / "results.md", markdown.encode("utf-8")),
        write_json(out / "results.json", result.to_dict()),
    ]
    for (protocol, name), ev in result.evaluations.items():
        written.append(plot_cost_quality(ev, out / f"{protocol}-{name}.png"))
    return written
