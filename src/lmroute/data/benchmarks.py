"""Benchmarks with known per-model outcomes: MMLU, GSM8K, MT-Bench and custom files.

A benchmark is a list of routing prompts and, for each model, the quality of its answer to each
prompt. Rows are kept by position: some MMLU prompt strings repeat with different labels.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmroute._jsonl import read_jsonl_objects
from lmroute.data.fields import read_csv_rows, score_value
from lmroute.data.public import MMLU_DOMAINS, find_data_file, locate, reading
from lmroute.exceptions import DataError, UnknownModelError

PUBLIC_BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
STRONG_MODEL = "gpt-4-1106-preview"
WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"


@dataclass(frozen=True)
class Benchmark:
    """Routing prompts and each model's quality on them.

    ``scores[model][i]`` is the quality of ``model``'s answer to ``prompts[i]``; reported
    qualities are means times ``scale`` (100 for % correct).
    """

    name: str
    prompts: tuple[str, ...]
    scores: Mapping[str, np.ndarray]
    strong_model: str
    weak_model: str
    ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    costs: Mapping[str, np.ndarray] = field(default_factory=dict)
    scale: float = 1.0
    #: Extra turns per item that the routed model also answers (MT-Bench's second turn).
    followups: tuple[tuple[str, ...], ...] = ()
    #: Lines of the file left out for lacking a score of the strong or the weak model.
    skipped: int = 0
    #: Where the items were read from (a file or folder), for messages.
    source: str = ""

    def __post_init__(self) -> None:
        if self.strong_model == self.weak_model:
            raise DataError(f"the strong and the weak model must differ (both are {self.strong_model})")
        n = len(self.prompts)
        for model in (self.strong_model, self.weak_model):
            if model not in self.scores:
                raise UnknownModelError(
                    f"model {model!r} is not in benchmark {self.name!r}; "
                    f"it has: {', '.join(sorted(self.scores))}"
                )
        for model, values in self.scores.items():
            if len(values) != n:
                raise DataError(f"{self.name}: {model} has {len(values)} scores for {n} prompts")
        if not self.ids:
            object.__setattr__(self, "ids", tuple(str(i) for i in range(n)))

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def models(self) -> list[str]:
        return sorted(self.scores)

    @property
    def strong(self) -> np.ndarray:
        """Per-prompt quality of the strong model."""
        return np.asarray(self.scores[self.strong_model], dtype=np.float64)

    @property
    def weak(self) -> np.ndarray:
        """Per-prompt quality of the weak model."""
        return np.asarray(self.scores[self.weak_model], dtype=np.float64)

    def with_pair(self, strong_model: str, weak_model: str) -> Benchmark:
        """The same benchmark routed between another pair of its models."""
        return Benchmark(
            self.name,
            self.prompts,
            self.scores,
            strong_model,
            weak_model,
            self.ids,
            self.categories,
            self.costs,
            self.scale,
            self.followups,
            skipped=self.skipped,
            source=self.source,
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> Benchmark:
        """The benchmark restricted to the items at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)

        def pick(seq: tuple) -> tuple:
            return tuple(seq[i] for i in idx) if seq else ()

        return Benchmark(
            self.name,
            pick(self.prompts),
            {m: v[idx] for m, v in self.scores.items()},
            self.strong_model,
            self.weak_model,
            pick(self.ids),
            pick(self.categories),
            {m: v[idx] for m, v in self.costs.items()},
            self.scale,
            pick(self.followups),
            source=self.source,
        )


def load_benchmark(
    name: str | Path,
    *,
    data_dir: str | Path | None = None,
    strong_model: str | None = None,
    weak_model: str | None = None,
    download_url: str | None = None,
) -> Benchmark:
    """Load ``mmlu``, ``gsm8k``, ``mt-bench`` or a custom ``.jsonl``/``.csv`` benchmark file.

    A public benchmark's files are found by :func:`lmroute.data.public.locate`: in ``data_dir``,
    then ``$LMROUTE_DATA_DIR``, then the user cache, else downloaded (from ``download_url`` if
    given) into the cache, that benchmark's files only. A file by :func:`find_benchmark_file`.
    """
    key = str(name).lower().replace("_", "-")
    if key in PUBLIC_BENCHMARKS:
        folder = locate(key, data_dir=data_dir, download_url=download_url)
        loader = {"mmlu": load_mmlu, "gsm8k": load_gsm8k, "mt-bench": load_mt_bench}[key]
        with reading(folder):
            bench = dataclasses.replace(loader(folder), source=str(folder))
        if strong_model or weak_model:
            bench = bench.with_pair(strong_model or bench.strong_model, weak_model or bench.weak_model)
        return bench
    path = find_benchmark_file(name, data_dir)
    return load_custom(path, strong_model=strong_model, weak_model=weak_model)


