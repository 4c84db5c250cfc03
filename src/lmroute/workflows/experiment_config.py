"""What an experiment file says: routers to train, sources, protocols and how results are measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmroute.data.benchmarks import PUBLIC_BENCHMARKS
from lmroute.data.conversations import ROUTE_ON, RouteOn
from lmroute.exceptions import ConfigError, LmrouteError

Protocol = Literal["zero-shot", "gold-1500", "leave-one-source-out", "single-source", "conversations"]
#: Protocols run per benchmark of ``benchmarks``; the source protocols run over ``held_out``;
#: ``conversations`` routes MT-Bench's second turns (:mod:`lmroute.workflows.conversations`).
BENCHMARK_PROTOCOLS = ("zero-shot", "gold-1500")
SOURCE_PROTOCOLS = ("leave-one-source-out", "single-source")


def _benchmark_protocols() -> list[Protocol]:
    return ["zero-shot", "gold-1500"]


class RouterSpec(BaseModel):
    """A router to train: its registry name, a label for tables, and its options."""

    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.label or self.name


class HeldOutSource(BaseModel):
    """A source with known outcomes, as the source protocols hold it out and evaluate on it.

    ``benchmark`` is ``mmlu``, ``gsm8k``, ``mt-bench`` or a custom benchmark file (relative paths
    are looked up in the data directory); a file of many models is evaluated between
    ``strong_model`` and ``weak_model`` (items where either has no score are left out).
    ``train`` lists the training specs that carry this source's prompts or labels: they are left
    out of training while it is held out (matched on the spec before its ``?options``).
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    benchmark: str = Field(min_length=1)
    strong_model: str | None = None
    weak_model: str | None = None
    train: list[str] = Field(default_factory=list)
    #: The pair a router trained on this source alone compares (``single-source``); default: the
    #: evaluation pair when the router's own pair is not among this source's models.
    train_pair: tuple[str, str] | None = None
    #: Open every prompt with this many other items of the source, the same ones for all (which
    #: are then not evaluated): a long shared prefix, as few-shot examples, a system prompt or a
    #: retrieved document make. Such a long-prompt variant is reported beside the sources, not in
    #: their mean.
    shots: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _two_models(self) -> HeldOutSource:
        # train_pair is used only by single-source, after leave-one-source-out's training
        if self.train_pair is not None and self.train_pair[0] == self.train_pair[1]:
            raise ValueError(f"train_pair: both models are {self.train_pair[0]!r}: a router compares two")
        return self


