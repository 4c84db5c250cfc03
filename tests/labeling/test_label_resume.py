"""Resuming, budgets, retries and limits of ``lmroute label``, with fake upstreams that count calls."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _line_breaks import TEXT

from lmroute.cli import main
from lmroute.data.battles import WINNERS
from lmroute.data.benchmarks import load_custom
from lmroute.exceptions import ConfigError, DataError, UpstreamError, WriteError
from lmroute.labeling import (
    LabelItem,
    LabelJob,
    RunLimits,
    alabel,
    format_summary,
    label,
    plan_labeling,
    read_items,
)
from lmroute.labeling.limits import RateLimiter
from lmroute.labeling.store import CallStore
from lmroute.labeling.upstream import ChatResult, LabelModel, UpstreamCaller, parse_model_spec

STRONG = LabelModel(name="strong", base_url="http://127.0.0.1:9/v1")
WEAK = LabelModel(name="weak", base_url="http://127.0.0.1:9/v1")
JUDGE = LabelModel(name="judge", base_url="http://127.0.0.1:9/v1")


def _answer(model: str, content: str) -> str:
    """Deterministic fake answers: the strong model is right on every question, the weak one on
    even-numbered ones."""
    number = int(content.split("#")[-1])
    right = model == "strong" or number % 2 == 0
    return f"{model} thinks.\n#### {number if right else number + 1}"


class CountingCaller:
    """A fake upstream that answers like :func:`_answer`, judges for the strong model, and counts."""

    def __init__(self, *, delay: float = 0.0, failures: dict | None = None):
        self.delay = delay
        self.failures = dict(failures or {})  # model name -> list of failures to raise first
        self.calls: Counter = Counter()
        self.finished = 0
        self.active = 0
        self.max_active = 0

    async def __call__(self, model, messages, params):
        key = (model.name, json.dumps(messages), json.dumps(params, sort_keys=True))
        self.calls[key] += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            pending = self.failures.get(model.name)
            if pending:  # a status, or (status, Retry-After seconds)
                status, retry_after = pending[0] if isinstance(pending[0], tuple) else (pending[0], None)
                pending.pop(0)
                raise UpstreamError(
                    "fake failure", status_code=status, model=model.name, retry_after=retry_after
                )
            content = messages[-1]["content"]
            if model.name == "judge":
                first = content.split("Assistant A's Answer]")[1]
                text = "A is right. [[A]]" if first.lstrip().startswith("strong") else "B is right. [[B]]"
            else:
                text = _answer(model.name, content)
            self.finished += 1
            return ChatResult(text, prompt_tokens=7, completion_tokens=3)
        finally:
            self.active -= 1


def _items(n: int) -> tuple[LabelItem, ...]:
    return tuple(LabelItem(f"q{i}", f"Question #{i}", reference=f"It is {i}.\n#### {i}") for i in range(n))


def _job(mode: str = "golden", n: int = 12, **options) -> LabelJob:
    options.setdefault("params", {"temperature": 0.0, "max_tokens": 10})
    options.setdefault("judge_params", {"temperature": 0.0, "max_tokens": 10})
    judge = JUDGE if mode == "judge" else None
    return LabelJob(_items(n), (STRONG, WEAK), mode, judge=judge, **options)


def _stored_keys(out: Path) -> set:
    keys = set()
    for name in ("responses.jsonl", "judgements.jsonl"):
        path = out / name
        if path.exists():
            for record in _read_jsonl(path):
                keys.add((record["model"], record["prompt_id"], record["request_hash"]))
    return keys


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:  # lines end at newlines only, not at U+2028
        return [json.loads(line) for line in f]


async def _no_sleep(seconds: float) -> None:
    return None


def test_golden_run_labels_and_a_rerun_calls_nothing(tmp_path):
    caller = CountingCaller()
    result = label(_job(), tmp_path, caller=caller)
    assert result.complete and result.summary["stopped"] is None
    assert sum(caller.calls.values()) == 24 and max(caller.calls.values()) == 1
    battles = _read_jsonl(tmp_path / "battles.jsonl")
    assert [b["winner"] for b in battles] == ["tie" if i % 2 == 0 else "model_a" for i in range(12)]
    assert all(b["source"] == "label:golden:auto" for b in battles)
    responses = _read_jsonl(tmp_path / "responses.jsonl")
    assert {(r["model"], r["prompt_id"]) for r in responses} == {
        (m, f"q{i}") for m in ("strong", "weak") for i in range(12)
    }
    assert all(
        r["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10} for r in responses
    )
    assert all(r["latency_s"] >= 0 and r["text"] for r in responses)
    assert result.summary["per_model"]["strong"]["accuracy"] == 1.0
    assert result.summary["per_model"]["weak"]["accuracy"] == 0.5
    assert result.summary["tokens"]["this_run"]["total"] == 240

    again = CountingCaller()
    rerun = label(_job(), tmp_path, caller=again)
    assert sum(again.calls.values()) == 0
    assert rerun.summary["calls"]["reused"] == {"responses": 24}
    assert _read_jsonl(tmp_path / "battles.jsonl") == battles


def test_a_summary_that_cannot_be_written_is_one_line_and_the_calls_stay_stored(tmp_path):
    (tmp_path / "summary.json").mkdir()  # in the way of the summary, written last
    with pytest.raises(WriteError, match=r"cannot write .*summary\.json: it is a folder$"):
        label(_job(), tmp_path, caller=CountingCaller())
    (tmp_path / "summary.json").rmdir()
    again = CountingCaller()
    assert label(_job(), tmp_path, caller=again).complete
    assert sum(again.calls.values()) == 0  # every call was kept from the first run


def test_a_fatal_error_cancels_the_calls_under_way_instead_of_paying_for_them(tmp_path):
    # Not an upstream's failure (a full disk, a caller's bug): the run ends. Its other calls went
    # on, paid for and never stored, and in a long-lived event loop (a Ray worker's) even after
    # the error was raised.
    finished = []

    async def caller(model, messages, params):
        if model.name == "weak" and messages[-1]["content"] == "Question #0":
            raise RuntimeError("a bug in the caller")
        await asyncio.sleep(0.2)
        finished.append(model.name)
        return ChatResult(_answer(model.name, messages[-1]["content"]), prompt_tokens=7, completion_tokens=3)

    async def run():
        with pytest.raises(RuntimeError, match="a bug in the caller"):
            await alabel(_job(n=4), tmp_path, caller=caller)
        await asyncio.sleep(0.4)  # the loop lives on

    asyncio.run(run())
    assert finished == []


@pytest.mark.parametrize("mode", ["golden", "judge"])
def test_a_model_failing_on_a_prompt_leaves_the_other_models_pairs_of_it_labelled(tmp_path, mode):
    # A prompt one model always fails on (too long for its context, refused by a filter) lost the
    # other models' pairs too, answered and paid for, on every rerun.
    third = LabelModel(name="third", base_url="http://127.0.0.1:9/v1")
    counting = CountingCaller()

    async def caller(model, messages, params):
        if model.name == "third" and messages[-1]["content"] == "Question #1":
            raise UpstreamError("prompt too long", status_code=400, model="third")
        return await counting(model, messages, params)

    job = LabelJob(
        _items(2),
        (STRONG, WEAK, third),
        mode,
        judge=JUDGE if mode == "judge" else None,
        params={"max_tokens": 10},
        judge_params={"max_tokens": 10},
    )
    result = label(job, tmp_path, caller=caller)
    pairs = [(b["id"], b["model_a"], b["model_b"]) for b in _read_jsonl(tmp_path / "battles.jsonl")]
    assert sorted(pairs) == [
        ("q0", "strong", "third"),
        ("q0", "strong", "weak"),
        ("q0", "weak", "third"),
        ("q1", "strong", "weak"),
    ]
    assert result.summary["items"] == {"total": 2, "labelled": 1, "incomplete": 1}
    assert not result.complete
    if mode == "golden":  # a benchmark row needs every model's score
        assert [row["id"] for row in _read_jsonl(tmp_path / "scores.jsonl")] == ["q0"]


def test_golden_outputs_are_a_custom_benchmark(tmp_path):
    label(_job(), tmp_path, caller=CountingCaller())
    bench = load_custom(tmp_path / "scores.jsonl")
    assert bench.strong_model == "strong" and bench.weak_model == "weak"
    assert list(bench.strong) == [1.0] * 12
    assert list(bench.weak) == [float(i % 2 == 0) for i in range(12)]
    for battle in _read_jsonl(tmp_path / "battles.jsonl"):
        assert battle["winner"] in WINNERS
        assert {"prompt", "model_a", "model_b", "winner"} <= set(battle)


def test_both_wrong_is_tie_bothbad(tmp_path):
    items = (LabelItem("x", "Question #3", reference="#### 99"),)
    job = LabelJob(items, (STRONG, WEAK), "golden", params={"max_tokens": 10})
    label(job, tmp_path, caller=CountingCaller())
    assert _read_jsonl(tmp_path / "battles.jsonl")[0]["winner"] == "tie (bothbad)"


def test_budget_stops_cleanly_and_the_rerun_never_repeats_a_call(tmp_path):
    first = CountingCaller()
    stopped = label(_job(), tmp_path, caller=first, limits=RunLimits(concurrency=1, budget_tokens=120))
    assert stopped.summary["stopped"].startswith("budget of 120 tokens")
    assert not stopped.complete
    assert 0 < stopped.summary["items"]["labelled"] < 12
    # No call may take the run over the cap: 10 tokens a call here.
    assert stopped.summary["tokens"]["all_runs"]["total"] <= 120
    assert len(_read_jsonl(tmp_path / "battles.jsonl")) == stopped.summary["items"]["labelled"]
    stored = _stored_keys(tmp_path)

    second = CountingCaller()
    done = label(_job(), tmp_path, caller=second)
    assert done.complete
    assert sum(first.calls.values()) + sum(second.calls.values()) == 24
    assert not set(first.calls) & set(second.calls)
    assert done.summary["calls"]["reused"]["responses"] == len(stored)


def test_the_budget_counts_an_estimate_for_calls_whose_upstream_reports_no_usage(tmp_path):
    # Counted as 0 tokens, such calls spent nothing of the budget: all 24 were made under a
    # budget of 60 tokens, and a rerun counted nothing spent either.
    async def no_usage(model, messages, params):
        return ChatResult(_answer(model.name, messages[-1]["content"]), prompt_tokens=0, completion_tokens=0)

    limits = RunLimits(concurrency=1, budget_tokens=60)
    stopped = label(_job(), tmp_path, caller=no_usage, limits=limits)
    assert stopped.summary["stopped"].startswith("budget of 60 tokens")
    assert 0 < stopped.summary["tokens"]["all_runs"]["total"] <= 60
    responses = _read_jsonl(tmp_path / "responses.jsonl")
    assert responses and all(r["usage"]["estimated"] and r["usage"]["total_tokens"] > 0 for r in responses)
    again = label(_job(), tmp_path, caller=no_usage, limits=limits)
    assert again.summary["calls"]["made"] == {}  # the stored estimates count against the budget


def test_the_summary_says_when_token_counts_are_estimated(tmp_path):
    # The counts of calls whose upstream reported no usage are estimates, stored as such; the
    # printed summary gave them as counts.
    async def no_usage(model, messages, params):
        return ChatResult(_answer(model.name, messages[-1]["content"]), prompt_tokens=0, completion_tokens=0)

    reported = label(_job(n=2), tmp_path / "reported", caller=CountingCaller())
    assert reported.summary["tokens"]["estimated_calls"] == 0
    assert "estimate" not in format_summary(reported.summary)
    estimated = label(_job(n=2), tmp_path / "estimated", caller=no_usage)
    assert estimated.summary["tokens"]["estimated_calls"] == 4
    assert "(estimated for 4 calls whose endpoint reported no usage)" in format_summary(estimated.summary)


def test_a_run_stopped_by_its_budget_says_to_raise_the_budget_not_to_rerun_it_as_it_was(tmp_path):
    # The budget counts the run folder's earlier runs: the same command again starts no call, yet
    # the summary said "rerun the same command to continue" (docs/labeling.md: a larger budget).
    limits = RunLimits(concurrency=1, budget_tokens=120)
    first = label(_job(), tmp_path, caller=CountingCaller(), limits=limits)
    again = CountingCaller()
    second = label(_job(), tmp_path, caller=again, limits=limits)
    assert sum(again.calls.values()) == 0 and second.summary["stopped"] == first.summary["stopped"]
    last = format_summary(second.summary).splitlines()[-1]
    assert (
        last == "stopped early: budget of 120 tokens reached; rerun with a larger --budget-tokens to continue"
    )


def test_a_run_stopped_by_failures_says_to_rerun_it(tmp_path):
    caller = CountingCaller(failures={"weak": [500] * 50})
    stopped = label(_job(), tmp_path, caller=caller, limits=RunLimits(retries=0, max_failures=2))
    assert format_summary(stopped.summary).splitlines()[-1].endswith("; rerun the same command to continue")


def test_cancelled_run_resumes_without_repeating_finished_calls(tmp_path):
    first = CountingCaller(delay=0.01)

    async def cancel_midway():
        task = asyncio.create_task(
            alabel(_job("judge"), tmp_path, caller=first, limits=RunLimits(concurrency=3))
        )
        while first.finished < 20:
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    finished = _stored_keys(tmp_path)
    assert 20 <= len(finished) < 12 * 2 + 12 * 2  # 24 responses and 24 judge calls in all

    second = CountingCaller()
    result = label(_job("judge"), tmp_path, caller=second, limits=RunLimits(concurrency=3))
    assert result.complete
    stored_now = _stored_keys(tmp_path)
    assert finished <= stored_now and len(stored_now) == 48
    repeated = set(first.calls) & set(second.calls)
    # Only calls in flight at the cancel may be made again; they never reached the store.
    assert len(repeated) <= 3
    assert sum(second.calls.values()) == 48 - len(finished)
    assert [b["winner"] for b in _read_jsonl(tmp_path / "battles.jsonl")] == ["model_a"] * 12


def test_judge_pairwise_records_raw_output_and_verdicts(tmp_path):
    result = label(_job("judge", n=4), tmp_path, caller=CountingCaller())
    judgements = _read_jsonl(tmp_path / "judgements.jsonl")
    assert len(judgements) == 8
    assert {j["judged"] for j in judgements} == {"strong|weak", "weak|strong"}
    assert all(j["text"].endswith(("[[A]]", "[[B]]")) and j["verdict"] in ("A", "B") for j in judgements)
    battle = _read_jsonl(tmp_path / "battles.jsonl")[0]
    assert battle["judge"] == {"model": "judge", "verdicts": ["A", "B"], "consistent": True}
    assert battle["source"] == "label:judge-pairwise:judge"
    assert result.summary["per_model"]["strong"]["win_rate"] == 1.0
    assert result.summary["unparsable_verdicts"] == 0


def test_unparsable_verdicts_are_counted_and_excluded(tmp_path):
    class Mumbling(CountingCaller):
        async def __call__(self, model, messages, params):
            result = await super().__call__(model, messages, params)
            if model.name == "judge" and "Question #1" in messages[-1]["content"]:
                return ChatResult("I cannot decide.", 7, 3)
            return result

    result = label(_job("judge", n=3), tmp_path, caller=Mumbling())
    assert result.summary["unparsable_verdicts"] == 2
    assert result.summary["excluded_pairs"] == 1
    assert [b["id"] for b in _read_jsonl(tmp_path / "battles.jsonl")] == ["q0", "q2"]
    assert any(j["verdict"] is None for j in _read_jsonl(tmp_path / "judgements.jsonl"))


@pytest.mark.parametrize("mode, options", [("golden", {}), ("judge", {"judge_mode": "score"})])
def test_a_rerun_that_labels_nothing_leaves_no_scores_of_an_earlier_run(tmp_path, mode, options):
    """Battles and scores are rewritten whole from what this run labelled: a scores.jsonl of the
    earlier run beside an empty battles.jsonl would be evaluated as if it were this run's."""

    class Rater(CountingCaller):
        async def __call__(self, model, messages, params):
            if model.name != "judge":
                return await super().__call__(model, messages, params)
            return ChatResult("Rating: [[7]]", 5, 2)

    label(_job(mode, n=4, **options), tmp_path, caller=Rater())
    assert len(_read_jsonl(tmp_path / "scores.jsonl")) == 4
    changed = _job(mode, n=4, params={"temperature": 0.0, "max_tokens": 11}, **options)
    stopped = label(changed, tmp_path, caller=CountingCaller(), limits=RunLimits(budget_tokens=1))
    assert stopped.summary["items"]["labelled"] == 0
    assert _read_jsonl(tmp_path / "battles.jsonl") == []
    assert _read_jsonl(tmp_path / "scores.jsonl") == []
    assert tmp_path / "scores.jsonl" in stopped.files