def find_benchmark_file(name: str | Path, data_dir: str | Path | None = None) -> Path:
    """The benchmark file ``name``, found as a ``gold:FILE`` source's is: a relative path in the
    working directory, then in the data folders (:func:`lmroute.data.public.find_data_file`). A
    file found nowhere is a DataError saying where it was looked for, not only that the name is
    no public benchmark."""
    path = Path(name).expanduser()
    found, folders = find_data_file(path, data_dir)
    if found is not None:
        return found
    if path.is_absolute():
        where = f"{path} does not exist"
    else:
        dirs = f"the data directory {', '.join(map(str, folders))}" if folders else "a data directory"
        hint = "" if folders else " (none given: --data-dir DIR or $LMROUTE_DATA_DIR)"
        where = f"{path} is neither in the working directory {Path.cwd()} nor in {dirs}{hint}"
    raise DataError(f"benchmark {str(name)!r}: not one of {', '.join(PUBLIC_BENCHMARKS)}, and {where}")


# -- the three public benchmarks --------------------------------------------------------------


def load_mmlu(folder: str | Path) -> Benchmark:
    """MMLU: 57 subject files, minus the contaminated prompts (14,037 items in the reference)."""
    folder = Path(folder)
    contaminated = _contaminated(folder / "mmlu" / "contaminated_prompts.jsonl")
    prompts: list[str] = []
    categories: list[str] = []
    ids: list[str] = []
    columns: dict[str, list[float]] = {}
    for domain in MMLU_DOMAINS:
        path = folder / "mmlu" / "responses" / f"mmlu_{domain}.csv"
        for row_number, row in read_csv_rows(path, required=("prompt",)):
            if row["prompt"] in contaminated:
                continue
            prompts.append(row["prompt"])
            categories.append(domain)
            ids.append(f"{domain}/{row_number}")
            for model, value in row.items():
                if model != "prompt":
                    columns.setdefault(model, []).append(score_value(value, path, row_number, model))
    return _pair_benchmark("mmlu", prompts, columns, ids, categories, scale=100.0)


def load_gsm8k(folder: str | Path) -> Benchmark:
    """GSM8K test set with both models' correctness, minus contaminated prompts (1,307 items)."""
    folder = Path(folder)
    path = folder / "gsm8k" / "gsm8k_responses.csv"
    contaminated = _contaminated(folder / "gsm8k" / "contaminated_prompts.jsonl")
    prompts: list[str] = []
    ids: list[str] = []
    columns: dict[str, list[float]] = {}
    for row_number, row in read_csv_rows(path, required=("prompt", STRONG_MODEL, WEAK_MODEL)):
        if row["prompt"] in contaminated:
            continue
        prompts.append(row["prompt"])
        ids.append(str(row_number))
        for model in (STRONG_MODEL, WEAK_MODEL):
            columns.setdefault(model, []).append(score_value(row[model], path, row_number, model))
    return _pair_benchmark("gsm8k", prompts, columns, ids, (), scale=100.0)


