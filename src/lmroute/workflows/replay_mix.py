"""Traffic for ``lmroute replay``: a schedule of mixes drawn from pools of prompts.

A schedule is a YAML file::

    seed: 0
    pools:                          # each pool: one or more sources, concatenated
      chat:
        - battles: "alpaca-eval?annotators=alpaca_eval_gpt4_turbo_fn"   # a source spec (lmroute data)
          strong_model: gpt4_1106_preview                           # the pair whose battles are outcomes
          weak_model: Mixtral-8x7B-Instruct-v0.1
        - {benchmark: mt-bench, quality_scale: 10}                 # a benchmark: mmlu, gsm8k, mt-bench, FILE
        - prompts: arena-hard/questions.jsonl                        # prompts only: quality unknown
      maths: [{benchmark: gsm8k}]
    calibration: {n: 400, mix: {chat: 1}}    # drawn first and held out: the calibration sample
    segments:                                 # the replay, in order
      - {n: 1250, mix: {chat: 1}}
      - {n: 1750, mix: {chat: 1, maths: 1}}  # each prompt's pool drawn with these weights

Each pool is shuffled once (seeded) and drawn in that order, so no prompt repeats until its pool is
used up (it is then shuffled again); the calibration sample comes first, so the replay never sees
its prompts unless a pool runs out. Where a source knows how the strong and the weak model did on
a prompt, the item carries both qualities in [0, 1] (a benchmark's scores divided by
``quality_scale``; for battles, the strong model's share of wins, ties counting half); else NaN.
Relative paths are looked up in the working directory, then in the data folders (``--data-dir``,
then ``$LMROUTE_DATA_DIR``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmroute._yaml import validation_problems
from lmroute.exceptions import ConfigError, DataError

#: Prompts one draw (the calibration sample, a segment) may take: a mistyped n (1e11) ended in
#: numpy's MemoryError traceback after the pools were loaded.
MAX_DRAW = 10_000_000


class PoolSource(BaseModel):
    """One source of a pool: a benchmark, battles between a pair, or plain prompts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str | None = None
    battles: str | None = None
    prompts: str | None = None
    strong_model: str | None = None
    weak_model: str | None = None
    #: A benchmark's scores are divided by this to lie in [0, 1] (10 for MT-Bench's 1-10 grades).
    quality_scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_kind(self) -> PoolSource:
        if sum(x is not None for x in (self.benchmark, self.battles, self.prompts)) != 1:
            raise ValueError("give exactly one of benchmark:, battles: or prompts:")
        if self.battles is not None and (self.strong_model is None or self.weak_model is None):
            raise ValueError(
                "battles: needs strong_model: and weak_model: (the pair whose wins are outcomes)"
            )
        # Taken and ignored, they left a pool without the outcomes (or the scale) they were meant to give.
        if self.prompts is not None and (self.strong_model is not None or self.weak_model is not None):
            raise ValueError(
                "a prompts: source carries no outcomes; strong_model: and weak_model: name the pair "
                "of a benchmark: or battles: source"
            )
        if self.benchmark is None and "quality_scale" in self.model_fields_set:
            raise ValueError("quality_scale: divides the scores of a benchmark: source; this one has none")
        return self


class Draw(BaseModel):
    """``n`` prompts, each from a pool drawn with the ``mix`` weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1, le=MAX_DRAW)
    # finite: a NaN or infinite weight passed the checks below and failed in the drawing (a traceback)
    mix: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> Draw:
        if any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("mix weights must be >= 0 with a positive sum")
        return self


class Schedule(BaseModel):
    """Pools, the calibration sample and the replay's segments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed (a traceback)
    pools: dict[str, list[PoolSource]] = Field(min_length=1)
    calibration: Draw | None = None
    segments: list[Draw] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_pools(self) -> Schedule:
        for draw in [*([self.calibration] if self.calibration else []), *self.segments]:
            unknown = sorted(set(draw.mix) - set(self.pools))
            if unknown:
                raise ValueError(
                    f"mix names pool(s) {', '.join(unknown)}; the pools are {', '.join(self.pools)}"
                )
        return self


def read_schedule(path: str | Path) -> Schedule:
    """A validated schedule from its YAML file (ConfigError naming the file and the problem)."""
    from lmroute._yaml import read_yaml

    data = read_yaml(path, what=f"schedule {path}")
    try:
        return Schedule.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid schedule {path}: {validation_problems(exc, root='schedule')}") from None


@dataclass(frozen=True)
class Traffic:
    """Prompts in order, with where each came from and, where known, both models' quality."""

    prompts: list[str]
    #: Pool name of each prompt.
    pools: list[str]
    #: Segment index of each prompt (-1 for the calibration sample's).
    segments: np.ndarray
    #: ``(n, 2)``: the strong and the weak model's quality in [0, 1], NaN where unknown.
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def shifts(self) -> list[int]:
        """Positions where a new segment starts (after the first)."""
        return [int(i) for i in np.flatnonzero(np.diff(self.segments)) + 1]

    def slice(self, start: int, stop: int | None = None) -> Traffic:
        """The items ``start:stop``."""
        return Traffic(
            self.prompts[start:stop],
            self.pools[start:stop],
            self.segments[start:stop],
            self.quality[start:stop],
        )


def build_traffic(
    schedule: Schedule, *, data_dir: str | Path | None = None
) -> tuple[Traffic | None, Traffic]:
    """The calibration sample (None without one) and the replay traffic of ``schedule``."""
    rng = np.random.default_rng(schedule.seed)
    pools = {
        name: _Pool(name, _load_pool(name, sources, data_dir), rng)
        for name, sources in schedule.pools.items()
    }
    calibration = _draw([schedule.calibration], pools, rng, first=-1) if schedule.calibration else None
    return calibration, _draw(schedule.segments, pools, rng, first=0)


