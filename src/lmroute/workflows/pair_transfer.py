"""Pair transfer: do routers keep working when the deployed pair is not the one they learned?

The RouteLLM paper trains on GPT-4 vs Mixtral outcomes and shows its routers still help between
other models. This experiment takes a benchmark file with many models' outcomes per prompt,
evaluates each router *unchanged* on several (strong, weak) pairs and, where both models of a pair
are in a router's vocabulary, the same router asked about that pair (``with_models``), beside
``random`` and ``length``. Every figure has a bootstrap interval over the prompts, and the APGR
differences against the baselines (and against the unchanged router) are paired: the same
resamples for every router.

It is an experiment file for ``lmroute experiment`` with ``kind: pair-transfer``
(``experiments/pair-transfer.yaml``). A router is named (``mf``, a saved directory) or trained
by the run from source specs, e.g. without the benchmark's own labels for a held-out figure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmroute.data.benchmarks import Benchmark, load_benchmark
from lmroute.evaluation.evaluator import DEFAULT_SEEDS, score_prompts
from lmroute.evaluation.transfer import PAIR_AWARE, PairResult, compare_on_pair
from lmroute.exceptions import ConfigError, DataError, UnknownModelError
from lmroute.registry import get_router_class, load_router, report_name
from lmroute.workflows.experiment_config import check_row_names

if TYPE_CHECKING:
    from lmroute.routers.base import Router

KIND = "pair-transfer"


class TransferRouter(BaseModel):
    """A router of the experiment: a name or saved directory (``router``), or one the run trains
    (``train``: a registered router name, with ``sources``, ``options``, ``exclude_benchmarks``)."""

    model_config = ConfigDict(extra="forbid")
    router: str | None = None
    train: str | None = None
    label: str | None = None
    sources: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    exclude_benchmarks: list[str] = Field(default_factory=list)
    #: Also evaluate the router asked about each pair in its vocabulary.
    pair_aware: bool = True

    @model_validator(mode="after")
    def _one_way(self) -> TransferRouter:
        if (self.router is None) == (self.train is None):
            raise ValueError("give either router (a name or directory) or train (a router name to train)")
        if self.train is not None and not self.sources:
            raise ValueError(f"training {self.train} needs sources")
        if self.router is not None and (self.sources or self.options or self.exclude_benchmarks):
            raise ValueError("sources, options and exclude_benchmarks are for a router the run trains")
        return self

    @property
    def title(self) -> str:
        return self.label or str(self.router or self.train)


class TransferBenchmark(BaseModel):
    """A benchmark with many models' outcomes, and the pairs to route between on it."""

    model_config = ConfigDict(extra="forbid")
    #: A JSONL file of ``{"prompt", "scores": {model: x}}`` (the custom-benchmark format); a
    #: relative path is looked up in the data directory. Rows lacking a pair's model are skipped.
    file: str
    #: The benchmark's name in tables (default: the file's name without its suffix).
    name: str | None = None
    #: Keep only the prompts of this public benchmark (after its decontamination), e.g. ``gsm8k``.
    prompts_of: str | None = None
    pairs: list[tuple[str, str]] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> TransferBenchmark:
        for strong, weak in self.pairs:
            if strong == weak:
                raise ValueError(f"pair ({strong}, {weak}): the strong and the weak model must differ")
        return self