def load_mt_bench(folder: str | Path) -> Benchmark:
    """MT-Bench: routed on the first turn; quality = mean judge score of both turns (72 items)."""
    folder = Path(folder) / "mt_bench"
    contaminated = _contaminated(folder / "contaminated_prompts.jsonl")
    judged: dict[tuple[int, str], list[float]] = {}
    path = folder / "judgements.jsonl"
    for line_number, record in read_jsonl_objects(path, what="judgements"):
        try:
            key = (int(record["question_id"]), str(record["model"]))
            value = record["score"]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # Overflow: int(1e999)
            raise DataError(f"{path}:{line_number}: bad record: {exc}") from exc
        judged.setdefault(key, []).append(score_value(value, path, line_number, key[1]))
    prompts, ids, categories, followups = [], [], [], []
    columns: dict[str, list[float]] = {STRONG_MODEL: [], WEAK_MODEL: []}
    for line_number, record in read_jsonl_objects(folder / "question.jsonl", what="questions"):
        turns = record.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise DataError(f"{folder / 'question.jsonl'}:{line_number}: 'turns' must be strings")
        if any(turn in contaminated for turn in turns):
            continue
        try:
            qid = int(record["question_id"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # Overflow: int(1e999)
            raise DataError(f"{folder / 'question.jsonl'}:{line_number}: bad 'question_id': {exc}") from exc
        for model, values in columns.items():
            if (qid, model) not in judged:
                raise DataError(f"{folder / 'judgements.jsonl'}: no judgement of {model} on {qid}")
            values.append(float(np.mean(judged[(qid, model)])))
        prompts.append(turns[0])
        followups.append(tuple(turns[1:]))
        ids.append(str(qid))
        categories.append(str(record.get("category", "")))
    bench = _pair_benchmark("mt-bench", prompts, columns, ids, categories, scale=1.0)
    return Benchmark(
        bench.name,
        bench.prompts,
        bench.scores,
        bench.strong_model,
        bench.weak_model,
        bench.ids,
        bench.categories,
        {},
        1.0,
        tuple(followups),
    )


def _pair_benchmark(
    name: str,
    prompts: Sequence[str],
    columns: Mapping[str, Sequence[float]],
    ids: Sequence[str],
    categories: Sequence[str],
    *,
    scale: float,
) -> Benchmark:
    if not prompts:
        raise DataError(f"{name}: no prompts left to evaluate")
    scores = {m: np.asarray(v, dtype=np.float64) for m, v in columns.items()}
    return Benchmark(
        name, tuple(prompts), scores, STRONG_MODEL, WEAK_MODEL, tuple(ids), tuple(categories), {}, scale
    )


def _contaminated(path: Path) -> set[str]:
    """The evaluation prompts the reference drops. Every line names one: a line without it is a
    wrong file (an error answer kept as it), which skipped would leave contaminated items in."""
    prompts = set()
    for line, record in read_jsonl_objects(path, what="prompts"):
        prompt = record.get("eval_prompt")
        if not isinstance(prompt, str):
            raise DataError(f"{path}:{line}: expected a string 'eval_prompt', got {prompt!r}")
        prompts.add(prompt)
    return prompts


# -- custom benchmarks ------------------------------------------------------------------------


def load_custom(
    path: str | Path, *, strong_model: str | None = None, weak_model: str | None = None
) -> Benchmark:
    """A custom benchmark file (:mod:`lmroute.data.custom`) routed between two of its models.

    With exactly two models and no pair named, the one with the higher mean on the lines that score
    both is the strong model.
    Lines that lack a score of either model are skipped and counted (``Benchmark.skipped``).
    """
    from lmroute.data.custom import read_custom

    table = read_custom(path)
    models = table.models
    if len(models) < 2:
        raise DataError(
            f"{path} has scores of {len(models)} model ({', '.join(models)}): a benchmark needs two"
        )
    if strong_model is None or weak_model is None:
        if len(models) != 2:
            raise DataError(
                f"{path} has {len(models)} models ({', '.join(models)}): name the pair "
                "(`lmroute eval --strong-model A --weak-model B`; strong_model=, weak_model= in Python)"
            )
        # Means over the lines that score both, the ones evaluated: over every line its own, the
        # model with more right answers on the lines the other lacks could be named strong though it
        # is the weaker on the lines compared.
        both, _ = table.complete(models)
        by_mean = sorted(models, key=lambda m: float(both.scores[m].mean()), reverse=True)
        strong_model = strong_model or next(m for m in by_mean if m != weak_model)
        weak_model = weak_model or next(m for m in by_mean[::-1] if m != strong_model)
        print(
            f"lmroute: {Path(path).name}: strong model {strong_model}, weak model {weak_model} "
            "(higher mean score is strong; name them to override)",
            file=sys.stderr,
        )
    if strong_model == weak_model:  # before the note on skipped lines, which would name it twice
        raise DataError(f"the strong and the weak model must differ (both are {strong_model})")
    pair, skipped = table.complete([strong_model, weak_model])
    if skipped:
        print(
            f"lmroute: {Path(path).name}: skipped {skipped} of {len(table)} lines lacking a score of "
            f"{strong_model} or {weak_model}",
            file=sys.stderr,
        )
    costs = {m: v for m, v in pair.costs.items() if np.isfinite(v).all()}
    return Benchmark(
        table.name,
        pair.prompts,
        pair.scores,
        strong_model,
        weak_model,
        pair.ids,
        pair.categories,
        costs,
        1.0,
        skipped=skipped,
        source=str(path),
    )