class ExperimentConfig(BaseModel):
    """What an experiment trains, on which data, and how it is evaluated (a YAML file)."""

    model_config = ConfigDict(extra="forbid")
    benchmarks: list[str] = Field(default_factory=lambda: ["mmlu", "gsm8k", "mt-bench"])
    protocols: list[Protocol] = Field(default_factory=_benchmark_protocols, min_length=1)
    #: Training sources (``battles:FILE``, ``gold:mmlu``...); ``gold:B`` is left out when testing on B.
    # none was refused only after the first benchmark was read, as "no training sources left after
    # excluding the gold of" it
    sources: list[str] = Field(min_length=1)
    routers: list[RouterSpec]
    #: Models renamed in every source, so that one model spelled two ways is one model.
    aliases: dict[str, str] = Field(default_factory=dict)
    baselines: list[str] = Field(default_factory=lambda: ["random", "length"])
    #: Sources with known outcomes for ``leave-one-source-out`` and ``single-source``.
    held_out: list[HeldOutSource] = Field(default_factory=list)
    #: ``conversations``: the ``route_on`` settings compared, and a shared system prompt each
    #: conversation is also routed with (a long one, as deployed assistants have).
    route_on: list[RouteOn] = Field(default_factory=lambda: list(ROUTE_ON))  # type: ignore[arg-type]
    system_prompt: str | None = None
    gold_max: int = Field(default=1500, ge=1)
    #: Each in-domain gold label enters training this many times (``gold-1500``): a few hundred
    #: in-domain labels are otherwise outweighed by tens of thousands of battles from other domains.
    gold_weight: int = Field(default=1, ge=1)
    #: Weigh a gold win on graded scores (MT-Bench's 1-10) by its score gap, as ``gold:`` sources do.
    gold_margins: bool = True
    folds: int = Field(default=10, ge=2)
    #: Benchmarks cross-fitted leave-one-item-out instead of in ``folds`` folds.
    leave_one_out: list[str] = Field(default_factory=lambda: ["mt-bench"])
    decontaminate: bool = True
    eval_protocol: Literal["paper", "exact"] = "paper"
    bootstrap: int = Field(default=1000, ge=0)
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed (a traceback)

    @model_validator(mode="after")
    def _held_out_for_source_protocols(self) -> ExperimentConfig:
        # One given twice ran twice (its routers trained twice), its results twice in results.json.
        given: dict[str, list[str]] = {"protocols": list(self.protocols), "route_on": list(self.route_on)}
        for key, values in given.items():
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{key}: {repeated[0]} is given twice")
        # A protocol with nothing to evaluate ran nothing, and its empty results.md and results.json
        # replaced the results in the output folder.
        wanted = [p for p in self.protocols if p in BENCHMARK_PROTOCOLS]
        if wanted and not self.benchmarks:
            raise ValueError(f"protocol {wanted[0]} needs benchmarks: the benchmarks to evaluate on")
        if "conversations" in self.protocols and not self.route_on:
            raise ValueError("protocol conversations needs route_on: the texts to route each conversation on")
        wanted = [p for p in self.protocols if p in SOURCE_PROTOCOLS]
        if wanted and not self.held_out:
            raise ValueError(f"protocol {wanted[0]} needs held_out: the sources to hold out")
        if "leave-one-source-out" in self.protocols:
            # found only at that source's turn, after the sources before it had trained, and
            # refused then without naming it
            for held in self.held_out:
                if not [s for s in self.sources if not carries(s, held)]:
                    raise ValueError(
                        f"held_out {held.name}: its train specs (and gold of its benchmark) are every "
                        "source: leave-one-source-out has nothing left to train on"
                    )
        if "leave_one_out" in self.model_fields_set:
            # a misspelt name (mt_bench for mt-bench) was silently cross-fitted in folds instead
            names = [benchmark_name(b) for b in self.benchmarks]
            unknown = [n for n in self.leave_one_out if n not in names]
            if unknown:
                raise ValueError(
                    f"leave_one_out: {', '.join(map(repr, unknown))} is no benchmark's name (the names "
                    f"of benchmarks: {', '.join(names) or 'none'})"
                )
        if "single-source" in self.protocols and not self._single_source_pairs():
            raise ValueError(
                "protocol single-source needs a held_out source with train specs (and no shots) and "
                "another held_out source without shots to evaluate it on"
            )
        names = [h.name for h in self.held_out]
        if len(set(names)) != len(names):
            raise ValueError(f"held_out names must differ: {names}")
        check_row_names([r.title for r in self.routers], self.baselines)
        return self

    def _single_source_pairs(self) -> bool:
        """Whether ``single-source`` trains on one held-out source and evaluates on another."""
        plain = [h for h in self.held_out if not h.shots]
        return any(h.train for h in plain) and len(plain) >= 2


def benchmark_name(spec: str) -> str:
    """The name a benchmark of ``benchmarks`` has in the results: a public one's (``mt_bench`` is
    ``mt-bench``), else its file's stem."""
    key = spec.strip().lower().replace("_", "-")
    return key if key in PUBLIC_BENCHMARKS else Path(spec).stem


def carries(spec: str, source: HeldOutSource) -> bool:
    """Whether training spec ``spec`` is one of ``source``'s own (its prompts or labels)."""
    base = spec.partition("?")[0].strip()
    return any(base == own.partition("?")[0].strip() for own in source.train) or (
        base.lower().replace("_", "-") == f"gold:{source.benchmark.lower().replace('_', '-')}"
    )


def check_row_names(titles: list[str], baselines: list[str]) -> None:
    """ValueError when two routers, or a router and a baseline, would share a row of the results
    (the later one's numbers silently took the earlier one's place)."""
    names = [*titles, *baselines]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"routers: two rows would be named {repeated[0]!r} (routers' labels, else names, and the "
            "baselines must differ): give one a label"
        )


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML file, with errors that name the file (and each router's name and
    options checked, as the rest of the file is)."""
    from lmroute._yaml import read_model

    config = read_model(ExperimentConfig, path)
    for i, spec in enumerate(config.routers):
        _check_router_spec(spec, path, i)
    return config


def _check_router_spec(spec: RouterSpec, path: str | Path, index: int) -> None:
    """ConfigError ``FILE: routers.N.KEY: problem`` for a router's unknown name or bad options:
    found otherwise only as the run began, naming neither the file nor the router."""
    from pydantic import ValidationError

    from lmroute._yaml import validation_problems
    from lmroute.registry import get_router_class

    where = f"{path}: routers.{index}"
    try:
        router_class = get_router_class(spec.name)
    except LmrouteError as exc:
        raise ConfigError(f"{where}.name: {exc}") from None
    try:
        router_class.config_class.model_validate(spec.options)
    except ValidationError as exc:
        problems = validation_problems(exc, under=("routers", index, "options"))
        raise ConfigError(f"{path}: {problems}") from None
    try:  # what only making the router finds: a model pair of one model, an ensemble's members
        router_class.create(spec.options)
    except ConfigError as exc:
        raise ConfigError(f"{where}.options: {exc}") from None
