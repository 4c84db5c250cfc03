"""The outputs of a run: battles and per-model scores from each item's finished calls, a summary.

Written at the end of every run from what the stores hold, so a rerun rewrites them whole.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmroute._files import write_atomic
from lmroute._jsonl import write_jsonl
from lmroute.labeling.extract import grade
from lmroute.labeling.items import LabelItem
from lmroute.labeling.job import LabelJob
from lmroute.labeling.judge import combine_pairwise, parse_pairwise, parse_score, winner_from_scores
from lmroute.labeling.limits import BUDGET_STOP

BATTLES_FILE = "battles.jsonl"
SCORES_FILE = "scores.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class ItemCalls:
    """The finished calls of one item: each model's answer, and (judge mode) each judge call's
    output under what it judged (see :meth:`LabelJob.judge_calls`)."""

    answers: Mapping[str, str]
    judged: Mapping[str, str] = field(default_factory=dict)
    #: Whether every call of the item finished; else the pairs whose calls did are labelled.
    complete: bool = True


@dataclass
class LabelResult:
    """What a run produced: the summary written to ``summary.json`` and the files it wrote."""

    summary: dict[str, Any]
    files: list[Path]

    @property
    def complete(self) -> bool:
        """Whether every item was labelled."""
        return self.summary["items"]["incomplete"] == 0


@dataclass
class _Labels:
    battles: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    unparsable: int = 0
    excluded_pairs: int = 0


def write_outputs(
    job: LabelJob, out: Path, outcomes: Sequence[ItemCalls | None], run_summary: Mapping[str, Any]
) -> LabelResult:
    """Write battles, scores (if any) and the summary of ``job`` into ``out``.

    ``outcomes`` holds each item's finished calls, None for an item with none; ``run_summary`` is the
    run's own part of the summary (calls, tokens, why it stopped), written last.
    """
    labels = _Labels()
    for item, outcome in zip(job.items, outcomes, strict=True):
        if outcome is None:
            continue
        if job.mode == "golden":
            _golden_labels(job, item, outcome, labels)
        elif job.judge_mode == "score":
            _score_labels(job, item, outcome, labels)
        else:
            _pairwise_labels(job, item, outcome, labels)
    files = [write_jsonl(out / BATTLES_FILE, labels.battles)]
    # Even with no row (nothing labelled this time): a scores file of an earlier run would pass
    # for this one's.
    if job.mode == "golden" or job.judge_mode == "score":
        files.append(write_jsonl(out / SCORES_FILE, labels.scores))
    else:  # pairwise verdicts give no scores; a golden or score run's file would pass for them
        (out / SCORES_FILE).unlink(missing_ok=True)
    summary = {**_summary(job, outcomes, labels), **run_summary}
    path = out / SUMMARY_FILE
    # Atomic and with write_failures' one-line errors, as battles and scores are written.
    files.append(
        write_atomic(path, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    )
    return LabelResult(summary, files)


def _battle(job: LabelJob, item: LabelItem, a: str, b: str, winner: str, **details: Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "prompt": item.prompt,
        "model_a": a,
        "model_b": b,
        "winner": winner,
        "source": job.source,
        **details,
    }


def _golden_labels(job: LabelJob, item: LabelItem, calls: ItemCalls, labels: _Labels) -> None:
    graded = {
        name: grade(text, item.reference or "", grader=job.grader) for name, text in calls.answers.items()
    }
    correct = {name: float(ok) for name, (ok, _) in graded.items()}
    for a, b in _answered_pairs(job, correct):
        both_wrong = not (correct[a] or correct[b])
        winner = "tie (bothbad)" if both_wrong else winner_from_scores(correct, a, b)
        labels.battles.append(
            _battle(job, item, a, b, winner, correct={a: bool(correct[a]), b: bool(correct[b])})
        )
    if not calls.complete:  # a benchmark row needs every model's score
        return
    extracted = {name: answer for name, (_, answer) in graded.items()}
    labels.scores.append(
        {
            "id": item.id,
            "prompt": item.prompt,
            "scores": correct,
            "reference": item.reference,
            "extracted": extracted,
        }
    )


def _score_labels(job: LabelJob, item: LabelItem, calls: ItemCalls, labels: _Labels) -> None:
    assert job.judge is not None
    verdicts = {name: parse_score(text) for name, text in calls.judged.items()}
    rated = {name: v for name, v in verdicts.items() if v is not None}
    labels.unparsable += len(verdicts) - len(rated)
    for a, b in _answered_pairs(job, verdicts):
        if a not in rated or b not in rated:
            labels.excluded_pairs += 1
            continue
        judge = {"model": job.judge.name, "scores": {a: rated[a], b: rated[b]}}
        labels.battles.append(_battle(job, item, a, b, winner_from_scores(rated, a, b), judge=judge))
    if len(rated) == len(job.models):  # a benchmark row needs every model's score
        labels.scores.append({"id": item.id, "prompt": item.prompt, "scores": rated})


def _pairwise_labels(job: LabelJob, item: LabelItem, calls: ItemCalls, labels: _Labels) -> None:
    assert job.judge is not None
    verdicts = {what: parse_pairwise(text) for what, text in calls.judged.items()}
    labels.unparsable += sum(v is None for v in verdicts.values())
    for a, b in job.pairs:
        if f"{a}|{b}" not in verdicts or f"{b}|{a}" not in verdicts:  # a call failed or not made
            continue
        first, second = verdicts[f"{a}|{b}"], verdicts[f"{b}|{a}"]
        if first is None or second is None:  # one order alone would not cancel position bias
            labels.excluded_pairs += 1
            continue
        winner, consistent = combine_pairwise(first, second)
        judge = {"model": job.judge.name, "verdicts": [first, second], "consistent": consistent}
        labels.battles.append(_battle(job, item, a, b, winner, judge=judge))


def _answered_pairs(job: LabelJob, answered: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The pairs of ``job`` both of whose models are in ``answered``."""
    return [(a, b) for a, b in job.pairs if a in answered and b in answered]