def test_a_pairwise_run_leaves_no_scores_of_an_earlier_golden_run(tmp_path):
    """A pairwise judge run writes no scores: one of a golden run in the same folder would pass
    for this run's, beside its battles and summary."""
    label(_job("golden", n=2), tmp_path, caller=CountingCaller())
    assert (tmp_path / "scores.jsonl").exists()
    result = label(_job("judge", n=2), tmp_path, caller=CountingCaller())
    assert result.summary["battles"] == 2
    assert not (tmp_path / "scores.jsonl").exists()


def test_score_mode_writes_ratings(tmp_path):
    class Rater(CountingCaller):
        async def __call__(self, model, messages, params):
            if model.name != "judge":
                return await super().__call__(model, messages, params)
            answer = messages[-1]["content"].split("Answer]")[1]
            return ChatResult("Rating: [[9]]" if answer.lstrip().startswith("strong") else "[[4]]", 5, 2)

    result = label(_job("judge", n=3, judge_mode="score"), tmp_path, caller=Rater())
    assert [b["winner"] for b in _read_jsonl(tmp_path / "battles.jsonl")] == ["model_a"] * 3
    assert [r["scores"] for r in _read_jsonl(tmp_path / "scores.jsonl")] == [{"strong": 9.0, "weak": 4.0}] * 3
    assert result.summary["per_model"]["weak"]["mean_score"] == 4.0