class PairTransferConfig(BaseModel):
    """A pair-transfer experiment (a YAML file with ``kind: pair-transfer``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["pair-transfer"]
    benchmarks: list[TransferBenchmark] = Field(min_length=1)
    routers: list[TransferRouter] = Field(min_length=1)
    baselines: list[str] = Field(default_factory=lambda: ["random", "length"])
    eval_protocol: Literal["paper", "exact"] = "paper"
    bootstrap: int = Field(default=1000, ge=1)
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed (a traceback)

    @model_validator(mode="after")
    def _row_names(self) -> PairTransferConfig:
        check_row_names([r.title for r in self.routers], self.baselines)
        # Two of one name (a file's stem) and pair: two table rows no one could tell apart, and the
        # later one's plot replaced the earlier one's.
        seen: set[tuple[str, str, str]] = set()
        for entry in self.benchmarks:
            name = entry.name or Path(entry.file).stem
            for strong, weak in entry.pairs:
                if (name, strong, weak) in seen:
                    raise ValueError(
                        f"benchmarks: {name}'s pair {strong} / {weak} is given twice: list a pair once, "
                        "and give two benchmarks of one file name each its own name"
                    )
                seen.add((name, strong, weak))
        return self


@dataclass
class PairTransferResult:
    config: PairTransferConfig
    pairs: list[PairResult] = field(default_factory=list)
    #: The baselines' row names.
    baselines: list[str] = field(default_factory=list)
    #: What the run skipped or trained, in words (rows without a pair's model, routers without a
    #: pair in their vocabulary, training summaries).
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "notes": self.notes,
            "pairs": [p.to_dict() for p in self.pairs],
        }


def read_pair_benchmark(
    path: str | Path,
    pairs: Sequence[tuple[str, str]],
    *,
    keep: set[str] | None = None,
    name: str | None = None,
) -> tuple[Benchmark, dict[str, int]]:
    """The rows of a many-model JSONL benchmark that have every model of ``pairs`` (and, with
    ``keep``, whose prompt is in it), and how many rows were skipped for each reason."""
    from lmroute._jsonl import read_jsonl_objects
    from lmroute.data.fields import score_value

    path = Path(path)
    models = list(dict.fromkeys(m for pair in pairs for m in pair))
    prompts: list[str] = []
    ids: list[str] = []
    columns: dict[str, list[float]] = {m: [] for m in models}
    skipped = {"not among the kept prompts": 0, "a pair's model missing": 0}
    seen: set[str] = set()
    for line, record in read_jsonl_objects(path, what="benchmark items"):
        prompt, scores = record.get("prompt"), record.get("scores")
        if not isinstance(prompt, str) or not prompt.strip() or not isinstance(scores, dict):
            raise DataError(f"{path}:{line}: expected a non-empty 'prompt' and a 'scores' object")
        seen.update(scores)
        if keep is not None and prompt not in keep:
            skipped["not among the kept prompts"] += 1
            continue
        if any(m not in scores for m in models):
            skipped["a pair's model missing"] += 1
            continue
        prompts.append(prompt)
        ids.append(str(record.get("id", line)))
        for m in models:
            columns[m].append(score_value(scores[m], path, line, m))
    unknown = [m for m in models if m not in seen]
    if unknown:
        raise UnknownModelError(
            f"{path} has no scores of {', '.join(unknown)}; it has: {', '.join(sorted(seen))}"
        )
    if not prompts:
        raise DataError(f"{path}: no rows left ({', '.join(f'{n} {why}' for why, n in skipped.items())})")
    scores_by_model = {m: np.asarray(v, dtype=np.float64) for m, v in columns.items()}
    strong, weak = pairs[0]
    bench = Benchmark(
        name or path.stem, tuple(prompts), scores_by_model, strong, weak, tuple(ids), scale=100.0
    )
    return bench, {why: n for why, n in skipped.items() if n}


def run_pair_transfer(
    config: PairTransferConfig,
    *,
    data_dir: str | Path | None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PairTransferResult:
    """Evaluate every router, unchanged and pair-aware, and the baselines on every pair."""
    from lmroute.data.prepare import check_benchmarks
    from lmroute.data.sources import check_sources
    from lmroute.workflows.results import check_pgr_defined
    from lmroute.workflows.transfer import resolve_held_out_file

    say = log or (lambda msg: print(msg, file=sys.stderr))
    result = PairTransferResult(config)
    # Every name and option checked before the first training, not after the routers before it.
    loaded = {i: load_router(spec.router) for i, spec in enumerate(config.routers) if spec.router is not None}
    for spec in config.routers:
        if spec.train is not None:
            # an option naming what cannot be had (an embedder), and the sources: read only once
            # the routers before it have trained
            get_router_class(spec.train).create(spec.options).check_options()
            check_sources(spec.sources, data_dir)
            check_benchmarks(spec.exclude_benchmarks, data_dir)
    baselines = [load_router(name) for name in config.baselines]
    # Every benchmark file read before too: a misspelt one was found only after the routers trained.
    benches = []
    for entry in config.benchmarks:
        keep = set(load_benchmark(entry.prompts_of, data_dir=data_dir).prompts) if entry.prompts_of else None
        path = resolve_held_out_file(entry.file, data_dir, what="benchmark file")
        bench, skipped = read_pair_benchmark(path, entry.pairs, keep=keep, name=entry.name)
        for strong, weak in entry.pairs:
            check_pgr_defined(bench.with_pair(strong, weak), entry.file)
        benches.append((entry, bench, skipped))
    routers = [
        (spec.title, loaded[i] if i in loaded else _router(spec, data_dir, progress, result.notes, say), spec)
        for i, spec in enumerate(config.routers)
    ]
    result.baselines = [report_name(name, r) for name, r in zip(config.baselines, baselines, strict=True)]
    for entry, bench, skipped in benches:
        for why, n in skipped.items():
            result.notes.append(f"{entry.file}: skipped {n:,} rows ({why})")
        say(f"[{bench.name}] {len(bench):,} prompts, {len(entry.pairs)} pairs")
        prompts = list(bench.prompts)
        unchanged = {title: [score_prompts(r, prompts, progress=progress)] for title, r, _ in routers}
        for name, router in zip(result.baselines, baselines, strict=True):
            variants = [router.with_seed(s) for s in DEFAULT_SEEDS] if router.stochastic else [router]
            unchanged[name] = [score_prompts(v, prompts) for v in variants]
        for strong, weak in entry.pairs:
            score_sets: dict[str, list[np.ndarray]] = {}
            aware_of: dict[str, str] = {}
            for title, router, spec in routers:
                score_sets[title] = unchanged[title]
                aware = _pair_aware(router, strong, weak, title, result.notes) if spec.pair_aware else None
                if aware is not None:
                    name = f"{title} ({PAIR_AWARE})"
                    score_sets[name] = [score_prompts(aware, prompts, progress=progress)]
                    aware_of[name] = title
            score_sets.update((name, unchanged[name]) for name in result.baselines)
            pair = compare_on_pair(
                bench.with_pair(strong, weak),
                score_sets,
                baselines=result.baselines,
                aware_of=aware_of,
                protocol=config.eval_protocol,
                samples=config.bootstrap,
                seed=config.seed,
            )
            result.pairs.append(pair)
            say(
                f"[{bench.name}: {strong} / {weak}] "
                + ", ".join(f"{r.router} {r.apgr:.3f}" for r in pair.rows)
            )
    return result


def _pair_aware(router: Router, strong: str, weak: str, title: str, notes: list[str]) -> Router | None:
    """``router`` asked about (strong, weak); None, with a note, when it cannot compare them."""
    try:
        return router.with_models(strong_model=strong, weak_model=weak)
    except UnknownModelError:
        notes.append(f"{title}: no {PAIR_AWARE} row for {strong} / {weak}: not both in its vocabulary")
    except ConfigError as exc:
        notes.append(f"{title}: no {PAIR_AWARE} row: {exc}")
    return None


def _router(
    spec: TransferRouter,
    data_dir: str | Path | None,
    progress: bool,
    notes: list[str],
    say: Callable[[str], None],
) -> Router:
    from lmroute.workflows.train import train_router

    assert spec.train is not None  # the config's validator guarantees one of the two
    say(f"training {spec.title}")
    router = train_router(
        spec.train,
        spec.sources,
        data_dir=data_dir,
        options=spec.options,
        exclude_benchmarks=spec.exclude_benchmarks,
        progress=progress,
    )
    battles = router.metadata["training"]["battles"]
    left_out = f", leaving out {', '.join(spec.exclude_benchmarks)}" if spec.exclude_benchmarks else ""
    notes.append(
        f"{spec.title}: trained by this run on {battles:,} battles from {', '.join(spec.sources)}{left_out}"
    )
    return router


def load_pair_transfer_config(path: str | Path) -> PairTransferConfig:
    """Read a pair-transfer experiment file, with errors that name the file."""
    from lmroute._yaml import read_model

    return read_model(PairTransferConfig, path)


def pair_transfer_markdown(result: PairTransferResult) -> str:
    """The results table, what each router beats, and the run's notes, in markdown."""
    from lmroute.evaluation.transfer import transfer_markdown

    baselines = result.baselines
    restricted = [
        f"`{b.file}` (the prompts of `{b.prompts_of}`)" for b in result.config.benchmarks if b.prompts_of
    ]
    lines = [
        f"{result.config.eval_protocol.capitalize()} protocol; 95% bootstrap intervals over prompts "
        f"({result.config.bootstrap} resamples, seed {result.config.seed}); differences paired on the same "
        "resamples (bold: the interval excludes 0). Quality in % correct."
        + (f" Restricted: {', '.join(restricted)}." if restricted else ""),
        "",
        transfer_markdown(result.pairs, baselines=baselines),
        "",
    ]
    for pair in result.pairs:
        verdicts = []
        for row in pair.rows:
            if row.router in baselines:
                continue
            beaten = [b for b in baselines if row.beats(b)]
            verdicts.append(f"{row.router} beats {' and '.join(beaten) if beaten else 'neither baseline'}")
        lines.append(
            f"- {pair.benchmark}, {pair.strong_model} / {pair.weak_model}: " + "; ".join(verdicts) + "."
        )
    lines += ["", *(f"- note: {n}" for n in result.notes)] if result.notes else []
    return "\n".join(lines)


def write_pair_transfer(result: PairTransferResult, out: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.json`` and one plot of the curves per pair."""
    import re

    from lmroute._files import write_atomic, write_json
    from lmroute.evaluation.plots import plot_curves

    out = Path(out)
    written = [
        write_atomic(out / "results.md", (pair_transfer_markdown(result) + "\n").encode("utf-8")),
        write_json(out / "results.json", result.to_dict()),
    ]
    for pair in result.pairs:
        if pair.evaluation is not None:
            stem = re.sub(
                r"[^A-Za-z0-9.-]+", "_", f"{pair.benchmark}--{pair.strong_model}--{pair.weak_model}"
            )
            written.append(plot_curves(pair.evaluation, out / f"{stem}.png"))
    return written