def _per_model(job: LabelJob, labels: _Labels) -> dict[str, dict[str, Any]]:
    counts: dict[str, Counter[str]] = {m.name: Counter() for m in job.models}
    for battle in labels.battles:
        a, b, winner = battle["model_a"], battle["model_b"], battle["winner"]
        counts[a]["battles"] += 1
        counts[b]["battles"] += 1
        if winner == "model_a":
            counts[a]["wins"] += 1
        elif winner == "model_b":
            counts[b]["wins"] += 1
        else:
            counts[a]["ties"] += 1
            counts[b]["ties"] += 1
    per_model = {}
    for name, count in counts.items():
        n = count["battles"]
        entry: dict[str, Any] = {
            "battles": n,
            "wins": count["wins"],
            "ties": count["ties"],
            "win_rate": round(count["wins"] / n, 4) if n else None,
        }
        values = [row["scores"][name] for row in labels.scores]
        if values:
            entry["accuracy" if job.mode == "golden" else "mean_score"] = round(sum(values) / len(values), 4)
        per_model[name] = entry
    return per_model


def _summary(job: LabelJob, outcomes: Sequence[ItemCalls | None], labels: _Labels) -> dict[str, Any]:
    winners = Counter(b["winner"] for b in labels.battles)
    ties = winners["tie"] + winners["tie (bothbad)"]
    done = sum(o is not None and o.complete for o in outcomes)
    judge = None
    if job.judge is not None and job.template is not None:
        judge = {"model": job.judge.name, "mode": job.judge_mode, "template": job.template.source}
    return {
        "mode": job.mode,
        "source": job.source,
        "judge": judge,
        "grader": job.grader if job.mode == "golden" else None,
        "models": [m.name for m in job.models],
        "items": {"total": len(job.items), "labelled": done, "incomplete": len(job.items) - done},
        "battles": len(labels.battles),
        "winners": dict(winners),
        "tie_share": round(ties / len(labels.battles), 4) if labels.battles else None,
        "per_model": _per_model(job, labels),
        "unparsable_verdicts": labels.unparsable,
        "excluded_pairs": labels.excluded_pairs,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few lines for the terminal: items, win rates, ties, unparsable verdicts, tokens."""
    items = summary["items"]
    lines = [
        f"labelled {items['labelled']}/{items['total']} prompts ({summary['source']}): "
        f"{summary['battles']} battles, tie share {_pct(summary['tie_share'])}"
    ]
    for name, entry in summary["per_model"].items():
        extra = "".join(f", {k} {entry[k]:.3g}" for k in ("accuracy", "mean_score") if k in entry)
        lines.append(
            f"  {name}: win rate {_pct(entry['win_rate'])} ({entry['wins']} wins, "
            f"{entry['ties']} ties in {entry['battles']}){extra}"
        )
    if summary["mode"] == "judge":
        lines.append(
            f"unparsable verdicts: {summary['unparsable_verdicts']} "
            f"({summary['excluded_pairs']} pairs excluded)"
        )
    calls, tokens = summary["calls"], summary["tokens"]
    made, reused = sum(calls["made"].values()), sum(calls["reused"].values())
    this_run, all_runs = tokens["this_run"]["total"], tokens["all_runs"]["total"]
    estimated = tokens["estimated_calls"]
    lines.append(
        f"calls: {made} made, {reused} reused from earlier runs, {calls['failed']} failed; "
        f"tokens this run {this_run:,}, all runs {all_runs:,}"
        + (f" (estimated for {estimated} calls whose endpoint reported no usage)" if estimated else "")
    )
    if summary["stopped"]:
        # The budget counts the run folder's earlier runs too: the same command would stop again.
        again = (
            "rerun with a larger --budget-tokens to continue"
            if summary["stopped"].startswith(BUDGET_STOP)
            else "rerun the same command to continue"
        )
        lines.append(f"stopped early: {summary['stopped']}; {again}")
    elif items["incomplete"]:
        lines.append(f"{items['incomplete']} prompts are incomplete (failed calls); rerun to retry them")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
