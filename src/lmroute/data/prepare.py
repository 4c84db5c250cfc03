"""The whole preparation of training battles: load the sources, leave out the evaluation benchmarks'
own gold, and decontaminate against their prompts (:func:`prepare_battles`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmroute.data.battles import Battle
from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, find_benchmark_file, load_benchmark
from lmroute.data.custom import read_custom
from lmroute.data.decontaminate import DEFAULT_THRESHOLD
from lmroute.data.sources import LoadReport, load_sources
from lmroute.exceptions import DataError


def gold_target(spec: str) -> str | None:
    """The benchmark whose golden labels ``spec`` carries (``gold:mt_bench`` -> ``mt-bench``), else None."""
    kind, _, target = spec.partition(":")
    if kind.strip().lower() != "gold":
        return None
    target = target.partition("?")[0].strip()
    return target.lower().replace("_", "-") if "/" not in target and "." not in target else target


@dataclass
class PreparedReport:
    """Report of :func:`prepare_battles`: loading, and decontamination against each benchmark."""

    load: LoadReport
    excluded_specs: list[str]
    against: list[str]
    decontamination: Any = None  # a FilterReport, when decontaminated

    @property
    def battles(self) -> int:
        return self.decontamination.kept if self.decontamination is not None else self.load.battles

    def describe(self, *, all_models: bool = False) -> str:
        lines = []
        if self.excluded_specs:
            lines.append(f"left out the evaluation benchmarks' own gold: {', '.join(self.excluded_specs)}")
        lines.append(self.load.describe(all_models=all_models))
        if self.decontamination is not None:
            d = self.decontamination
            lines.append(f"decontaminated against {', '.join(self.against)}: {d}")
            if d.matched:
                causes = ", ".join(f"{k} {n:,}" for k, n in d.matched.most_common())
                lines.append(f"  dropped because of: {causes}")
            for title, cases in (
                ("lowest-similarity drops", d.borderline_dropped),
                ("closest kept", d.closest_kept),
            ):
                for case in cases:
                    lines.append(
                        f"  {title}: {case['similarity']:.3f} {_short(case['train'])!r} ~ "
                        f"{_short(case['eval'])!r}"
                    )
        lines.append(f"result: {self.battles:,} battles")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": self.load.to_dict(),
            "excluded_specs": self.excluded_specs,
            "decontaminated_against": self.against,
            "decontamination": None if self.decontamination is None else self.decontamination.to_dict(),
            "battles": self.battles,
        }


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prepare_battles(
    specs: Sequence[str],
    *,
    data_dir: str | Path | None = None,
    exclude_benchmarks: Sequence[str] = (),
    decontaminate_against: Sequence[str] = (),
    eval_prompts: Mapping[str, Sequence[str]] | None = None,
    embedder: Any = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    min_model_battles: int = 2,
    aliases: Mapping[str, str] | None = None,
) -> tuple[list[Battle], PreparedReport]:
    """Training battles ready for ``fit``: load ``specs``, then decontaminate.

    ``exclude_benchmarks`` names the benchmarks a router will be evaluated on: their own gold
    sources are left out and training prompts that (nearly) duplicate their prompts (every
    turn) are dropped; ``decontaminate_against`` adds benchmarks to decontaminate against without
    touching the sources; ``eval_prompts`` adds other evaluation sets by name (e.g. a held-out
    outcomes file's prompts). ``embedder`` and ``threshold`` go to
    :func:`~lmroute.data.decontaminate.decontaminate` (``threshold=None``: exact matches only).
    """
    from lmroute.data.decontaminate import decontaminate

    excluded = [_bench_key(b, data_dir, check=True) for b in exclude_benchmarks]
    kept_specs: list[str] = []
    left_out: list[str] = []
    for spec in specs:
        target = gold_target(spec)
        left = target is not None and _bench_key(target, data_dir) in excluded
        (left_out if left else kept_specs).append(spec)
    if not kept_specs:
        raise DataError(f"no training sources left after excluding the gold of {', '.join(excluded)}")
    battles, load_report = load_sources(
        kept_specs, data_dir=data_dir, min_model_battles=min_model_battles, aliases=aliases
    )
    against = list(
        dict.fromkeys([*excluded, *(_bench_key(b, data_dir, check=True) for b in decontaminate_against)])
    )
    report = PreparedReport(load_report, left_out, [*against, *(eval_prompts or {})])
    if report.against:
        prompts: dict[str, list[str]] = {}
        for name in against:
            label, texts = _benchmark_prompts(name, data_dir)
            prompts[label] = texts
        prompts.update({name: list(texts) for name, texts in (eval_prompts or {}).items()})
        battles, report.decontamination = decontaminate(
            battles, prompts, embedder=embedder, threshold=threshold
        )
        if not battles:
            raise DataError(f"no training battles left after decontamination ({report.decontamination})")
    return battles, report


def _benchmark_prompts(key: str, data_dir: str | Path | None) -> tuple[str, list[str]]:
    """A benchmark's name and its prompts, every turn: a file's every line whatever models it
    scores (decontamination needs no pair, and a many-model file names none)."""
    if key in PUBLIC_BENCHMARKS:
        bench = load_benchmark(key, data_dir=data_dir)
        return bench.name, [*bench.prompts, *(turn for turns in bench.followups for turn in turns)]
    table = read_custom(key)
    return table.name, list(table.prompts)


def check_benchmarks(names: Sequence[str], data_dir: str | Path | None = None) -> None:
    """The DataError :func:`prepare_battles` meets for an ``exclude_benchmarks`` name that is no
    public benchmark and no file found, raised without loading anything."""
    for name in names:
        _bench_key(name, data_dir, check=True)


def benchmark_file(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The file of benchmark ``name``, found as a gold source's is; None for a public benchmark or
    a file found nowhere."""
    key = _bench_key(name, data_dir)
    return None if key in PUBLIC_BENCHMARKS or not Path(key).is_file() else Path(key)


def _bench_key(name: str, data_dir: str | Path | None, *, check: bool = False) -> str:
    """A public benchmark's name, else the absolute path of a benchmark file: a relative path found
    as a gold source's is (the working directory, then the data folders). With ``check``, a file
    found in neither is a DataError naming both; otherwise loading the source reports it."""
    from lmroute.data.public import find_data_file

    key = str(name).strip()
    lowered = key.lower().replace("_", "-")
    if lowered in PUBLIC_BENCHMARKS:
        return lowered
    if check:
        return str(find_benchmark_file(key, data_dir).resolve())
    path = Path(key).expanduser()
    found, _ = find_data_file(path, data_dir)
    return str((found or path).resolve())