def test_identical_judge_requests_are_made_once(tmp_path):
    twin = LabelModel(name="twin", base_url="http://127.0.0.1:9/v1", model="strong")

    class Echo(CountingCaller):
        async def __call__(self, model, messages, params):
            if model.name != "judge":
                self.calls[(model.name, "answer")] += 1
                return ChatResult("same answer", 1, 1)
            return await super().__call__(model, messages, params)

    caller = Echo()
    job = LabelJob(_items(1), (STRONG, twin), "judge", judge=JUDGE, params={"max_tokens": 5})
    result = label(job, tmp_path, caller=caller)
    # With equal answers both orders are the same request: one call serves both.
    assert sum(n for (m, *_), n in caller.calls.items() if m == "judge") == 1
    assert result.summary["battles"] == 1


def test_retries_with_backoff_then_success(tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds):
        sleeps.append(seconds)

    caller = CountingCaller(failures={"weak": [503, 429]})
    result = label(_job(n=1), tmp_path, caller=caller, sleep=sleep, limits=RunLimits(backoff=0.5))
    assert result.complete
    assert sleeps == [0.5, 1.0]
    assert result.summary["calls"]["retries"] == 2
    attempts = {r["model"]: r["attempts"] for r in _read_jsonl(tmp_path / "responses.jsonl")}
    assert attempts == {"strong": 1, "weak": 3}


