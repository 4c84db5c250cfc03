"""How onboarding grows with the probe set (``kind: onboarding-curve`` experiment files).

On one multi-model file, prompts are split by question into a training part and a test part
(``test_fraction``). Three routers are trained on the training part's golden labels: *base*
without the new model, *full* with all of it, and the base router onboarded with the new model's
outcomes on ``probe_sizes`` training prompts (each size drawn ``repeats`` times, the base router
frozen: :meth:`lmroute.routers.base.Router.onboard`). Each routes the test part among the
candidates, the new model included (base: without it), and is scored by AIQ
(:mod:`lmroute.evaluation.routing`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmroute.catalogue import Catalogue, read_prices
from lmroute.data.custom import read_custom
from lmroute.evaluation.routing import evaluate_choices
from lmroute.exceptions import ConfigError
from lmroute.routers.base import Router
from lmroute.workflows.experiment import RouterSpec
from lmroute.workflows.n_models import (
    check_n_model_router,
    file_label,
    grouped_splits,
    question_groups,
    take_rows,
    train_on,
)
from lmroute.workflows.onboard import battles_against_known

if TYPE_CHECKING:
    from lmroute.embeddings.base import Embedder


class OnboardCurveConfig(BaseModel):
    """An onboarding experiment (a YAML file with ``kind: onboarding-curve``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["onboarding-curve"]
    file: str
    #: The model to onboard; it must be scored on every line of ``file``.
    model: str
    #: Candidate models of the routing (the new model is added); default: every model of the file.
    models: list[str] = Field(default_factory=list)
    prices: str
    router: RouterSpec
    # checked here, not after the routers' training: an empty list or a size below 1 failed there
    probe_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [50, 100, 300, 1000], min_length=1
    )
    repeats: int = Field(default=3, ge=1)
    prior: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    #: The test part is one of ``round(1 / test_fraction)`` folds by question.
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    max_pairs: int | None = Field(default=40, ge=1)
    knobs: int = Field(default=200, ge=2)
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed (a traceback)

    @field_validator("test_fraction")
    @classmethod
    def _two_folds_at_least(cls, value: float) -> float:
        if round(1 / value) < 2:  # one fold: no training part
            raise ValueError(f"test_fraction {value} leaves no training part: at most 2/3 (one of two folds)")
        return value


@dataclass
class OnboardCurveResult:
    config: OnboardCurveConfig
    #: rows of (label, probe prompts, repeat, AIQ, reach cost, saving)
    rows: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(), "facts": self.facts, "rows": self.rows}

    def markdown(self) -> str:
        f = self.facts
        lines = [
            f"# Onboarding {self.config.model} on {f['file']}",
            "",
            f"{f['train_prompts']} training prompts, {f['test_prompts']} test prompts, "
            f"{f['candidates']} candidate "
            f"models; AIQ of the lambda policy on the test prompts (mixing baseline {f['hull_aiq']:.4f}).",
            "",
            "| router | probe prompts | AIQ (mean of repeats) | min–max | vs full |",
            "|---|---:|---:|---:|---:|",
        ]
        full = next(r["aiq"] for r in self.rows if r["label"] == "full")
        groups: dict[tuple[str, int], list[float]] = {}
        for r in self.rows:
            groups.setdefault((r["label"], r["probe"]), []).append(r["aiq"])
        for (label, probe), values in groups.items():
            lines.append(
                f"| {label} | {probe} | {np.mean(values):.4f} | {min(values):.4f}–{max(values):.4f} | "
                f"{np.mean(values) - full:+.4f} |"
            )
        return "\n".join(lines)


