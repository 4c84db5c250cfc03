"""Training sources named by spec strings, loaded into one list of battles with a report.

Grammar (``KIND:TARGET``, options after ``?`` as ``key=value`` joined by ``&``)::

    arena:FILE.csv | arena:FILE.parquet | arena:hf:DATASET_ID[?split=train]
    battles:FILE.jsonl
    alpaca-eval[:DIR_OR_FILE][?annotators=A,B][&exclude=M1,M2]
    gold:mmlu | gold:gsm8k | gold:mt-bench[?margins=false]
    gold:FILE.jsonl | gold:FILE.csv[?models=M1,M2,...][&max_pairs=16|all][&seed=0][&allow_eval_only=true]
                                   [&margins=false]

A relative FILE or DIR is looked up in the working directory, then in ``data_dir``, then in
``$LMROUTE_DATA_DIR`` (``battles:arena-hard/battles.jsonl``, ``gold:zeroeval/crux.jsonl``); a bare
``alpaca-eval`` means ``<data_dir>/alpaca-eval``. ``gold:mmlu`` etc. load the public benchmarks through
:func:`~lmroute.data.benchmarks.load_benchmark`. A file whose name contains ``EVAL-ONLY`` holds
evaluation prompts (zeroeval's GSM8K file has the GSM8K test set's prompts) and is refused unless
``allow_eval_only=true``, which still warns. ``margins=false`` gives every gold battle weight 1
instead of weighing a win on graded scores by its score gap (see :mod:`lmroute.data.gold`).

After reading, :func:`load_sources` drops votes duplicated across sources, then battles of
models seen in fewer than ``min_model_battles`` battles (default 2: a model seen once carries
no comparison the router can learn from), and reports every drop by reason and source.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lmroute.data.arena import read_arena
from lmroute.data.battles import (
    ALPACA_EXCLUDED_MODELS,
    SAME_MODEL,
    Battle,
    ReadResult,
    read_alpaca_eval,
    read_battles_jsonl,
)
from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, load_benchmark
from lmroute.exceptions import ConfigError, DataError

SOURCE_KINDS = ("arena", "battles", "alpaca-eval", "gold")
DEFAULT_MAX_PAIRS = 16
RARE_MODEL = "model in too few battles"

_OPTIONS: dict[str, tuple[str, ...]] = {
    "arena": ("split",),
    "battles": (),
    "alpaca-eval": ("annotators", "exclude"),
    "gold": ("models", "max_pairs", "seed", "allow_eval_only", "margins"),
}

#: Licences of the public sources, by battle ``source`` label.
LICENCES: dict[str, str] = {
    "arena": "Apache-2.0 (lmsys-arena-human-preference-55k dataset card); another Arena export: "
    "its own licence",
    "arena-hard": "Apache-2.0 (arena-hard-auto); the judgments and answers came from commercial "
    "APIs, whose terms also apply",
    "alpaca-eval": "CC BY-NC 4.0 (non-commercial): say so wherever a router trained on it is shipped",
    "gold:mmlu": "Apache-2.0 (RouteLLM evaluation data); MMLU questions MIT",
    "gold:gsm8k": "Apache-2.0 (RouteLLM evaluation data); GSM8K questions MIT",
    "gold:mt-bench": "Apache-2.0 (RouteLLM evaluation data; MT-Bench questions and judgements)",
    "zeroeval": "Apache-2.0 (ZeroEval results); benchmark questions MIT",
    "mmlu-pro": "MIT (MMLU-Pro dataset); Apache-2.0 (TIGER-AI-Lab/MMLU-Pro code and model outputs)",
    "llmrouter": "MIT (LLMRouter routing data); its questions come from public benchmarks under their "
    "own licences (e.g. Natural Questions CC BY-SA 3.0)",
}
_NON_COMMERCIAL = "CC BY-NC"
#: Folders of the shared data directory whose files have a known licence.
_KNOWN_FOLDERS = ("arena-hard", "alpaca-eval", "zeroeval", "mmlu-pro", "llmrouter")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source spec: ``kind``, ``target`` (file, folder, dataset or benchmark name), options."""

    text: str
    kind: str
    target: str
    options: Mapping[str, str] = field(default_factory=dict)


