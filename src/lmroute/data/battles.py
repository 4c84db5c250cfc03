"""Preference battles: the one record every trainable router learns from, and its readers.

A battle says which of two models answered a prompt (the first user turn) better. Readers turn
each published format into battles and *drop* bad rows instead of failing on them, counting
every drop by reason (``ReadResult.dropped``), so a user sees what was lost and why. A file that
cannot be read as that format at all (missing, not UTF-8, malformed JSON, missing columns, no
valid row) raises :class:`~lmroute.exceptions.DataError` naming the file and line.

Formats:

* Chatbot Arena exports: :func:`lmroute.data.arena.read_arena`.
* Plain battles JSONL (:func:`read_battles_jsonl`): ``{"prompt", "model_a", "model_b",
  "winner"}`` a line (optionally ``"weight"``), as Arena-Hard's judged battles and as
  ``lmroute data --out`` writes.
* AlpacaEval judgments (:func:`read_alpaca_eval`): ``preference`` in [1, 2] between a baseline
  (``model_a``) and a compared model (``model_b``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from lmroute._jsonl import read_jsonl_objects
from lmroute.exceptions import DataError

Winner = Literal["model_a", "model_b", "tie", "tie (bothbad)"]
WINNERS: tuple[str, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")


@dataclass(frozen=True, slots=True)
class Battle:
    """Two models answered ``prompt`` (the first user turn); ``winner`` says which did better."""

    prompt: str
    model_a: str
    model_b: str
    winner: Winner
    #: Where the record came from (``arena``, ``gold:mmlu``...), for provenance and licences.
    source: str = ""
    #: How many battles this record counts as: golden labels on graded scores weigh a win by its
    #: margin (see :mod:`lmroute.data.gold`); every reader gives 1 unless the file says otherwise.
    weight: float = 1.0


# Drop reasons: the keys of ReadResult.dropped.
EMPTY_PROMPT = "empty prompt"
NOT_TEXT_PROMPT = "prompt is not a string"
UNKNOWN_WINNER = "unknown winner"
MISSING_MODEL = "missing model name"
SAME_MODEL = "same model on both sides"
MALFORMED_PROMPT = "prompt is not a JSON list of strings"
DUPLICATE_ROW = "duplicate row (same prompt, models, responses and winner)"
BAD_PREFERENCE = "preference not 0 or a number in [1, 2]"
EXCLUDED_MODEL = "excluded model (gamed output or placeholder)"
SELF_JUDGED = "judge rated its own model"
OTHER_ANNOTATOR = "annotator not selected"
BAD_WEIGHT = "weight not a positive number"

#: AlpacaEval entries that are not a model's honest answers: ``gpt4_gamed`` is GPT-4 output
#: rewritten to exploit the judge, ``example`` a placeholder. ``_concise``/``_verbose`` variants
#: are kept: they are real deployments (a model plus a system prompt) under their own names.
ALPACA_EXCLUDED_MODELS: tuple[str, ...] = ("gpt4_gamed", "example")

BATTLE_FIELDS = ("prompt", "model_a", "model_b", "winner")


@dataclass
class ReadResult:
    """What a reader produced: the valid battles, how many rows it read, what it dropped and why."""

    battles: list[Battle]
    rows: int
    dropped: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """One line: ``kept 90 of 100 rows; dropped 7 unknown winner, 3 empty prompt``."""
        text = f"kept {len(self.battles):,} of {self.rows:,} rows"
        if self.dropped:
            text += "; dropped " + ", ".join(f"{n:,} {why}" for why, n in self.dropped.most_common())
        return text


def normalize_winner(value: object) -> Winner | None:
    """``value`` as one of :data:`WINNERS` (case and spacing forgiven), or None if it is none."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.strip().lower().replace("(", " (").split())
    return cast("Winner", text) if text in WINNERS else None


class BattleCollector:
    """Validates candidate battles, keeping the good ones and counting the rest by reason: each
    format's reader feeds it rows and returns its :meth:`result`."""

    def __init__(self, source: str):
        self.source = source
        self.battles: list[Battle] = []
        self.dropped: Counter[str] = Counter()
        self.rows = 0

    def drop(self, reason: str) -> None:
        self.rows += 1
        self.dropped[reason] += 1

    def add(
        self,
        prompt: object,
        model_a: object,
        model_b: object,
        winner: object,
        source: str = "",
        weight: object = 1.0,
    ) -> None:
        self.rows += 1
        checked = _battle_or_reason(prompt, model_a, model_b, winner, source or self.source, weight)
        if isinstance(checked, str):
            self.dropped[checked] += 1
        else:
            self.battles.append(checked)

    def result(self, where: object) -> ReadResult:
        result = ReadResult(self.battles, self.rows, self.dropped)
        if not self.battles:
            raise DataError(f"{where}: no valid battles ({result.describe()})")
        return result


def _battle_or_reason(
    prompt: object, model_a: object, model_b: object, winner: object, source: str, weight: object
) -> Battle | str:
    """The battle these fields make, or the reason they make none (a key of ReadResult.dropped)."""
    if prompt is not None and not isinstance(prompt, str):
        return NOT_TEXT_PROMPT
    if not prompt or not prompt.strip():
        return EMPTY_PROMPT
    if not (isinstance(model_a, str) and model_a.strip() and isinstance(model_b, str) and model_b.strip()):
        return MISSING_MODEL
    if model_a.strip() == model_b.strip():
        return SAME_MODEL
    normalized = normalize_winner(winner)
    if normalized is None:
        return UNKNOWN_WINNER
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
        return BAD_WEIGHT
    try:
        weight = float(weight)
    except OverflowError:  # a JSON integer past a float's range (below math.inf all the same)
        return BAD_WEIGHT
    return Battle(prompt, model_a.strip(), model_b.strip(), normalized, source, weight)


# -- plain battles JSONL ------------------------------------------------------------------------


def read_battles_jsonl(path: str | Path, *, source: str = "battles") -> ReadResult:
    """Battles from JSONL, one ``{"prompt", "model_a", "model_b", "winner"}`` object a line.

    ``winner`` is one of :data:`WINNERS`. A record's own ``source`` field, when present, is kept
    as the battle's provenance (``lmroute data --out`` writes it); otherwise ``source`` is used.
    An optional ``weight`` (a positive number, default 1) says how many battles the line counts as.
    The first record must have all four fields (else this is not a battles file); later records
    missing one are dropped and counted.
    """
    path = Path(path)
    collector = BattleCollector(source)
    for line_number, record in read_jsonl_objects(path, what="battles"):
        if collector.rows == 0:
            missing = [f for f in BATTLE_FIELDS if f not in record]
            if missing:
                raise DataError(
                    f"{path}:{line_number}: missing field(s) {', '.join(missing)}; a battles file has "
                    f"{', '.join(BATTLE_FIELDS)} on each line (found {', '.join(record) or 'none'})"
                )
        own = record.get("source")
        collector.add(
            record.get("prompt"),
            record.get("model_a"),
            record.get("model_b"),
            record.get("winner"),
            own if isinstance(own, str) and own.strip() else "",
            record.get("weight", 1.0),
        )
    return collector.result(path)


# -- AlpacaEval judgments -------------------------------------------------------------------------


def read_alpaca_eval(
    path: str | Path,
    *,
    annotators: Sequence[str] | None = None,
    exclude_models: Sequence[str] = ALPACA_EXCLUDED_MODELS,
    source: str = "alpaca-eval",
) -> ReadResult:
    """Battles from AlpacaEval judgments (a ``judgments.jsonl`` file or the folder holding it).

    ``preference`` is in [1, 2]: above 1.5 ``model_b`` won, below ``model_a``, exactly 1.5 is a
    tie (the weighted annotator's probabilities are thresholded the same way); 0 is AlpacaEval's
    older encoding of a draw and is a tie too (as ``alpaca_eval.metrics`` reads it). Every annotator
    is kept unless ``annotators`` names some; several annotators judging the same pair count
    as separate votes, like Arena's several voters. Rows of ``exclude_models`` (default: the
    gamed and placeholder outputs) and rows where the judge rates its own model's answers
    (``annotator == model_b``, e.g. ``bedrock_claude``) are dropped and counted.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "judgments.jsonl"
    wanted = set(annotators) if annotators is not None else None
    excluded = set(exclude_models)
    seen_annotators: set[str] = set()
    collector = BattleCollector(source)
    for line_number, record in read_jsonl_objects(path, what="judgments"):
        if collector.rows == 0:
            missing = [f for f in ("prompt", "model_a", "model_b", "preference") if f not in record]
            if missing:
                raise DataError(
                    f"{path}:{line_number}: missing field(s) {', '.join(missing)}: not AlpacaEval "
                    "judgments (prompt, model_a, model_b, preference, annotator)"
                )
        annotator = record.get("annotator")
        seen_annotators.add(str(annotator))
        if wanted is not None and not (isinstance(annotator, str) and annotator in wanted):
            collector.drop(OTHER_ANNOTATOR)
            continue
        # A name that is not a string (a list, an object) is dropped below as a missing model name.
        names = (record.get("model_a"), record.get("model_b"))
        if any(isinstance(name, str) and name in excluded for name in names):
            collector.drop(EXCLUDED_MODEL)
            continue
        if annotator is not None and annotator == record.get("model_b"):
            collector.drop(SELF_JUDGED)
            continue
        winner = _preference_winner(record.get("preference"))
        if winner is None:
            collector.drop(BAD_PREFERENCE)
            continue
        collector.add(record.get("prompt"), record.get("model_a"), record.get("model_b"), winner)
    if wanted is not None and wanted - seen_annotators:
        raise DataError(
            f"{path}: no judgments by annotator(s) {', '.join(sorted(wanted - seen_annotators))}; "
            f"it has {', '.join(sorted(seen_annotators))}"
        )
    return collector.result(path)


def _preference_winner(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value == 0:  # AlpacaEval's older encoding of a draw (its metrics map 0 to 1.5)
        return "tie"
    # Not math.isfinite, which fails on a JSON integer past a float's range: the range check
    # refuses NaN and the infinities as well.
    if not 1.0 <= value <= 2.0:
        return None
    return "model_b" if value > 1.5 else "model_a" if value < 1.5 else "tie"


def battle_records(battles: Iterable[Battle]) -> Iterator[dict[str, str | float]]:
    """Battles as JSON-ready dicts (what :func:`read_battles_jsonl` reads back); ``weight`` only
    when it is not 1."""
    for b in battles:
        record: dict[str, str | float] = {
            "prompt": b.prompt,
            "model_a": b.model_a,
            "model_b": b.model_b,
            "winner": b.winner,
            "source": b.source,
        }
        if b.weight != 1.0:
            record["weight"] = b.weight
        yield record


def sample_prompts(battles: Sequence[Battle], max_prompts: int | None, *, seed: int = 0) -> list[Battle]:
    """The battles of at most ``max_prompts`` distinct prompts, a seeded sample (all when None or
    when there are no more prompts than that), in their original order. Bounds a fit's time."""
    prompts = list(dict.fromkeys(b.prompt for b in battles))
    if max_prompts is None or len(prompts) <= max_prompts:
        return list(battles)
    import numpy as np

    rng = np.random.default_rng(seed)
    kept = {prompts[i] for i in rng.choice(len(prompts), size=max_prompts, replace=False)}
    return [b for b in battles if b.prompt in kept]