def _draw(draws: list[Draw], pools: Mapping[str, _Pool], rng: np.random.Generator, *, first: int) -> Traffic:
    prompts: list[str] = []
    names: list[str] = []
    segments: list[int] = []
    quality: list[np.ndarray] = []
    for index, draw in enumerate(draws):
        keys = sorted(draw.mix)
        weights = np.array([draw.mix[k] for k in keys], dtype=np.float64)
        chosen = rng.choice(len(keys), size=draw.n, p=weights / weights.sum())
        for k in chosen:
            pool = pools[keys[k]]
            prompt, q = pool.next()
            prompts.append(prompt)
            names.append(pool.name)
            segments.append(first if first < 0 else index)
            quality.append(q)
    return Traffic(prompts, names, np.asarray(segments), np.asarray(quality).reshape(-1, 2))


class _Pool:
    """A pool's items, drawn in a seeded shuffled order, reshuffled when used up."""

    def __init__(self, name: str, items: tuple[list[str], np.ndarray], rng: np.random.Generator):
        self.name = name
        self.prompts, self.quality = items
        self._rng = rng
        self._order = rng.permutation(len(self.prompts))
        self._next = 0

    def next(self) -> tuple[str, np.ndarray]:
        if self._next == len(self._order):
            self._order, self._next = self._rng.permutation(len(self.prompts)), 0
        i = int(self._order[self._next])
        self._next += 1
        return self.prompts[i], self.quality[i]


def _load_pool(
    name: str, sources: list[PoolSource], data_dir: str | Path | None
) -> tuple[list[str], np.ndarray]:
    prompts: list[str] = []
    quality: list[np.ndarray] = []
    for source in sources:
        got, q = _load_source(source, data_dir)
        prompts += got
        quality.append(q)
    if not prompts:
        raise DataError(f"pool {name!r} has no prompts")
    return prompts, np.concatenate(quality)


def schedule_files(schedule: Schedule, *, data_dir: str | Path | None = None) -> list[Path]:
    """The prompt and benchmark files the pools of ``schedule`` read, as found: the files a replay
    must not write its outputs over."""
    files = [_source_file(source, data_dir) for sources in schedule.pools.values() for source in sources]
    return [f for f in files if f is not None]


def _source_file(source: PoolSource, data_dir: str | Path | None) -> Path | None:
    """The file of a prompts: or benchmark: source (None for a public benchmark or battles)."""
    from lmroute.data.benchmarks import PUBLIC_BENCHMARKS

    name = source.prompts if source.prompts is not None else source.benchmark
    if name is None or (source.benchmark is not None and name.lower() in PUBLIC_BENCHMARKS):
        return None
    return _path(name, data_dir)


def _load_source(source: PoolSource, data_dir: str | Path | None) -> tuple[list[str], np.ndarray]:
    file = _source_file(source, data_dir)
    if source.prompts is not None:
        from lmroute.data.prompts import read_prompts

        assert file is not None
        prompts = read_prompts(file)
        return prompts, np.full((len(prompts), 2), np.nan)
    if source.benchmark is not None:
        from lmroute.data.benchmarks import load_benchmark

        name = source.benchmark
        bench = load_benchmark(
            name if file is None else file,
            data_dir=data_dir,
            strong_model=source.strong_model,
            weak_model=source.weak_model,
        )
        quality = np.stack([bench.strong, bench.weak], axis=1) / source.quality_scale
        return list(bench.prompts), _checked(quality, f"benchmark {name}")
    assert source.battles is not None and source.strong_model and source.weak_model
    return _battle_outcomes(source.battles, source.strong_model, source.weak_model, data_dir)


def _battle_outcomes(
    spec: str, strong: str, weak: str, data_dir: str | Path | None
) -> tuple[list[str], np.ndarray]:
    """Each prompt of the battles between ``strong`` and ``weak``: the strong model's share of
    wins (ties half) as its quality, the rest as the weak model's."""
    from lmroute.data.sources import load_sources

    battles, _ = load_sources([spec], data_dir=data_dir, min_model_battles=1, deduplicate=False)
    wins: dict[str, list[float]] = {}
    for b in battles:
        if {b.model_a, b.model_b} != {strong, weak}:
            continue
        won = {"model_a": b.model_a == strong, "model_b": b.model_b == strong}.get(b.winner)
        wins.setdefault(b.prompt, []).append(0.5 if won is None else float(won))
    if not wins:
        raise DataError(f"{spec}: no battles between {strong!r} and {weak!r}")
    prompts = list(wins)
    strong_quality = np.array([np.mean(wins[p]) for p in prompts])
    return prompts, np.stack([strong_quality, 1.0 - strong_quality], axis=1)


def _path(name: str, data_dir: str | Path | None) -> Path:
    """``name`` as given, else in the data folders as a source's file is found (``data_dir``, then
    ``$LMROUTE_DATA_DIR``, which the battles of the same schedule were found in and its prompt
    files were not); as given when in none, for its reader to name."""
    from lmroute.data.public import find_data_file

    path = Path(name).expanduser()
    found, _ = find_data_file(path, data_dir)
    return found or path


def _checked(quality: np.ndarray, what: str) -> np.ndarray:
    if np.nanmin(quality) < 0 or np.nanmax(quality) > 1:
        raise DataError(f"{what}: qualities must lie in [0, 1]; set quality_scale (e.g. 10 for 1-10 grades)")
    return quality