def test_a_429_waits_for_its_retry_after(tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds):
        sleeps.append(seconds)

    # Retry-After 7 s is longer than the first backoff (0.5 s): retried at the endpoint's pace.
    caller = CountingCaller(failures={"weak": [(429, 7.0), (429, 0.1)]})
    result = label(_job(n=1), tmp_path, caller=caller, sleep=sleep, limits=RunLimits(backoff=0.5))
    assert result.complete
    assert sleeps == [7.0, 1.0]


def test_a_429_asking_for_hours_fails_the_call_at_once(tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds):
        sleeps.append(seconds)

    caller = CountingCaller(failures={"weak": [(429, 3600.0)]})
    result = label(_job(n=1), tmp_path, caller=caller, sleep=sleep)
    assert not result.complete
    assert sleeps == [] and result.summary["calls"]["failed"] == 1
    assert label(_job(n=1), tmp_path, caller=CountingCaller(), sleep=sleep).complete  # a rerun later


class _UsageTransport:
    """A transport answering every chat completion with ``usage`` as given."""

    def __init__(self, usage, content="#### 1"):
        self.usage = usage
        self.content = content

    async def post(self, path, body):
        from lmroute.upstream.http import Reply

        reply = {
            "choices": [{"message": {"role": "assistant", "content": self.content}}],
            "usage": self.usage,
        }
        return Reply(200, {"content-type": "application/json"}, json.dumps(reply).encode())

    async def close(self):
        pass


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ([1, 2], (0, 0)),
        ({"prompt_tokens": "n/a", "completion_tokens": 4}, (0, 4)),
        ({"prompt_tokens": -3, "completion_tokens": None}, (0, 0)),
        ({"prompt_tokens": 5.0, "completion_tokens": True}, (5, 0)),
        (None, (0, 0)),
    ],
)
def test_a_reply_with_unreadable_usage_keeps_its_answer(usage, tokens):
    caller = UpstreamCaller(client_factory=lambda config: _UsageTransport(usage))
    result = asyncio.run(caller(STRONG, [{"role": "user", "content": "Q"}], {}))
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("#### 1", *tokens)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ([{"type": "thinking", "thinking": "2 and 2..."}, {"type": "text", "text": "#### 4"}], "#### 4"),
        ([{"type": "text", "text": "#### "}, {"type": "text", "text": "4"}], "#### 4"),
        (None, ""),
    ],
)
def test_an_answer_in_content_parts_is_their_text(content, text):
    # It was stored, graded and shown to the judge as its Python repr, the thinking included.
    caller = UpstreamCaller(client_factory=lambda config: _UsageTransport(None, content))
    assert asyncio.run(caller(STRONG, [{"role": "user", "content": "Q"}], {})).text == text


def test_client_errors_are_not_retried_and_the_item_stays_open(tmp_path):
    caller = CountingCaller(failures={"weak": [401]})
    result = label(_job(n=1), tmp_path, caller=caller, sleep=_no_sleep)
    assert not result.complete
    assert result.summary["calls"]["failed"] == 1 and result.summary["calls"]["retries"] == 0
    assert result.summary["calls"]["errors"] == ["fake failure"]
    assert _read_jsonl(tmp_path / "battles.jsonl") == []
    # The strong model's answer was paid for and is kept; the rerun asks only the weak model.
    again = CountingCaller()
    assert label(_job(n=1), tmp_path, caller=again).complete
    assert [key[0] for key in again.calls] == ["weak"]


