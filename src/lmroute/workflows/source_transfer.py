"""Does the similarity score predict a router's APGR on a source it was not trained on?

An experiment file with ``kind: similarity-vs-apgr`` (``experiments/similarity-vs-apgr.yaml``)
names training sources, one trainable router and held-out sources with known outcomes. For each
held-out source S the run trains the router on the sources without S's own specs, after dropping
training prompts that (nearly) duplicate S's prompts (the leave-one-source-out protocol), and
measures its APGR on S (bootstrap interval, beside ``random`` and ``length``) and the similarity
score of S's prompts against the training prompts that router actually learned from. Held-out
sources without specs of their own (evaluation-only files) share one router trained on every
source, decontaminated against all of them. The scatter of similarity against APGR and its
correlation (:mod:`lmroute.evaluation.correlation`) answer the paper's question on our data.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, Benchmark, load_benchmark
from lmroute.data.decontaminate import DEFAULT_THRESHOLD
from lmroute.evaluation.transfer import PairResult
from lmroute.exceptions import ConfigError
from lmroute.workflows.similarity import SimilarityVsApgr

KIND = "similarity-vs-apgr"
Say = Callable[[str], None]


class HeldOut(BaseModel):
    """A source to leave out and evaluate on: a public benchmark or a many-model JSONL file."""

    model_config = ConfigDict(extra="forbid")
    name: str
    #: ``mmlu``, ``gsm8k``, ``mt-bench``, or a file in the custom-benchmark format (relative paths
    #: are looked up in the data directory).
    benchmark: str
    #: The pair to route between (default: the benchmark's own, GPT-4 vs Mixtral).
    pair: tuple[str, str] | None = None
    #: The training specs that carry this source (default: ``gold:<benchmark>`` when it is one of
    #: the training sources); empty for an evaluation-only source.
    leave_out: list[str] | None = None


class SimilarityVsApgrConfig(BaseModel):
    """The experiment file (``kind: similarity-vs-apgr``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["similarity-vs-apgr"]
    sources: list[str] = Field(min_length=2)
    router: str = "mf"
    label: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: Three at least: the correlation of fewer points is undefined, which failed the run after
    #: every router had trained.
    held_out: list[HeldOut] = Field(min_length=3)
    baselines: list[str] = Field(default_factory=lambda: ["random", "length"])
    embedder: str = "minilm"
    bootstrap: int = Field(default=1000, ge=1)
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed (a traceback)

    @model_validator(mode="after")
    def _known_specs(self) -> SimilarityVsApgrConfig:
        for held in self.held_out:
            unknown = [s for s in held.leave_out or [] if s not in self.sources]
            if unknown:
                raise ValueError(f"held_out {held.name}: leave_out {unknown} is not among the sources")
        if len({h.name for h in self.held_out}) != len(self.held_out):
            raise ValueError("held_out names must differ")
        for held in self.held_out:
            # found at its turn, after the sources before it had trained, as an error naming nothing
            own = self.own_specs(held)
            if not [s for s in self.sources if s not in own]:
                raise ValueError(
                    f"held_out {held.name} leaves out every source ({', '.join(own)}): "
                    "nothing left to train on"
                )
        return self

    def own_specs(self, held: HeldOut) -> list[str]:
        """The training specs that carry ``held``."""
        if held.leave_out is not None:
            return list(held.leave_out)
        key = held.benchmark.lower().replace("_", "-")
        return [
            s for s in self.sources if s.partition("?")[0].strip().lower().replace("_", "-") == f"gold:{key}"
        ]


@dataclass
class SourceResult:
    """One held-out source: what it was evaluated against and how it did."""

    name: str
    left_out: list[str]
    train_battles: int
    train_prompts: int
    similarity: float
    pair: PairResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "left_out": self.left_out,
            "train_battles": self.train_battles,
            "train_prompts": self.train_prompts,
            "similarity": self.similarity,
            **self.pair.to_dict(),
        }


