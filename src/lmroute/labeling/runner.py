"""Collect responses from two or more models and label them, resumably, within a budget.

A run works in an output folder::

    responses.jsonl    every finished model call (model, prompt id, text, latency, usage)
    judgements.jsonl   every finished judge call (raw output and parsed verdict)
    battles.jsonl      the labels: prompt, model_a, model_b, winner (+ id, source, details)
    scores.jsonl       per-model scores, a custom benchmark (golden and score modes)
    summary.json       win rates, tie share, unparsable verdicts, calls and tokens

The first two are stores: a call found there is never made again, so an interrupted run rerun
with the same arguments continues where it stopped. The last three are rewritten at the end of
each run from what the stores hold.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lmroute._jsonl import write_jsonl
from lmroute.exceptions import ConfigError, DataError, UpstreamError
from lmroute.labeling.extract import GRADERS, grade
from lmroute.labeling.judge import (
    JUDGE_MODES,
    JudgeTemplate,
    combine_pairwise,
    load_template,
    parse_pairwise,
    parse_score,
    winner_from_scores,
)
from lmroute.labeling.store import CallStore, request_hash
from lmroute.labeling.upstream import ChatCaller, LabelModel

MODES = ("judge", "golden")
RESPONSES_FILE = "responses.jsonl"
JUDGEMENTS_FILE = "judgements.jsonl"
BATTLES_FILE = "battles.jsonl"
SCORES_FILE = "scores.jsonl"
SUMMARY_FILE = "summary.json"
#: What a call without max_tokens is assumed to produce, for dry runs and the budget.
UNBOUNDED_COMPLETION_ESTIMATE = 1024
_RETRYABLE_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class LabelItem:
    """One prompt to collect responses for, with its reference answer in golden mode."""

    id: str
    prompt: str
    reference: str | None = None


def read_items(
    path: str | Path,
    *,
    prompt_field: str | None = None,
    reference_field: str | None = None,
    limit: int | None = None,
) -> list[LabelItem]:
    """Prompts from a text file (one a line) or JSONL.

    JSONL fields: the prompt is ``prompt_field`` (default ``prompt``, else ``question`` as in
    GSM8K), the reference ``reference_field`` (default ``reference``, else ``answer``), the id
    ``id`` (default: the item's position). ``limit`` keeps the first items.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as UTF-8 text: {exc}") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"{path} is empty: no prompts")
    as_json = path.suffix.lower() in (".jsonl", ".json") or lines[0][1].lstrip().startswith("{")
    items: list[LabelItem] = []
    for n, line in lines:
        if limit is not None and len(items) >= limit:
            break
        if not as_json:
            items.append(LabelItem(str(len(items)), line))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: expected a JSON object")
        p_field = prompt_field or ("prompt" if "prompt" in record else "question")
        prompt = record.get(p_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{path}:{n}: expected a non-empty string field {p_field!r}")
        r_field = reference_field or ("reference" if "reference" in record else "answer")
        reference = record.get(r_field)
        items.append(
            LabelItem(
                str(record.get("id", len(items))), prompt, None if reference is None else str(reference)
            )
        )
    seen = Counter(item.id for item in items)
    duplicates = [i for i, count in seen.items() if count > 1]
    if duplicates:
        raise DataError(f"{path}: ids must be unique; repeated: {', '.join(duplicates[:5])}")
    return items


@dataclass(frozen=True)
class LabelJob:
    """What to label and how: items, models, mode (judge or golden) and request defaults."""

    items: tuple[LabelItem, ...]
    models: tuple[LabelModel, ...]
    mode: str
    judge: LabelModel | None = None
    judge_mode: str = "pairwise"
    #: The judge template; the packaged one of ``judge_mode`` when None.
    template: JudgeTemplate | None = None
    grader: str = "auto"
    #: How an item's prompt becomes the user message; ``{prompt}`` is replaced.
    prompt_template: str = "{prompt}"
    system_prompt: str | None = None
    #: Request parameters of every model call, under each model's own ``params``.
    params: Mapping[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 1024})
    judge_params: Mapping[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 1024})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; use judge or golden")
        if len(self.models) < 2:
            raise ConfigError("labelling compares models: give at least two")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"model names must be unique: {', '.join(names)}")
        if not self.items:
            raise DataError("no prompts to label")
        if "{prompt}" not in self.prompt_template:
            raise ConfigError("the prompt template must contain {prompt}")
        if self.mode == "judge":
            if self.judge is None:
                raise ConfigError("judge mode needs a judge model (--judge)")
            if self.judge_mode not in JUDGE_MODES:
                raise ConfigError(f"unknown judge mode {self.judge_mode!r}; use pairwise or score")
            if self.template is None:
                object.__setattr__(self, "template", load_template(self.judge_mode))
            elif self.template.mode != self.judge_mode:
                raise ConfigError(f"a {self.template.mode} template cannot drive {self.judge_mode} judging")
        else:
            if self.grader != "auto" and self.grader not in GRADERS:
                raise ConfigError(f"unknown grader {self.grader!r}; use auto or one of {', '.join(GRADERS)}")
            missing = [item.id for item in self.items if not item.reference]
            if missing:
                raise DataError(
                    f"golden mode needs a reference answer for every prompt; {len(missing)} have none "
                    f"(first: id {missing[0]}); name the field with --reference-field"
                )

    def messages(self, item: LabelItem) -> list[dict[str, str]]:
        """The chat messages every model gets for ``item``."""
        user = self.prompt_template.replace("{prompt}", item.prompt)
        messages = [{"role": "user", "content": user}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def model_params(self, model: LabelModel) -> dict[str, Any]:
        return {**self.params, **model.params}

    def judge_request_params(self) -> dict[str, Any]:
        assert self.judge is not None
        return {**self.judge_params, **self.judge.params}

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(itertools.combinations([m.name for m in self.models], 2))

    @property
    def source(self) -> str:
        if self.mode == "golden":
            return f"label:golden:{self.grader}"
        assert self.judge is not None
        return f"label:judge-{self.judge_mode}:{self.judge.name}"


# -- requests shared by the run and the dry run ---------------------------------------------------


def _request(model: LabelModel, messages: list[dict[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
    # The upstream's address is left out: the same model moved to another host is the same call.
    return {"model": model.upstream_model, "messages": messages, "params": dict(params)}


def _judge_calls(job: LabelJob, item: LabelItem, texts: Mapping[str, str]) -> list[tuple[str, list[dict]]]:
    """(what, messages) of each judge call for ``item`` given the models' response texts."""
    assert job.template is not None
    question = job.messages(item)[-1]["content"]
    if job.judge_mode == "score":
        return [(name, job.template.render(question=question, answer=texts[name])) for name in texts]
    calls = []
    for a, b in job.pairs:
        for first, second in ((a, b), (b, a)):
            messages = job.template.render(question=question, answer_a=texts[first], answer_b=texts[second])
            calls.append((f"{first}|{second}", messages))
    return calls


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """A rough prompt size: four characters a token plus a few per message."""
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages)


def _unbounded(params: Mapping[str, Any]) -> bool:
    return not (params.get("max_tokens") or params.get("max_completion_tokens"))


def _completion_bound(params: Mapping[str, Any]) -> int:
    bound = params.get("max_tokens") or params.get("max_completion_tokens")
    return int(bound) if bound else UNBOUNDED_COMPLETION_ESTIMATE


# -- dry run -------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run would call: counts of calls and estimated tokens, beyond what is stored."""

    response_calls: int = 0
    response_stored: int = 0
    judge_calls: int = 0
    judge_stored: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Whether some completion bound is a guess because a call has no max_tokens.
    unbounded: bool = False

    def format(self) -> str:
        lines = [
            f"model calls: {self.response_calls} to make, {self.response_stored} already stored",
            f"judge calls: {self.judge_calls} to make, {self.judge_stored} already stored",
            f"tokens (estimate, 4 characters a token): ~{self.prompt_tokens:,} prompt + "
            f"<= {self.completion_tokens:,} completion = ~{self.prompt_tokens + self.completion_tokens:,}",
        ]
        if self.unbounded:
            lines.append(
                f"some calls have no max_tokens: their completions were counted as "
                f"{UNBOUNDED_COMPLETION_ESTIMATE} tokens each"
            )
        return "\n".join(lines)


def plan_labeling(job: LabelJob, out: str | Path) -> Plan:
    """Count the calls and tokens a run of ``job`` into ``out`` would spend, calling nothing."""
    out = Path(out)
    responses = _read_only_store(out / RESPONSES_FILE)
    judgements = _read_only_store(out / JUDGEMENTS_FILE)
    plan = Plan()
    for item in job.items:
        messages = job.messages(item)
        texts: dict[str, str] = {}
        for model in job.models:
            params = job.model_params(model)
            stored = responses.get(model.name, item.id, request_hash(_request(model, messages, params)))
            if stored is not None:
                plan.response_stored += 1
                texts[model.name] = stored["text"]
            else:
                plan.response_calls += 1
                plan.prompt_tokens += estimate_tokens(messages)
                plan.completion_tokens += _completion_bound(params)
                plan.unbounded |= _unbounded(params)
                # Stand-in text of the longest possible answer, to size the judge prompts.
                texts[model.name] = "x" * (4 * _completion_bound(params))
        if job.mode != "judge":
            continue
        assert job.judge is not None
        judge_params = job.judge_request_params()
        for _, judge_messages in _judge_calls(job, item, texts):
            req_hash = request_hash(_request(job.judge, judge_messages, judge_params))
            if judgements.get(job.judge.name, item.id, req_hash) is not None:
                plan.judge_stored += 1
            else:
                plan.judge_calls += 1
                plan.prompt_tokens += estimate_tokens(judge_messages)
                plan.completion_tokens += _completion_bound(judge_params)
                plan.unbounded |= _unbounded(judge_params)
    return plan


def _read_only_store(path: Path) -> CallStore:
    store = CallStore(path)
    if path.exists():
        with CallStore.open(path) as opened:
            return opened
    return store


# -- the run ---------------------------------------------------------------------------------------------


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart."""

    def __init__(self, rate: float, *, clock: Callable[[], float], sleep: Callable[[float], Awaitable[Any]]):
        if rate <= 0:
            raise ConfigError("the rate limit must be a positive number of calls per second")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            wait = self._next - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._next = max(self._clock(), self._next) + self.interval


class _Stop(Exception):
    """No more calls: the budget or the failure limit was reached."""


@dataclass
class _Tally:
    made: Counter = field(default_factory=Counter)
    reused: Counter = field(default_factory=Counter)
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class LabelResult:
    """What a run produced: the summary written to ``summary.json`` and the files it wrote."""

    summary: dict[str, Any]
    files: list[Path]

    @property
    def complete(self) -> bool:
        return self.summary["items"]["incomplete"] == 0


class _Run:
    def __init__(
        self,
        job,
        out,
        *,
        caller,
        concurrency,
        rate,
        retries,
        backoff,
        budget_tokens,
        max_failures,
        clock,
        sleep,
        progress,
    ):
        self.job = job
        self.out = Path(out)
        self.caller = caller
        self.semaphore = asyncio.Semaphore(concurrency)
        self.limiter = RateLimiter(rate, clock=clock, sleep=sleep) if rate else None
        self.retries = retries
        self.backoff = backoff
        self.budget = budget_tokens
        self.max_failures = max_failures
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        self.tally = _Tally()
        self.stopped: str | None = None
        self.reserved = 0
        self.spent = 0
        self.inflight: dict[tuple[str, str, str], asyncio.Future] = {}

    def spent_before(self) -> int:
        return sum(_usage_total(r) for store in (self.responses, self.judgements) for r in store)

    async def call(
        self,
        store: CallStore,
        model: LabelModel,
        item: LabelItem,
        messages: list[dict],
        params: Mapping[str, Any],
        *,
        kind: str,
        extra: Mapping[str, Any],
        parse: Callable[[str], Any] | None = None,
    ) -> dict:
        """The record of this call: from the store if finished before, else made and stored."""
        req_hash = request_hash(_request(model, messages, params))
        key = (model.name, item.id, req_hash)
        stored = store.get(*key)
        if stored is not None:
            self.tally.reused[kind] += 1
            return stored
        if key in self.inflight:  # the very same request is under way for another pair
            return await asyncio.shield(self.inflight[key])
        future = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            record = await self._make(store, kind, model, item, messages, params, extra, req_hash, parse)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited future logs nothing
            raise
        finally:
            del self.inflight[key]
        future.set_result(record)
        return record

    async def _make(self, store, kind, model, item, messages, params, extra, req_hash, parse) -> dict:
        async with self.semaphore:
            if self.stopped:
                raise _Stop(self.stopped)
            estimate = estimate_tokens(messages) + _completion_bound(params)
            if self.budget is not None and self.spent + self.reserved + estimate > self.budget:
                self.stopped = f"budget of {self.budget:,} tokens reached"
                raise _Stop(self.stopped)
            self.reserved += estimate
            try:
                result, latency, attempts = await self._with_retries(model, messages, params)
            finally:
                self.reserved -= estimate
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }
        record = {
            "model": model.name,
            "prompt_id": item.id,
            "request_hash": req_hash,
            **extra,
            "text": result.text,
            **({} if parse is None else {"verdict": parse(result.text)}),
            "latency_s": round(latency, 4),
            "usage": usage,
            "attempts": attempts,
            "upstream_model": model.upstream_model,
            "params": dict(params),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        store.append(record)
        self.tally.made[kind] += 1
        self.tally.prompt_tokens += result.prompt_tokens
        self.tally.completion_tokens += result.completion_tokens
        self.spent += usage["total_tokens"]
        return record

    async def _with_retries(self, model, messages, params):
        for attempt in range(self.retries + 1):
            if self.limiter is not None:
                await self.limiter.acquire()
            started = self.clock()
            try:
                result = await self.caller(model, messages, params)
            except UpstreamError as exc:
                if _retryable(exc) and attempt < self.retries and not self.stopped:
                    self.tally.retries += 1
                    await self.sleep(min(30.0, self.backoff * 2**attempt))
                    continue
                self.tally.failed += 1
                if len(self.tally.errors) < 5:
                    self.tally.errors.append(str(exc))
                if self.tally.failed >= self.max_failures:
                    self.stopped = f"{self.tally.failed} calls failed (last: {exc})"
                raise
            return result, self.clock() - started, attempt + 1
        raise AssertionError("unreachable: the loop returns or raises")

    async def responses_for(self, item: LabelItem) -> dict[str, str] | None:
        messages = self.job.messages(item)
        calls = [
            self.call(
                self.responses,
                model,
                item,
                messages,
                self.job.model_params(model),
                kind="responses",
                extra={"prompt": item.prompt},
            )
            for model in self.job.models
        ]
        records = await _gather_or_none(calls)
        if records is None:
            return None
        return {model.name: record["text"] for model, record in zip(self.job.models, records, strict=True)}

    async def label(self, item: LabelItem) -> dict[str, Any] | None:
        texts = await self.responses_for(item)
        if texts is None:
            return None
        if self.job.mode == "golden":
            return {
                "graded": {
                    name: grade(text, item.reference or "", grader=self.job.grader)
                    for name, text in texts.items()
                }
            }
        judge = self.job.judge
        assert judge is not None
        calls = _judge_calls(self.job, item, texts)
        parse = parse_score if self.job.judge_mode == "score" else parse_pairwise
        params = self.job.judge_request_params()
        records = await _gather_or_none(
            self.call(
                self.judgements,
                judge,
                item,
                messages,
                params,
                kind="judge",
                extra={"judge_mode": self.job.judge_mode, "judged": what},
                parse=parse,
            )
            for what, messages in calls
        )
        if records is None:
            return None
        return {
            "verdicts": {
                what: {"raw": record["text"], "verdict": parse(record["text"])}
                for (what, _), record in zip(calls, records, strict=True)
            }
        }

    async def run(self, items: Sequence[LabelItem]) -> list[dict[str, Any] | None]:
        with (
            CallStore.open(self.out / RESPONSES_FILE) as self.responses,
            CallStore.open(self.out / JUDGEMENTS_FILE) as self.judgements,
        ):
            self.spent = self.spent_before()
            bar = None
            if self.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(items), desc="labelling", unit="prompt", file=sys.stderr)

            async def one(item):
                outcome = await self.label(item)
                if bar is not None:
                    bar.update(1)
                return outcome

            try:
                return await asyncio.gather(*(one(item) for item in items))
            finally:
                if bar is not None:
                    bar.close()


def _retryable(exc: UpstreamError) -> bool:
    status = exc.status_code
    return status is None or status in _RETRYABLE_STATUS or status >= 500


async def _gather_or_none(calls) -> list[dict] | None:
    """All results, or None when a call failed or the run stopped (finished calls stay stored)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, (UpstreamError, _Stop)):
            raise result
    if any(isinstance(r, BaseException) for r in results):
        return None
    return list(results)


def _usage_total(record: Mapping[str, Any]) -> int:
    usage = record.get("usage") or {}
    return int(usage.get("total_tokens") or 0)


async def alabel(
    job: LabelJob,
    out: str | Path,
    *,
    caller: ChatCaller | None = None,
    concurrency: int = 8,
    rate: float | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    budget_tokens: int | None = None,
    max_failures: int = 10,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    progress: bool = False,
) -> LabelResult:
    """Run ``job`` into folder ``out`` and write battles, scores and a summary there.

    Up to ``concurrency`` calls run at once, at most ``rate`` per second; a failed call (connection
    error, timeout, HTTP 408/409/429/5xx) is retried ``retries`` times with exponential backoff
    from ``backoff`` seconds. No call starts that could take the tokens spent in ``out`` (earlier
    runs included) over ``budget_tokens``; after ``max_failures`` failed calls no call starts
    either. Such a run stops cleanly: finished calls are stored and the labels of the finished
    items are written; rerunning continues it.
    """
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    if retries < 0 or max_failures < 1:
        raise ConfigError("retries must be >= 0 and max_failures >= 1")
    own_caller = caller is None
    if caller is None:
        from lmroute.labeling.upstream import UpstreamCaller

        caller = UpstreamCaller()
    run = _Run(
        job,
        out,
        caller=caller,
        concurrency=concurrency,
        rate=rate,
        retries=retries,
        backoff=backoff,
        budget_tokens=budget_tokens,
        max_failures=max_failures,
        clock=clock,
        sleep=sleep,
        progress=progress,
    )
    try:
        outcomes = await run.run(job.items)
    finally:
        if own_caller:
            await caller.aclose()  # type: ignore[attr-defined]
    return _write_outputs(job, Path(out), outcomes, run)


def label(job: LabelJob, out: str | Path, **options: Any) -> LabelResult:
    """Synchronous :func:`alabel`."""
    return asyncio.run(alabel(job, out, **options))


# -- outputs ---------------------------------------------------------------------------------------------


@dataclass
class _Labels:
    battles: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    unparsable: int = 0
    excluded_pairs: int = 0


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


def _golden_labels(job: LabelJob, item: LabelItem, graded: Mapping[str, tuple], labels: _Labels) -> None:
    correct = {name: float(ok) for name, (ok, _) in graded.items()}
    for a, b in job.pairs:
        both_wrong = not (correct[a] or correct[b])
        winner = "tie (bothbad)" if both_wrong else winner_from_scores(correct, a, b)
        labels.battles.append(
            _battle(job, item, a, b, winner, correct={a: bool(correct[a]), b: bool(correct[b])})
        )
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


def _score_labels(job: LabelJob, item: LabelItem, verdicts: Mapping[str, dict], labels: _Labels) -> None:
    assert job.judge is not None
    rated = {name: v["verdict"] for name, v in verdicts.items() if v["verdict"] is not None}
    labels.unparsable += len(verdicts) - len(rated)
    for a, b in job.pairs:
        if a not in rated or b not in rated:
            labels.excluded_pairs += 1
            continue
        judge = {"model": job.judge.name, "scores": {a: rated[a], b: rated[b]}}
        labels.battles.append(_battle(job, item, a, b, winner_from_scores(rated, a, b), judge=judge))
    if len(rated) == len(job.models):  # a benchmark row needs every model's score
        labels.scores.append({"id": item.id, "prompt": item.prompt, "scores": rated})


def _pairwise_labels(job: LabelJob, item: LabelItem, verdicts: Mapping[str, dict], labels: _Labels) -> None:
    assert job.judge is not None
    labels.unparsable += sum(v["verdict"] is None for v in verdicts.values())
    for a, b in job.pairs:
        first, second = verdicts[f"{a}|{b}"]["verdict"], verdicts[f"{b}|{a}"]["verdict"]
        if first is None or second is None:  # one order alone would not cancel position bias
            labels.excluded_pairs += 1
            continue
        winner, consistent = combine_pairwise(first, second)
        judge = {"model": job.judge.name, "verdicts": [first, second], "consistent": consistent}
        labels.battles.append(_battle(job, item, a, b, winner, judge=judge))


def _write_outputs(job: LabelJob, out: Path, outcomes: Sequence[dict | None], run: _Run) -> LabelResult:
    labels = _Labels()
    for item, outcome in zip(job.items, outcomes, strict=True):
        if outcome is None:
            continue
        if job.mode == "golden":
            _golden_labels(job, item, outcome["graded"], labels)
        elif job.judge_mode == "score":
            _score_labels(job, item, outcome["verdicts"], labels)
        else:
            _pairwise_labels(job, item, outcome["verdicts"], labels)
    files = [write_jsonl(out / BATTLES_FILE, labels.battles)]
    if labels.scores:
        files.append(write_jsonl(out / SCORES_FILE, labels.scores))
    summary = _summary(job, outcomes, labels, run)
    path = out / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
    files.append(path)
    return LabelResult(summary, files)


def _per_model(job: LabelJob, labels: _Labels) -> dict[str, dict[str, Any]]:
    counts = {m.name: Counter() for m in job.models}
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


def _tokens(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


def _summary(job: LabelJob, outcomes: Sequence[dict | None], labels: _Labels, run: _Run) -> dict[str, Any]:
    stored = Counter()
    for store in (run.responses, run.judgements):
        for record in store:
            usage = record.get("usage") or {}
            stored["prompt"] += int(usage.get("prompt_tokens") or 0)
            stored["completion"] += int(usage.get("completion_tokens") or 0)
    winners = Counter(b["winner"] for b in labels.battles)
    ties = winners["tie"] + winners["tie (bothbad)"]
    done = sum(o is not None for o in outcomes)
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
        "calls": {
            "made": dict(run.tally.made),
            "reused": dict(run.tally.reused),
            "failed": run.tally.failed,
            "retries": run.tally.retries,
            "errors": run.tally.errors,
        },
        "tokens": {
            "this_run": _tokens(run.tally.prompt_tokens, run.tally.completion_tokens),
            "all_runs": _tokens(stored["prompt"], stored["completion"]),
        },
        "stopped": run.stopped,
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
    lines.append(
        f"calls: {made} made, {reused} reused from earlier runs, {calls['failed']} failed; "
        f"tokens this run {this_run:,}, all runs {all_runs:,}"
    )
    if summary["stopped"]:
        lines.append(f"stopped early: {summary['stopped']}; rerun the same command to continue")
    elif items["incomplete"]:
        lines.append(f"{items['incomplete']} prompts are incomplete (failed calls); rerun to retry them")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