def test_too_many_failures_stop_the_run(tmp_path):
    caller = CountingCaller(failures={"weak": [500] * 100})
    limits = RunLimits(retries=0, max_failures=3, concurrency=1)
    result = label(_job(), tmp_path, caller=caller, sleep=_no_sleep, limits=limits)
    assert result.summary["stopped"].startswith("3 calls failed")
    assert result.summary["calls"]["failed"] == 3
    assert sum(n for (m, *_), n in caller.calls.items() if m == "weak") == 3


def test_concurrency_limit(tmp_path):
    caller = CountingCaller(delay=0.005)
    label(_job(), tmp_path, caller=caller, limits=RunLimits(concurrency=3))
    assert caller.max_active == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"max_failures": 0}, "max_failures >= 1"),
        ({"rate": -1.0}, "rate limit must be a positive number"),
        ({"rate": float("nan")}, "rate limit must be a positive number"),  # was no limit at all
        ({"budget_tokens": 0}, "token budget must be at least 1 token, got 0"),  # every call refused
        ({"budget_tokens": -5}, "token budget must be at least 1 token, got -5"),
    ],
)
def test_run_limits_are_checked_when_made(options, message):
    with pytest.raises(ConfigError, match=message):
        RunLimits(**options)


def test_a_zero_rate_means_no_rate_limit(tmp_path):
    assert label(_job(n=1), tmp_path, caller=CountingCaller(), limits=RunLimits(rate=0)).complete


def test_rate_limiter_spaces_calls():
    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds):
        now[0] += seconds

    async def go():
        limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
        for _ in range(5):
            await limiter.acquire()
            starts.append(now[0])

    asyncio.run(go())
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ConfigError):
        RateLimiter(0, clock=time.monotonic, sleep=asyncio.sleep)


def test_changed_parameters_make_new_calls(tmp_path):
    label(_job(n=2), tmp_path, caller=CountingCaller())
    caller = CountingCaller()
    label(_job(n=2, params={"temperature": 0.7, "max_tokens": 10}), tmp_path, caller=caller)
    assert sum(caller.calls.values()) == 4
    assert len(_read_jsonl(tmp_path / "responses.jsonl")) == 8


def test_dry_run_counts_calls_and_tokens(tmp_path):
    plan = plan_labeling(_job("judge"), tmp_path)
    assert (plan.response_calls, plan.judge_calls, plan.response_stored) == (24, 24, 0)
    assert plan.completion_tokens == 48 * 10
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    label(_job("judge", n=5), tmp_path, caller=CountingCaller())
    plan = plan_labeling(_job("judge"), tmp_path)
    assert (plan.response_calls, plan.response_stored, plan.judge_calls, plan.judge_stored) == (
        14,
        10,
        14,
        10,
    )


@pytest.mark.parametrize("bound", [-1, "lots"])
def test_an_upstream_bound_that_is_no_positive_number_counts_as_unbounded(tmp_path, bound):
    """An upstream's own params go out as they are (llama.cpp reads max_tokens -1 as no bound): the
    dry run counted -1 completion tokens for such a call and the budget let it start as if it could
    produce nothing; a bound that is not a number was a ValueError traceback."""
    free = LabelModel(name="free", base_url="http://127.0.0.1:9/v1", params={"max_tokens": bound})
    job = LabelJob(_items(2), (STRONG, free), "golden", params={"max_tokens": 10})
    plan = plan_labeling(job, tmp_path)
    assert plan.unbounded
    assert plan.completion_tokens == 2 * 10 + 2 * 1024
    caller = CountingCaller()
    budget = 2 * 30  # room for the strong model's calls, none for an unbounded one
    result = label(job, tmp_path, caller=caller, limits=RunLimits(concurrency=1, budget_tokens=budget))
    assert result.summary["stopped"].startswith("budget of 60 tokens")
    assert all(model == "strong" for model, *_ in caller.calls)


def test_a_run_whose_answers_hold_line_separators_resumes_from_its_store(tmp_path):
    """An answer with U+2028 (and the other characters ``str.splitlines`` breaks at) is stored
    on one line and read back whole: the rerun reuses every call (issue 13: the store was
    refused as "not a call record")."""

    class Separating(CountingCaller):
        async def __call__(self, model, messages, params):
            result = await super().__call__(model, messages, params)
            return ChatResult(f"{TEXT}\n{result.text}", result.prompt_tokens, result.completion_tokens)

    first = label(_job(n=3), tmp_path, caller=Separating())
    assert first.complete and TEXT in _read_jsonl(tmp_path / "responses.jsonl")[0]["text"]
    again = Separating()
    rerun = label(_job(n=3), tmp_path, caller=again)
    assert rerun.complete and not again.calls
    assert rerun.summary["calls"]["reused"] == {"responses": 6}
    with CallStore.open(tmp_path / "responses.jsonl") as store:
        assert len(store) == 6 and all(record["text"].startswith(TEXT) for record in store)