@dataclass
class SourceTransferResult:
    config: SimilarityVsApgrConfig
    sources: list[SourceResult] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.config.label or self.config.router

    def scatter(self) -> SimilarityVsApgr:
        """The similarity of each held-out source against the router's APGR on it, correlated."""
        from lmroute.evaluation.correlation import correlation

        sim = [s.similarity for s in self.sources]
        apgr = [s.pair.row(self.title).apgr for s in self.sources]
        return SimilarityVsApgr(self.title, [s.name for s in self.sources], sim, apgr, correlation(sim, apgr))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "sources": [s.to_dict() for s in self.sources],
            "similarity_vs_apgr": self.scatter().to_dict(),
        }


def run_similarity_vs_apgr(
    config: SimilarityVsApgrConfig,
    *,
    data_dir: str | Path | None,
    embedder: Any = None,
    progress: bool = True,
    log: Say | None = None,
) -> SourceTransferResult:
    """Train, evaluate and measure the similarity for every held-out source (see the module)."""
    from lmroute.data.sources import check_sources
    from lmroute.embeddings import get_embedder
    from lmroute.registry import get_router_class, load_router, report_name
    from lmroute.workflows.results import check_pgr_defined

    say = log or (lambda msg: print(msg, file=sys.stderr))
    embedder = embedder if embedder is not None else get_embedder(config.embedder)
    # a misspelt router or option (an embedder's, a base model's): here, not after the first
    # training data is prepared
    get_router_class(config.router).create(dict(config.options), embedder).check_options()
    check_sources(config.sources, data_dir)  # the first held-out source's own: read at the second's turn
    result = SourceTransferResult(config)
    baselines = [load_router(name) for name in config.baselines]
    result.baselines = [report_name(n, r) for n, r in zip(config.baselines, baselines, strict=True)]
    benches = {h.name: _held_out_bench(h, data_dir) for h in config.held_out}
    for name, bench in benches.items():
        check_pgr_defined(bench, f"held_out {name}")
    # Evaluation-only sources share one router: every source, decontaminated against all of them.
    shared = [h for h in config.held_out if not config.own_specs(h)]
    shared_fit: tuple[Any, int, list[str]] | None = None
    for held in config.held_out:
        own = config.own_specs(held)
        if own or shared_fit is None:
            against = [held] if own else shared
            specs = [s for s in config.sources if s not in own]
            say(f"[{held.name}] training {result.title} on {', '.join(specs)}")
            fit = _train(config, specs, [(h, benches[h.name]) for h in against], data_dir, embedder, progress)
            if not own:
                shared_fit = fit
        else:
            fit = shared_fit
        router, battles, train_prompts = fit
        result.sources.append(
            _evaluate(
                config,
                held,
                own,
                benches[held.name],
                router,
                battles,
                train_prompts,
                baselines,
                result,
                embedder,
            )
        )
        row = result.sources[-1]
        say(f"[{held.name}] similarity {row.similarity:.4f}, APGR {row.pair.row(result.title).apgr:.4f}")
    return result


def _held_out_bench(held: HeldOut, data_dir: str | Path | None) -> Benchmark:
    key = held.benchmark.lower().replace("_", "-")
    strong, weak = held.pair or (None, None)
    if key in PUBLIC_BENCHMARKS:
        bench = load_benchmark(key, data_dir=data_dir, strong_model=strong, weak_model=weak)
        return bench
    if held.pair is None:
        raise ConfigError(f"held_out {held.name}: a many-model file needs its pair: [strong, weak]")
    from lmroute.workflows.pair_transfer import read_pair_benchmark
    from lmroute.workflows.transfer import resolve_held_out_file

    path = resolve_held_out_file(held.benchmark, data_dir)
    bench, _ = read_pair_benchmark(path, [held.pair], name=held.name)
    return bench