def parse_source(spec: str) -> SourceSpec:
    """Parse ``KIND:TARGET[?key=value&...]``; unknown kinds or options raise ConfigError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a source spec must be a non-empty string, got {spec!r}")
    body, _, query = spec.strip().partition("?")
    kind, _, target = body.partition(":")
    # "gold: mmlu" (as YAML lists invite) names mmlu, as gold_target reads it, not a file " mmlu"
    kind, target = kind.strip().lower(), target.strip()
    if kind not in SOURCE_KINDS:
        raise ConfigError(
            f"unknown source kind {kind!r} in {spec!r}: use arena:FILE, battles:FILE, "
            "alpaca-eval[:DIR], gold:mmlu|gsm8k|mt-bench or gold:FILE.jsonl"
        )
    if not target and kind != "alpaca-eval":
        raise ConfigError(f"source {spec!r} names no {'benchmark' if kind == 'gold' else 'file'}")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in _OPTIONS[kind]:
            known = ", ".join(_OPTIONS[kind]) or "none"
            raise ConfigError(f"{spec!r}: unknown option {pair!r} for {kind} (options: {known})")
        options[key] = value.strip()
    return SourceSpec(spec, kind, target, options)


@dataclass
class SourceReport:
    """One source: where it was read from, its licence, and what its reader kept and dropped."""

    spec: str
    label: str
    location: str
    licence: str
    rows: int
    battles: int
    dropped: Counter[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dropped": dict(self.dropped), "seconds": round(self.seconds, 3)}


@dataclass
class LoadReport:
    """What :func:`load_sources` read, dropped (per source, per reason) and kept (per model)."""

    sources: list[SourceReport]
    battles: int
    dropped: dict[str, Counter[str]]
    models: Counter[str]
    rare_models: list[str]
    warnings: list[str]
    seconds: float

    @property
    def licences(self) -> dict[str, str]:
        """Licence of each source spec."""
        return {s.spec: s.licence for s in self.sources}

    def describe(self, *, all_models: bool = False) -> str:
        """The report as text; the model list is cut to the 10 most frequent unless ``all_models``."""
        n = len(self.sources)
        lines = [f"loaded {self.battles:,} battles from {n} source(s) in {self.seconds:.1f} s"]
        for s in self.sources:
            lines.append(
                f"  {s.spec}: {s.rows:,} rows -> {s.battles:,} battles ({s.seconds:.1f} s); "
                f"licence: {s.licence}"
            )
            if s.dropped:
                lines.append("    dropped " + ", ".join(f"{n:,} {why}" for why, n in s.dropped.most_common()))
        for reason, by_source in self.dropped.items():
            sources = ", ".join(f"{src} {n:,}" for src, n in by_source.most_common())
            lines.append(f"  dropped {sum(by_source.values()):,} {reason} [{sources}]")
        if self.rare_models:
            lines.append(f"  rare models dropped: {', '.join(self.rare_models)}")
        shown = self.models.most_common(None if all_models else 10)
        more = len(self.models) - len(shown)
        listed = ", ".join(f"{m} {k:,}" for m, k in shown) + (f", ... {more} more" if more else "")
        lines.append(f"models ({len(self.models)}, battles each): {listed}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "battles": self.battles,
            "sources": [s.to_dict() for s in self.sources],
            "dropped": {reason: dict(c) for reason, c in self.dropped.items()},
            "models": dict(self.models.most_common()),
            "rare_models": self.rare_models,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


def load_sources(
    specs: Sequence[str],
    *,
    data_dir: str | Path | None = None,
    min_model_battles: int = 2,
    aliases: Mapping[str, str] | None = None,
    deduplicate: bool = True,
) -> tuple[list[Battle], LoadReport]:
    """Load every source spec (see the module docstring) into one list of battles and a report.

    ``aliases`` renames models (``{"gpt4_1106_preview": "gpt-4-1106-preview"}``) so sources that
    spell one model differently share it; there is no built-in table. ``deduplicate`` drops votes
    repeated across sources (:func:`~lmroute.data.decontaminate.deduplicate`, each spec one
    origin). Battles of models with fewer than ``min_model_battles`` battles are dropped, once.
    """
    from lmroute.data.decontaminate import DUPLICATE
    from lmroute.data.decontaminate import deduplicate as dedupe

    if isinstance(specs, str):
        raise ConfigError("load_sources takes a list of source specs; wrap a single spec in a list")
    if not specs:
        raise ConfigError("no training sources given")
    if min_model_battles < 1:
        raise ConfigError(f"min_model_battles must be at least 1, got {min_model_battles}")
    started = time.perf_counter()
    parsed = [parse_source(s) for s in specs]
    aliases = dict(aliases or {})
    battles: list[Battle] = []
    origins: list[int] = []
    reports: list[SourceReport] = []
    warnings: list[str] = []
    seen_models: set[str] = set()
    for index, spec in enumerate(parsed):
        t0 = time.perf_counter()
        result, label, location, licence = _LOADERS[spec.kind](spec, _data_dir(data_dir), warnings)
        renamed = [_renamed(b, aliases) for b in result.battles]
        # Aliases that join two models of one source leave battles of a model against itself,
        # which say nothing about a pair: drop them as the readers drop such rows.
        got = [b for b in renamed if b.model_a != b.model_b]
        source_dropped = result.dropped.copy()
        if len(got) < len(renamed):
            source_dropped[SAME_MODEL] += len(renamed) - len(got)
        seen_models.update(m for b in result.battles for m in (b.model_a, b.model_b))
        battles.extend(got)
        origins.extend([index] * len(got))
        reports.append(
            SourceReport(
                spec.text,
                label,
                location,
                licence,
                result.rows,
                len(got),
                source_dropped,
                time.perf_counter() - t0,
            )
        )
        if _NON_COMMERCIAL in licence:
            warnings.append(f"{spec.text} is licensed {licence}")
    unused = sorted(set(aliases) - seen_models)
    if unused:
        warnings.append(f"alias(es) for {', '.join(unused)} matched no model in the data")
    dropped: dict[str, Counter[str]] = {}
    if deduplicate:
        battles, dedup_report = dedupe(battles, origins=origins)
        if dedup_report.dropped:
            dropped[DUPLICATE] = dedup_report.dropped[DUPLICATE]
    counts = Counter(m for b in battles for m in (b.model_a, b.model_b))
    rare = sorted(m for m, n in counts.items() if n < min_model_battles)
    if rare:
        rare_set = set(rare)
        removed = Counter(b.source for b in battles if b.model_a in rare_set or b.model_b in rare_set)
        battles = [b for b in battles if b.model_a not in rare_set and b.model_b not in rare_set]
        dropped[f"{RARE_MODEL} (< {min_model_battles})"] = removed
    if not battles:
        if rare:
            named = ", ".join(rare[:10]) + (", ..." if len(rare) > 10 else "")
            why = f": every battle has a model in fewer than {min_model_battles} battles ({named})"
        else:  # the readers keep only sources with battles: aliases dropped them
            lost = sum((r.dropped for r in reports), Counter[str]())
            why = ", ".join(f"{n} {reason}" for reason, n in lost.most_common())
            why = f": dropped {why}" if why else ""
        raise DataError(f"no training battles left from {', '.join(specs)}{why}")
    models = Counter(m for b in battles for m in (b.model_a, b.model_b))
    report = LoadReport(reports, len(battles), dropped, models, rare, warnings, time.perf_counter() - started)
    return battles, report


def check_sources(specs: Sequence[str], data_dir: str | Path | None = None) -> None:
    """The error loading ``specs`` would meet first in a spec itself (an unknown kind or option)
    or in finding its file, raised without reading any: for runs that load some sources only after
    hours of work on others."""
    for spec in specs:
        parsed = parse_source(spec)
        public = parsed.kind == "gold" and parsed.target.lower().replace("_", "-") in PUBLIC_BENCHMARKS
        if not (public or (parsed.kind == "arena" and parsed.target.startswith("hf:"))):
            _resolve(parsed, _data_dir(data_dir), target=parsed.target or "alpaca-eval")


def source_file(spec: str, data_dir: str | Path | None = None) -> Path | None:
    """The file source ``spec`` reads, found as its loader finds it (the working directory, then
    the data folders; an AlpacaEval folder's ``judgments.jsonl``); None for a public benchmark, a
    hub dataset or a file found nowhere. What an output must not replace."""
    from lmroute.data.public import find_data_file

    parsed = parse_source(spec)
    if parsed.kind == "gold" and parsed.target.lower().replace("_", "-") in PUBLIC_BENCHMARKS:
        return None
    if parsed.kind == "arena" and parsed.target.startswith("hf:"):
        return None
    target = parsed.target or ("alpaca-eval" if parsed.kind == "alpaca-eval" else "")
    found, _ = find_data_file(Path(target).expanduser(), _data_dir(data_dir))
    if found is not None and found.is_dir():
        found = found / "judgments.jsonl"
    return found


def _renamed(b: Battle, aliases: Mapping[str, str]) -> Battle:
    if not aliases or (b.model_a not in aliases and b.model_b not in aliases):
        return b
    return replace(b, model_a=aliases.get(b.model_a, b.model_a), model_b=aliases.get(b.model_b, b.model_b))


def _data_dir(data_dir: str | Path | None) -> Path | None:
    return None if data_dir is None else Path(data_dir).expanduser()


def _resolve(spec: SourceSpec, data_dir: Path | None, *, target: str | None = None) -> Path:
    """A relative path in the working directory, else in the data folders (``data_dir``, then
    ``$LMROUTE_DATA_DIR``: :func:`lmroute.data.public.data_folders`)."""
    from lmroute.data.public import find_data_file

    path = Path(target or spec.target).expanduser()
    found, folders = find_data_file(path, data_dir)
    if found is not None:
        return found
    where = f" (nor in data directory {', '.join(map(str, folders))})" if folders else ""
    hint = (
        ""
        if folders or path.is_absolute()
        else "; relative paths are also looked up in --data-dir DIR or $LMROUTE_DATA_DIR"
    )
    raise DataError(f"source {spec.text!r}: {path} does not exist{where}{hint}")


def _folder_licence(path: Path) -> tuple[str, str] | None:
    """(label, licence) of a file directly inside one of the shared data folders, by folder name."""
    folder = path.resolve().parent.name
    return (folder, LICENCES[folder]) if folder in _KNOWN_FOLDERS else None


def _flag(spec: SourceSpec, key: str, default: bool = False) -> bool:
    value = spec.options.get(key, str(default)).lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{spec.text!r}: {key} must be true or false, got {value!r}")
    return value in ("true", "1", "yes")


def _int(spec: SourceSpec, key: str, default: int | None) -> int | None:
    value = spec.options.get(key)
    if value is None:
        return default
    if value.lower() == "all" and key == "max_pairs":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{spec.text!r}: {key} must be an integer, got {value!r}") from None


def _names(spec: SourceSpec, key: str) -> list[str] | None:
    value = spec.options.get(key)
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


# -- one loader per kind: (ReadResult, label, location, licence) ------------------------------


def _load_arena(spec: SourceSpec, data_dir: Path | None, warnings: list[str]):
    split = spec.options.get("split", "train")
    if spec.target.startswith("hf:"):
        return read_arena(spec.target, split=split), "arena", spec.target, LICENCES["arena"]
    path = _resolve(spec, data_dir)
    return read_arena(path), "arena", str(path), LICENCES["arena"]


def _load_battles(spec: SourceSpec, data_dir: Path | None, warnings: list[str]):
    path = _resolve(spec, data_dir)
    known = _folder_licence(path)
    label = known[0] if known else f"battles:{path.name}"
    result = read_battles_jsonl(path, source=label)
    if known:
        return result, label, str(path), known[1]
    # Records re-read from an `lmroute data` export carry their original sources.
    labels = sorted({b.source for b in result.battles})
    licences = sorted({_licence_of_label(lab) for lab in labels})
    licence = "; ".join(licences) if labels != [label] else f"unknown: the licence of {path.name}"
    return result, label, str(path), licence


def _licence_of_label(label: str) -> str:
    folder = label.removeprefix("gold:").partition("/")[0] if "/" in label else None
    key = label if label in LICENCES else folder
    if key is not None and key in LICENCES:
        return f"{label}: {LICENCES[key]}"
    return f"{label}: unknown (check where these records came from)"


def _load_alpaca(spec: SourceSpec, data_dir: Path | None, warnings: list[str]):
    path = _resolve(spec, data_dir, target=spec.target or "alpaca-eval")
    exclude = _names(spec, "exclude")
    result = read_alpaca_eval(
        path,
        annotators=_names(spec, "annotators"),
        exclude_models=ALPACA_EXCLUDED_MODELS if exclude is None else exclude,
    )
    return result, "alpaca-eval", str(path), LICENCES["alpaca-eval"]


def _load_gold(spec: SourceSpec, data_dir: Path | None, warnings: list[str]):
    from lmroute.data.custom import read_custom
    from lmroute.data.gold import battles_from_scores

    key = spec.target.lower().replace("_", "-")
    if key in PUBLIC_BENCHMARKS:
        bench = load_benchmark(key, data_dir=data_dir)
        prompts, scores = list(bench.prompts), dict(bench.scores)
        location, label, licence = bench.name, f"gold:{key}", LICENCES[f"gold:{key}"]
    else:
        path = _resolve(spec, data_dir)
        if "eval-only" in path.name.lower():
            if not _flag(spec, "allow_eval_only"):
                raise DataError(
                    f"source {spec.text!r}: {path.name} is evaluation-only (its prompts are a test set, "
                    "e.g. GSM8K's); training on it contaminates any evaluation on that benchmark. Add "
                    "?allow_eval_only=true only if the router will never be evaluated there"
                )
            warnings.append(
                f"{spec.text}: training on an EVAL-ONLY file; never evaluate this router on the benchmark "
                "whose prompts it holds"
            )
        table = read_custom(path)
        prompts, scores = list(table.prompts), dict(table.scores)
        known = _folder_licence(path)
        location, label = str(path), f"gold:{known[0]}/{path.stem}" if known else f"gold:{path.stem}"
        licence = known[1] if known else f"unknown: the licence of {path.name}"
    battles = battles_from_scores(
        prompts,
        scores,
        models=_names(spec, "models"),
        max_pairs_per_prompt=_int(spec, "max_pairs", DEFAULT_MAX_PAIRS),
        seed=_int(spec, "seed", 0) or 0,
        weigh_margins=_flag(spec, "margins", default=True),
        source=label,
        name=spec.text,
    )
    return ReadResult(battles, len(battles)), label, location, licence


_LOADERS: dict[str, Callable[..., tuple[ReadResult, str, str, str]]] = {
    "arena": _load_arena,
    "battles": _load_battles,
    "alpaca-eval": _load_alpaca,
    "gold": _load_gold,
}