def run_onboard_curve(
    config: OnboardCurveConfig,
    *,
    data_dir: str | Path,
    config_dir: str | Path = ".",
    embedder: Embedder | None = None,
    log: Callable[[str], None] | None = None,
) -> OnboardCurveResult:
    """Train base and full, onboard at every probe size, evaluate all on the test part."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    # found after the full and the base router had trained (sw_ranking cannot onboard)
    router = check_n_model_router(config.router, embedder)
    if type(router).onboard is Router.onboard:
        router.onboard(config.model, [])  # raises the router's own error
    prices_path = (
        Path(config.prices) if Path(config.prices).is_absolute() else Path(config_dir) / config.prices
    )
    table = read_custom(Path(data_dir) / config.file)
    candidates = list(dict.fromkeys([*(config.models or table.models), config.model]))
    if len(candidates) < 3:  # found after the full router had trained: the base one had one model
        raise ConfigError(
            f"{config.file}: the base router learns the candidates other than {config.model} "
            f"({', '.join(m for m in candidates if m != config.model)}): give models: two at least"
        )
    rows, skipped = table.complete(candidates)
    if skipped:
        say(f"{skipped} lines lack a candidate's score: left out")
    folds = round(1 / config.test_fraction)
    train_idx, test_idx = grouped_splits(question_groups(rows.prompts), folds, seed=config.seed)[0]
    if max(config.probe_sizes) > len(train_idx):
        raise ConfigError(
            f"probe sizes go up to {max(config.probe_sizes)} but there are {len(train_idx)} training prompts"
        )
    train = take_rows(rows, train_idx)
    known = [m for m in train.scores if m != config.model]
    base_train = take_rows(rows, train_idx, models=known)
    test_prompts = [rows.prompts[i] for i in test_idx]
    scores = np.column_stack([rows.scores[m][test_idx] for m in candidates])
    catalogue = Catalogue.from_prices(candidates, read_prices(prices_path), where=str(prices_path))
    costs = catalogue.costs(test_prompts)
    mean_costs = costs.mean(axis=0)  # every AIQ over the range of all candidates, the new one included
    result = OnboardCurveResult(config)

    def record(label: str, probe: int, repeat: int, predicted: np.ndarray, models: list[str]) -> None:
        keep = [candidates.index(m) for m in models]
        ev = evaluate_choices(
            models,
            scores[:, keep],
            costs[:, keep],
            {label: (predicted, costs[:, keep])},
            knobs=config.knobs,
            oracle=False,
            benchmark=table.name,
            cost_range=(float(mean_costs.min()), float(mean_costs.max())),
        )
        if len(models) == len(candidates):
            result.facts.setdefault("hull_aiq", ev.baseline.aiq)
        curve = ev.curves[0]
        result.rows.append(
            {
                "label": label,
                "probe": probe,
                "repeat": repeat,
                "aiq": curve.aiq,
                "reach_cost": curve.reach_cost,
                "saving": curve.saving,
            }
        )
        say(f"  {label} ({probe} probe prompts, repeat {repeat}): AIQ {curve.aiq:.4f}")

    say(f"[{table.name}] training the full router ({len(train_idx)} prompts, {len(candidates)} candidates)")
    full = train_on(
        [train],
        candidates,
        max_pairs=config.max_pairs,
        seed=config.seed,
        spec=config.router,
        embedder=embedder,
    )
    record("full", len(train_idx), 0, full.predict_quality(test_prompts, candidates), candidates)
    say(f"[{table.name}] training the base router (without {config.model})")
    base = train_on(
        [base_train],
        None,
        max_pairs=config.max_pairs,
        seed=config.seed,
        spec=config.router,
        embedder=embedder,
    )
    others = [m for m in candidates if m != config.model]
    record("base (without it)", 0, 0, base.predict_quality(test_prompts, others), others)
    rng = np.random.default_rng(config.seed)
    for size in [*config.probe_sizes, len(train_idx)]:
        for repeat in range(config.repeats if size < len(train_idx) else 1):
            probe = take_rows(train, np.sort(rng.choice(len(train_idx), size=size, replace=False)))
            battles = battles_against_known(probe, config.model, base.vocabulary)
            taught = base.onboard(config.model, battles, prior=config.prior)
            record("onboarded", size, repeat, taught.predict_quality(test_prompts, candidates), candidates)
    result.facts.update(
        {
            "file": file_label(config.file),
            "train_prompts": len(train_idx),
            "test_prompts": len(test_idx),
            "candidates": len(candidates),
            "skipped_lines": skipped,
        }
    )
    return result


def write_onboard_curve(result: OnboardCurveResult, out: str | Path) -> list[Path]:
    """Write ``results.md`` and ``results.json``."""
    from lmroute._files import write_atomic, write_json

    out = Path(out)
    return [
        write_atomic(out / "results.md", (result.markdown() + "\n").encode("utf-8")),
        write_json(out / "results.json", result.to_dict()),
    ]