def _train(
    config: SimilarityVsApgrConfig,
    specs: list[str],
    against: list[tuple[HeldOut, Benchmark]],
    data_dir: str | Path | None,
    embedder: Any,
    progress: bool,
) -> tuple[Any, int, list[str]]:
    """The router fitted on ``specs`` without prompts that (nearly) duplicate ``against``'s, its
    battle count and its distinct training prompts."""
    from lmroute.data.decontaminate import decontaminate
    from lmroute.data.prepare import prepare_battles
    from lmroute.registry import get_router_class

    public = [h.benchmark for h, _ in against if h.benchmark.lower().replace("_", "-") in PUBLIC_BENCHMARKS]
    battles, _ = prepare_battles(specs, data_dir=data_dir, exclude_benchmarks=public, embedder=embedder)
    files = {h.name: list(b.prompts) for h, b in against if h.benchmark not in public}
    if files:
        battles, _ = decontaminate(battles, files, embedder=embedder, threshold=DEFAULT_THRESHOLD)
    router = get_router_class(config.router).create(dict(config.options), embedder)
    router.fit(battles, progress=progress)
    return router, len(battles), list(dict.fromkeys(b.prompt for b in battles))


def _evaluate(
    config: SimilarityVsApgrConfig,
    held: HeldOut,
    own: list[str],
    bench: Benchmark,
    router: Any,
    battles: int,
    train_prompts: list[str],
    baselines: list[Any],
    result: SourceTransferResult,
    embedder: Any,
) -> SourceResult:
    from lmroute.data.similarity import similarity_report
    from lmroute.evaluation.evaluator import DEFAULT_SEEDS, score_prompts
    from lmroute.evaluation.transfer import compare_on_pair

    prompts = list(bench.prompts)
    score_sets = {result.title: [score_prompts(router, prompts)]}
    for name, base in zip(result.baselines, baselines, strict=True):
        variants = [base.with_seed(s) for s in DEFAULT_SEEDS] if base.stochastic else [base]
        score_sets[name] = [score_prompts(v, prompts) for v in variants]
    pair = compare_on_pair(
        bench, score_sets, baselines=result.baselines, samples=config.bootstrap, seed=config.seed
    )
    report = similarity_report(prompts, {"training": train_prompts}, embedder=embedder, name=held.name)
    return SourceResult(held.name, own, battles, len(train_prompts), report.overall.score, pair)


def load_similarity_vs_apgr_config(path: str | Path) -> SimilarityVsApgrConfig:
    """Read the experiment file, with errors that name the file."""
    from lmroute._yaml import read_model

    return read_model(SimilarityVsApgrConfig, path)


def similarity_vs_apgr_markdown(result: SourceTransferResult) -> str:
    """Per held-out source: the pair, similarity, APGR of the router and baselines; the correlation."""
    scatter = result.scatter()
    c = scatter.correlation
    names = [result.title, *result.baselines]
    head = [
        "held-out source",
        "pair",
        "prompts",
        "train prompts",
        "similarity",
        *(f"{n} APGR" for n in names),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result.sources:
        cells = [
            s.name,
            f"{s.pair.strong_model} / {s.pair.weak_model}",
            f"{s.pair.prompts:,}",
            f"{s.train_prompts:,}",
            f"{s.similarity:.3f}",
            *(_apgr(s.pair, n) for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    kind = "exact" if c.exact else f"{c.permutations:,} random orderings"
    lines += [
        "",
        f"Similarity against {result.title}'s APGR over {c.n} held-out sources: Pearson r = {c.pearson:.2f}, "
        f"Spearman rho = {c.spearman:.2f} (two-sided permutation p = {c.p_value:.3f}, {kind}). "
        f"APGR intervals: 95% bootstrap over prompts ({result.config.bootstrap} resamples, seed "
        f"{result.config.seed}).",
    ]
    return "\n".join(lines)


def _apgr(pair: PairResult, router: str) -> str:
    row = pair.row(router)
    return f"{row.apgr:.3f} [{row.apgr_ci[0]:.3f}, {row.apgr_ci[1]:.3f}]"


def write_similarity_vs_apgr_run(result: SourceTransferResult, out: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.json`` and the scatter plot with its points to ``out``."""
    from lmroute._files import write_atomic, write_json
    from lmroute.workflows.similarity import write_similarity_vs_apgr

    out = Path(out)
    return [
        write_atomic(out / "results.md", (similarity_vs_apgr_markdown(result) + "\n").encode("utf-8")),
        write_json(out / "results.json", result.to_dict()),
        *write_similarity_vs_apgr(result.scatter(), out),
    ]