def test_torn_last_line_is_cut_on_open(tmp_path):
    path = tmp_path / "responses.jsonl"
    whole = json.dumps({"model": "m", "prompt_id": "1", "request_hash": "h", "text": "ok"})
    path.write_text(whole + "\n" + '{"model": "m", "prompt_id": "2", "requ')
    with CallStore.open(path) as store:
        assert len(store) == 1 and store.get("m", "1", "h")["text"] == "ok"
        store.append({"model": "m", "prompt_id": "2", "request_hash": "h", "text": "new"})
    assert [json.loads(line)["prompt_id"] for line in path.read_text().splitlines()] == ["1", "2"]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"model": "m", "prompt_id": ', r"responses\.jsonl:2: not valid JSON .*; move the file away"),
        ('{"model": "m"}', r"responses\.jsonl:2 is not a call record; move the file away"),
        ('["m", "1", "h"]', r"responses\.jsonl:2 is not a call record; move the file away"),
        # without its answer, or with one that is no text: the rerun failed with a KeyError
        ('{"model": "m", "prompt_id": "2", "request_hash": "h"}', r"responses\.jsonl:2 is not a call record"),
        (
            '{"model": "m", "prompt_id": "2", "request_hash": "h", "text": null}',
            r"jsonl:2 is not a call record",
        ),
    ],
)
def test_a_damaged_store_is_refused_with_its_line(tmp_path, line, message):
    path = tmp_path / "responses.jsonl"
    whole = json.dumps({"model": "m", "prompt_id": "1", "request_hash": "h", "text": "ok"})
    path.write_text(f"{whole}\n{line}\n")
    with pytest.raises(DataError, match=message):
        CallStore.open(path)


@pytest.mark.parametrize("usage", ["n/a", [3, 4], {"prompt_tokens": "n/a", "total_tokens": "7 tokens"}])
def test_a_stored_call_with_unreadable_usage_counts_no_tokens(tmp_path, usage):
    # A store merged or edited by hand: int("n/a") and [3, 4].get failed the rerun with a traceback.
    label(_job(n=1), tmp_path, caller=CountingCaller())
    path = tmp_path / "responses.jsonl"
    records = _read_jsonl(path)
    records[0]["usage"] = usage
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = label(_job(n=1), tmp_path, caller=CountingCaller(), limits=RunLimits(budget_tokens=100))
    assert again.complete and again.summary["tokens"]["all_runs"]["total"] == 10


def test_a_full_disk_is_one_line_and_leaves_the_store_readable(tmp_path, monkeypatch):
    """A store line that could not be written whole was an OSError traceback, and the part of it
    left behind joined the next call's line: the rerun refused the whole store as damaged."""
    from lmroute.labeling import store as store_module

    whole = store_module.append_line
    appended = []

    def disk_full_once(fd, record):
        appended.append(record)
        if len(appended) == 3:
            os.write(fd, json.dumps(record).encode()[:40])
            raise OSError(errno.ENOSPC, "No space left on device")
        whole(fd, record)

    monkeypatch.setattr(store_module, "append_line", disk_full_once)
    with pytest.raises(WriteError, match=r"cannot write .*responses\.jsonl: No space left on device$"):
        label(_job(n=4), tmp_path, caller=CountingCaller(), limits=RunLimits(concurrency=1))
    monkeypatch.setattr(store_module, "append_line", whole)
    stored = _read_jsonl(tmp_path / "responses.jsonl")
    assert len(stored) == len(appended) - 1  # every line whole: all but the one that failed
    again = CountingCaller()
    assert label(_job(n=4), tmp_path, caller=again).complete
    assert sum(again.calls.values()) == 8 - len(stored)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    with CallStore.open(tmp_path / "responses.jsonl"), pytest.raises(ConfigError, match="in use"):
        CallStore.open(tmp_path / "responses.jsonl")


def test_a_store_that_cannot_be_opened_is_one_line_naming_it(tmp_path, capsys):
    prompts = tmp_path / "q.jsonl"
    prompts.write_text(json.dumps({"question": "Q1", "answer": "#### 1"}) + "\n")
    (tmp_path / "run" / "responses.jsonl").mkdir(parents=True)  # a folder where the store goes
    argv = ["label", "--prompts", str(prompts), "--mode", "golden", "--out", str(tmp_path / "run"), "--quiet"]
    models = [
        "--model",
        "name=a,base_url=http://127.0.0.1:9/v1",
        "--model",
        "name=b,base_url=http://127.0.0.1:9/v1",
    ]
    assert main([*argv, *models]) == 1
    err = capsys.readouterr().err
    assert err == f"lmroute: error: cannot write {tmp_path / 'run' / 'responses.jsonl'}: it is a folder\n"


def test_read_items(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text('{"question": "2+2?", "answer": "#### 4"}\n{"question": "3+3?", "answer": "#### 6"}\n')
    assert read_items(path) == [LabelItem("0", "2+2?", "#### 4"), LabelItem("1", "3+3?", "#### 6")]
    assert read_items(path, limit=1) == [LabelItem("0", "2+2?", "#### 4")]
    for limit in (0, -1):  # not "no prompts to label", as if the file were empty
        with pytest.raises(ConfigError, match=f"the limit must be at least 1 prompt, got {limit}"):
            read_items(path, limit=limit)
    text = tmp_path / "p.txt"
    text.write_text("hello\n\nworld\n")
    assert [i.prompt for i in read_items(text)] == ["hello", "world"]
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    with pytest.raises(DataError, match="unique") as given:
        read_items(dup)
    assert "position" not in str(given.value)
    mixed = tmp_path / "mixed.jsonl"  # the second prompt's position, 1, is the first one's id
    mixed.write_text('{"id": 1, "prompt": "a"}\n{"prompt": "b"}\n')
    with pytest.raises(DataError, match=r"repeated: 1 \(a prompt without an id has its position"):
        read_items(mixed)
    nulls = tmp_path / "nulls.jsonl"  # null ids were all "None", so two of them clashed
    nulls.write_text('{"id": null, "prompt": "a"}\n{"id": null, "prompt": "b"}\n')
    assert read_items(nulls) == [LabelItem("0", "a"), LabelItem("1", "b")]


def test_a_row_without_a_prompt_names_both_default_fields(tmp_path):
    """A CSV with a prompt column and an empty cell in it was told it lacked a 'question' field."""
    path = tmp_path / "q.csv"
    path.write_text("id,prompt,reference\n1,hello,#### 1\n2,,#### 2\n")
    with pytest.raises(
        DataError, match=r"q\.csv:3: expected a non-empty string field 'prompt' \(or 'question'\)$"
    ):
        read_items(path)
    with pytest.raises(DataError, match=r"q\.csv:2: expected a non-empty string field 'text'$"):
        read_items(path, prompt_field="text")


@pytest.mark.parametrize("option", ["prompt_field", "reference_field"])
def test_a_field_name_for_a_text_file_is_refused(tmp_path, option):
    """A text file has no fields: the name was ignored and each line labelled as a prompt (a TSV's
    header and rows, cells and tabs and all)."""
    path = tmp_path / "q.tsv"
    path.write_text("id\tprompt\n1\tWhat is 2+2?\n")
    with pytest.raises(ConfigError, match=r"q\.tsv is read as text, one prompt a line: a \w+ field names"):
        read_items(path, **{option: "prompt"})


def test_read_items_keeps_line_separators_inside_a_prompt(tmp_path):
    """A prompt or reference with U+2028 (and the other characters ``str.splitlines`` breaks at)
    is one item, from JSONL and from a text file (issue 13: JSONL items were refused)."""
    path = tmp_path / "items.jsonl"
    records = [{"id": "a", "prompt": TEXT, "reference": f"#### 1{TEXT}"}, {"id": "b", "prompt": "two"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert read_items(path) == [LabelItem("a", TEXT, f"#### 1{TEXT}"), LabelItem("b", "two")]
    text = tmp_path / "items.txt"
    text.write_text(f"{TEXT}\ntwo\n", encoding="utf-8")
    assert [item.prompt for item in read_items(text)] == [TEXT, "two"]


def test_job_validation():
    with pytest.raises(ConfigError, match="at least two"):
        LabelJob(_items(1), (STRONG,), "golden")
    with pytest.raises(ConfigError, match="judge model"):
        LabelJob(_items(1), (STRONG, WEAK), "judge")
    with pytest.raises(DataError, match="reference"):
        LabelJob((LabelItem("0", "hi"),), (STRONG, WEAK), "golden")
    with pytest.raises(ConfigError, match="unique"):
        LabelJob(_items(1), (STRONG, STRONG), "golden")


@pytest.mark.parametrize(
    ("grader", "reference"),
    [
        ("choice", "Answer: B"),  # read as the letter "ANSWER: B"
        ("choice", "(B) Paris"),
        ("gsm8k", "#### four"),
        ("number", "four"),
        ("exact", "The"),  # an article: nothing is left to compare
        ("auto", "#### N/A"),
    ],
)
def test_a_reference_the_grader_cannot_read_is_refused_before_any_call(tmp_path, grader, reference):
    """Every response to it was graded wrong, and each of its pairs labelled "tie (bothbad)"
    whatever the models answered."""
    readable = {"choice": "B", "gsm8k": "#### 4", "number": "4", "exact": "Paris", "auto": "#### 4"}
    good = tuple(LabelItem(f"q{i}", f"Question #{i}", reference=readable[grader]) for i in range(2))
    odd = LabelItem("odd", "Question #2", reference=reference)
    with pytest.raises(
        DataError, match=rf"the {grader} grader reads no answer from 1 reference\(s\).*id odd"
    ):
        LabelJob((*good, odd), (STRONG, WEAK), "golden", grader=grader)
    assert LabelJob(good, (STRONG, WEAK), "golden", grader=grader)


@pytest.mark.parametrize("bound", [0, -5, 2.5, True, "many"])
def test_a_completion_bound_that_is_not_a_positive_integer_is_refused(bound, tmp_path, capsys):
    """It went to every call as it was (each one refused by the endpoint, the run stopped by its
    failures), and the dry run and the budget counted it as a negative or a default 1,024 tokens."""
    with pytest.raises(ConfigError, match=r"max_tokens must be a whole number of tokens, at least 1"):
        _job(params={"max_tokens": bound})
    with pytest.raises(ConfigError, match=r"judge.*max_completion_tokens must be"):
        _job("judge", judge_params={"max_completion_tokens": bound})
    if isinstance(bound, int) and not isinstance(bound, bool):
        prompts = tmp_path / "q.txt"
        prompts.write_text("What is 2+2?\n")
        models = [
            "--model",
            "name=a,base_url=http://127.0.0.1:9/v1",
            "--model",
            "name=b,base_url=http://127.0.0.1:9/v1",
        ]
        argv = [
            "label",
            "--prompts",
            str(prompts),
            *models,
            "--mode",
            "judge",
            "--out",
            str(tmp_path / "run"),
        ]
        judge = ["--judge", "name=j,base_url=http://127.0.0.1:9/v1"]
        for flag in ("--max-tokens", "--judge-max-tokens"):
            assert main([*argv, *judge, flag, str(bound), "--dry-run"]) == 1
            err = capsys.readouterr().err
            assert err.startswith("lmroute: error: ") and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists()


def test_a_missing_api_key_is_found_before_any_call_or_run_folder(tmp_path, capsys, monkeypatch):
    """It was found at the first call to that model, after the other models' calls had been paid
    for and the run folder made (as lmroute label --ray already checked first)."""
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            calls.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "4"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    prompts = tmp_path / "q.txt"
    prompts.write_text("What is 2+2?\n")
    monkeypatch.delenv("LMROUTE_TEST_MISSING_KEY", raising=False)
    argv = ["label", "--prompts", str(prompts), "--mode", "judge", "--out", str(tmp_path / "run")]
    argv += ["--model", f"name=a,base_url={url}", "--model", f"name=b,base_url={url}"]
    argv += ["--judge", f"name=j,base_url={url},api_key_env=LMROUTE_TEST_MISSING_KEY", "--quiet"]
    try:
        code = main(argv)
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("lmroute: error: ") and err.count("\n") == 1, err
    assert "LMROUTE_TEST_MISSING_KEY" in err
    assert calls == [] and not (tmp_path / "run").exists()


def test_api_keys_come_only_from_the_environment(monkeypatch):
    with pytest.raises(ConfigError, match="api_key_env"):
        parse_model_spec("name=x,base_url=http://h/v1,api_key=sk-123")
    with pytest.raises(ConfigError, match="api_key_env"):
        parse_model_spec("x", {"x": {"base_url": "http://h/v1", "api_key": "sk-123"}})
    model = parse_model_spec("name=x,base_url=http://h/v1/,model=gpt-4o,api_key_env=LMROUTE_TEST_KEY")
    assert (model.upstream.base_url, model.upstream.model, model.upstream.max_retries) == (
        "http://h/v1",
        "gpt-4o",
        0,
    )
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        parse_model_spec("name=x,base_url=http://h/v1,api_key_env=sk-abc-123")
    monkeypatch.delenv("LMROUTE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"variable LMROUTE_TEST_KEY .* is not set"):
        model.api_key()
    monkeypatch.setenv("LMROUTE_TEST_KEY", "sk-test")
    assert model.api_key() == "sk-test"
    with pytest.raises(ConfigError, match="unknown model"):
        parse_model_spec("nope", {})
    with pytest.raises(ConfigError, match="base_url"):
        parse_model_spec("name=x,base_url=ftp://h")


def test_cli_dry_run(tmp_path, capsys):
    prompts = tmp_path / "q.jsonl"
    prompts.write_text(
        "".join(json.dumps({"question": f"Q{i}", "answer": f"#### {i}"}) + "\n" for i in range(5))
    )
    code = main(
        [
            "label",
            "--prompts",
            str(prompts),
            "--mode",
            "golden",
            "--out",
            str(tmp_path / "run"),
            "--model",
            "name=a,base_url=http://127.0.0.1:9/v1",
            "--model",
            "name=b,base_url=http://127.0.0.1:9/v1",
            "--max-tokens",
            "100",
            "--dry-run",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "model calls: 10 to make, 0 already stored" in out
    assert "<= 1,000 completion" in out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("mode", "option", "kind"),
    [
        ("golden", ["--judge", "name=j,base_url=http://127.0.0.1:9/v1"], "judge"),
        ("golden", ["--judge-mode", "score"], "judge"),
        ("golden", ["--judge-template", "my_pairwise.yaml"], "judge"),
        ("golden", ["--judge-max-tokens", "64"], "judge"),
        ("judge", ["--grader", "number"], "golden"),
        ("judge", ["--reference-field", "solution"], "golden"),
    ],
)
def test_an_option_of_the_other_mode_is_refused(tmp_path, capsys, mode, option, kind):
    """They were ignored without a word: a golden run given --judge graded by the references (and
    still wanted the judge's API key); a judge run given --grader judged."""
    prompts = tmp_path / "q.jsonl"
    prompts.write_text(json.dumps({"question": "Q1", "answer": "#### 1"}) + "\n")
    argv = ["label", "--prompts", str(prompts), "--mode", mode, "--out", str(tmp_path / "run")]
    argv += [
        "--model",
        "name=a,base_url=http://127.0.0.1:9/v1",
        "--model",
        "name=b,base_url=http://127.0.0.1:9/v1",
    ]
    if mode == "judge":
        argv += ["--judge", "name=j,base_url=http://127.0.0.1:9/v1"]
    assert main([*argv, *option, "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err == f"lmroute: error: {option[0]} is for --mode {kind}; this run is --mode {mode}\n"
    assert main([*argv, "--dry-run"]) == 0  # the same run without it


# -- a real kill: a subprocess labelling against a loopback OpenAI-compatible fake ------------------


class _FakeOpenAI(BaseHTTPRequestHandler):
    counts: Counter
    lock: threading.Lock
    delay: float

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][-1]["content"]
        with self.lock:
            self.counts[(body["model"], content)] += 1
        time.sleep(self.delay)
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": _answer(body["model"], content)},
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        data = json.dumps(reply).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-call
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_openai():
    handler = type("Handler", (_FakeOpenAI,), {"counts": Counter(), "lock": threading.Lock(), "delay": 0.05})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler.counts
    server.shutdown()
    server.server_close()


@pytest.mark.network_loopback
def test_sigkilled_run_resumes_without_repeating_finished_calls(tmp_path, fake_openai):
    url, counts = fake_openai
    prompts = tmp_path / "q.jsonl"
    prompts.write_text(
        "".join(json.dumps({"question": f"Question #{i}", "answer": f"#### {i}"}) + "\n" for i in range(20))
    )
    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "lmroute.cli",
        "label",
        "--prompts",
        str(prompts),
        "--mode",
        "golden",
        "--out",
        str(out),
        "--model",
        f"name=strong,base_url={url}",
        "--model",
        f"name=weak,base_url={url}",
        "--concurrency",
        "2",
        "--max-tokens",
        "10",
        "--quiet",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sum(counts.values()) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    proc.stderr.close()
    finished = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert 10 <= len(finished) < 40
    assert not (out / "battles.jsonl").exists()
    first_counts = Counter(counts)

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for record in finished:
        assert counts[(record["model"], record["prompt"])] == 1, record
    assert len(_read_jsonl(out / "responses.jsonl")) == 40
    assert sum(counts.values()) - sum(first_counts.values()) == 40 - len(finished)
    battles = _read_jsonl(out / "battles.jsonl")
    assert [b["winner"] for b in battles] == ["tie" if i % 2 == 0 else "model_a" for i in range(20)]
    assert "labelled 20/20 prompts" in done.stdout
