"""The run loop: make each item's calls within the limits, reusing the stored ones, then write
the labels.

A run works in an output folder::

    responses.jsonl    every finished model call (model, prompt id, text, latency, usage)
    judgements.jsonl   every finished judge call (raw output and parsed verdict)
    battles.jsonl      the labels: prompt, model_a, model_b, winner (+ id, source, details)
    scores.jsonl       per-model scores, a custom benchmark (golden and score modes)
    summary.json       win rates, tie share, unparsable verdicts, calls and tokens

The first two are stores (:mod:`lmroute.labeling.store`): a call found there is never made
again, so an interrupted run rerun with the same arguments continues where it stopped. The last
three are rewritten at the end of each run from what the stores hold
(:mod:`lmroute.labeling.outputs`).

Every call passes a :class:`~lmroute.labeling.limits.CallGate` (concurrency, rate, budget, failure
limit). :func:`alabel_items` labels some items against given stores and gate: the run on Ray
(:mod:`lmroute.cluster.label`) calls it in each worker with the items of a batch, their stored
calls and a gate shared by the whole cluster.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from lmroute.exceptions import UpstreamError
from lmroute.labeling.items import LabelItem
from lmroute.labeling.job import (
    LabelJob,
    Messages,
    call_request,
    completion_bound,
    estimate_text_tokens,
    estimate_tokens,
)
from lmroute.labeling.limits import CallGate, Gate, RunLimits
from lmroute.labeling.outputs import ItemCalls, LabelResult, write_outputs
from lmroute.labeling.store import JUDGEMENTS_FILE, RESPONSES_FILE, CallStore, request_hash
from lmroute.labeling.upstream import ChatCaller, ChatResult, LabelModel, UpstreamCaller
from lmroute.pricing import reported_tokens

_T = TypeVar("_T")
_RETRYABLE_STATUS = {408, 409, 429}
#: The longest Retry-After a call waits for. A longer one is a quota spent for hours or a day: the
#: call fails at once (the run goes on, its failure limit stops it) rather than sleeping silently.
_MAX_RETRY_AFTER = 300.0


async def alabel(
    job: LabelJob,
    out: str | Path,
    *,
    limits: RunLimits | None = None,
    caller: ChatCaller | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    progress: bool = False,
) -> LabelResult:
    """Run ``job`` into folder ``out`` within ``limits`` and write battles, scores and a summary there.

    A run stopped by the budget or the failure limit stops cleanly: finished calls are stored and
    the labels of the finished items are written; rerunning continues it. ``caller`` makes the
    calls (default: :class:`~lmroute.labeling.upstream.UpstreamCaller`); ``clock`` and ``sleep``
    time them.
    """
    out = Path(out)
    limits = limits or RunLimits()
    own_caller: UpstreamCaller | None = None
    if caller is None:
        # Every key before the first call and the run folder: an unset one found at that model's
        # first call came after the other models' calls were paid for.
        for model in (*job.models, *([job.judge] if job.judge is not None else [])):
            model.api_key()
        own_caller = UpstreamCaller()
        caller = own_caller
    try:
        with (
            CallStore.open(out / RESPONSES_FILE) as responses,
            CallStore.open(out / JUDGEMENTS_FILE) as judgements,
        ):
            gate = CallGate(limits, spent=stored_tokens([responses, judgements]), clock=clock, sleep=sleep)
            outcomes, tally = await alabel_items(
                job,
                job.items,
                responses,
                judgements,
                caller=caller,
                gate=gate,
                limits=limits,
                clock=clock,
                sleep=sleep,
                progress=progress,
            )
    finally:
        if own_caller is not None:
            await own_caller.aclose()
    return write_outputs(job, out, outcomes, run_summary(tally, [responses, judgements], gate.stopped))


def label(job: LabelJob, out: str | Path, **options: Any) -> LabelResult:
    """Synchronous :func:`alabel`."""
    return asyncio.run(alabel(job, out, **options))


async def alabel_items(
    job: LabelJob,
    items: Sequence[LabelItem],
    responses: CallStore,
    judgements: CallStore,
    *,
    caller: ChatCaller,
    gate: Gate,
    limits: RunLimits,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    progress: bool = False,
) -> tuple[list[ItemCalls | None], RunTally]:
    """Label ``items`` of ``job``: each one's finished calls (None for an item none of whose calls
    finished) and the tally of the calls. A call found in ``responses`` or ``judgements`` is
    reused, a new one is made through ``gate`` and appended there."""
    run = _Run(job, responses, judgements, caller=caller, gate=gate, limits=limits, clock=clock, sleep=sleep)
    return await run.label_items(items, progress=progress), run.tally


class _Stop(Exception):
    """No more calls: the budget or the failure limit was reached."""


@dataclass
class RunTally:
    """What the calls of a run did: made and reused (by kind), failed, retried, tokens spent."""

    made: Counter[str] = field(default_factory=Counter)
    reused: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The first few errors, for the summary.
    errors: list[str] = field(default_factory=list)

    def add(self, other: RunTally) -> None:
        """Count ``other``'s calls in here too (the tallies of a run's workers)."""
        self.made.update(other.made)
        self.reused.update(other.reused)
        self.failed += other.failed
        self.retries += other.retries
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.errors.extend(other.errors[: max(0, _ERRORS_KEPT - len(self.errors))])

    def as_dict(self) -> dict[str, Any]:
        """The tally as JSON values (:meth:`from_dict` reads them back)."""
        # Not dataclasses.asdict: it rebuilds a Counter from (key, count) pairs, counting the pairs.
        return {
            **vars(self),
            "made": dict(self.made),
            "reused": dict(self.reused),
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunTally:
        """The tally of :meth:`as_dict`'s values."""
        return cls(**{**data, "made": Counter(data["made"]), "reused": Counter(data["reused"])})


_ERRORS_KEPT = 5


class _Run:
    """One run's calls: a stored call is reused, a new one is made within the limits and stored."""

    def __init__(
        self,
        job: LabelJob,
        responses: CallStore,
        judgements: CallStore,
        *,
        caller: ChatCaller,
        gate: Gate,
        limits: RunLimits,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[Any]],
    ):
        self.job = job
        self.responses = responses
        self.judgements = judgements
        self.caller = caller
        self.gate = gate
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self.tally = RunTally()
        #: Calls under way, by store key, so that the same request for another pair waits for it.
        self.inflight: dict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = {}

    async def label_items(self, items: Sequence[LabelItem], *, progress: bool) -> list[ItemCalls | None]:
        """Each item's finished calls, None for an item none of whose calls finished."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc="labelling", unit="prompt", file=sys.stderr)

        async def one(item: LabelItem) -> ItemCalls | None:
            outcome = await self.label(item)
            if bar is not None:
                bar.update(1)
            return outcome

        try:
            return await _all(one(item) for item in items)
        finally:
            if bar is not None:
                bar.close()

    async def label(self, item: LabelItem) -> ItemCalls | None:
        """The finished calls of ``item``: the models' answers, then (judge mode) the judge's
        verdicts on the pairs both of whose answers came; None when no call finished."""
        # One model's failure leaves the others' pairs to label: a prompt that model always fails
        # on (too long for its context, refused by a filter) lost every pair, paid for, on each run.
        answers = await self.answers(item)
        if not answers:
            return None
        complete = len(answers) == len(self.job.models)
        if self.job.mode == "golden":
            return ItemCalls(answers, complete=complete)
        judge = self.job.judge
        assert judge is not None
        calls = self.job.judge_calls(item, answers)
        params = self.job.judge_request_params()
        verdicts = await _settled_all(
            self.call(
                self.judgements,
                judge,
                item,
                messages,
                params,
                kind="judge",
                extra={"judge_mode": self.job.judge_mode, "judged": what},
                parse=self.job.parse_verdict,
            )
            for what, messages in calls
        )
        judged = {
            what: record["text"]
            for (what, _), record in zip(calls, verdicts, strict=True)
            if record is not None
        }
        return ItemCalls(answers, judged, complete=complete and len(judged) == len(calls))

    async def answers(self, item: LabelItem) -> dict[str, str]:
        """The answers to ``item`` of the models whose calls finished (not failed, nor refused by
        the stopped run)."""
        messages = self.job.messages(item)
        records = await _settled_all(
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
        )
        return {
            model.name: record["text"]
            for model, record in zip(self.job.models, records, strict=True)
            if record is not None
        }

    async def call(
        self,
        store: CallStore,
        model: LabelModel,
        item: LabelItem,
        messages: Messages,
        params: Mapping[str, Any],
        *,
        kind: str,
        extra: Mapping[str, Any],
        parse: Callable[[str], Any] | None = None,
    ) -> dict[str, Any]:
        """The record of this call: from the store if finished before, else made and stored."""
        req_hash = request_hash(call_request(model, messages, params))
        key = (model.name, item.id, req_hash)
        stored = store.get(*key)
        if stored is not None:
            self.tally.reused[kind] += 1
            return stored
        if key in self.inflight:  # the very same request is under way for another pair
            return await asyncio.shield(self.inflight[key])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
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

    async def _make(
        self,
        store: CallStore,
        kind: str,
        model: LabelModel,
        item: LabelItem,
        messages: Messages,
        params: Mapping[str, Any],
        extra: Mapping[str, Any],
        req_hash: str,
        parse: Callable[[str], Any] | None,
    ) -> dict[str, Any]:
        estimate = estimate_tokens(messages) + completion_bound(params)
        stopped = await self.gate.enter(estimate)
        if stopped:
            raise _Stop(stopped)
        spent = 0
        try:
            result, latency, attempts = await self._with_retries(model, messages, params)
            usage = _usage(result, messages)
            spent = usage["total_tokens"]
        finally:
            await self.gate.leave(estimate, spent)
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
        self.tally.prompt_tokens += usage["prompt_tokens"]
        self.tally.completion_tokens += usage["completion_tokens"]
        return record

    async def _with_retries(
        self, model: LabelModel, messages: Messages, params: Mapping[str, Any]
    ) -> tuple[ChatResult, float, int]:
        """The result, its latency in seconds and the attempts it took."""
        retries = self.limits.retries
        for attempt in range(retries + 1):
            await self.gate.pace()
            started = self.clock()
            try:
                result = await self.caller(model, messages, params)
            except UpstreamError as exc:
                delay = _retry_delay(exc, attempt, self.limits.backoff)
                if delay is not None and attempt < retries and not await self.gate.stop_reason():
                    self.tally.retries += 1
                    await self.sleep(delay)
                    continue
                self.tally.failed += 1
                if len(self.tally.errors) < _ERRORS_KEPT:
                    self.tally.errors.append(str(exc))
                await self.gate.fail(str(exc))
                raise
            return result, self.clock() - started, attempt + 1
        raise AssertionError("unreachable: the loop returns or raises")


def stored_tokens(stores: Iterable[CallStore]) -> int:
    """Tokens the calls in ``stores`` spent (what a token budget counts from)."""
    return sum(_stored_tokens(record, "total_tokens") for store in stores for record in store)


def run_summary(tally: RunTally, stores: Iterable[CallStore], stopped: str | None) -> dict[str, Any]:
    """The run's part of ``summary.json``: calls, tokens (this run and all runs in ``stores``), why
    it stopped."""
    stored: Counter[str] = Counter()
    for store in stores:
        for record in store:
            stored["prompt"] += _stored_tokens(record, "prompt_tokens")
            stored["completion"] += _stored_tokens(record, "completion_tokens")
            usage = record.get("usage")
            stored["estimated"] += isinstance(usage, Mapping) and usage.get("estimated") is True
    return {
        "calls": {
            "made": dict(tally.made),
            "reused": dict(tally.reused),
            "failed": tally.failed,
            "retries": tally.retries,
            "errors": tally.errors,
        },
        "tokens": {
            "this_run": _tokens(tally.prompt_tokens, tally.completion_tokens),
            "all_runs": _tokens(stored["prompt"], stored["completion"]),
            # Calls whose upstream reported no usage: their counts are estimates (see _usage).
            "estimated_calls": stored["estimated"],
        },
        "stopped": stopped,
    }


def _retry_delay(exc: UpstreamError, attempt: int, backoff: float) -> float | None:
    """Seconds to wait before retrying a call that failed with ``exc`` on its ``attempt``-th retry
    (from 0): the exponential backoff, or the endpoint's Retry-After when longer; None when the
    failure is not worth retrying (a client error, or a Retry-After beyond five minutes)."""
    status = exc.status_code
    if not (status is None or status in _RETRYABLE_STATUS or status >= 500):
        return None
    delay = min(30.0, backoff * 2**attempt)
    if exc.retry_after is None:
        return delay
    return None if exc.retry_after > _MAX_RETRY_AFTER else max(delay, exc.retry_after)


async def _settled_all(calls: Iterable[Awaitable[dict[str, Any]]]) -> list[dict[str, Any] | None]:
    """Each call's record, None for one that failed or that the stopped run did not start
    (finished calls stay stored)."""

    async def settled(call: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return await call
        except (UpstreamError, _Stop):  # this call's end, not its siblings'
            return None

    return await _all(settled(call) for call in calls)


async def _all(awaitables: Iterable[Awaitable[_T]]) -> list[_T]:
    """Every result, awaited at once. The first error (a full disk, a caller's bug) cancels the
    others before it is raised: they went on paying for calls no store would keep, in a Ray
    worker's event loop even after its batch had failed."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # nothing to a finished task
        await asyncio.gather(*tasks, return_exceptions=True)


def _usage(result: ChatResult, messages: Messages) -> dict[str, Any]:
    """The ``usage`` stored with a call: the upstream's counts, or when it reported none (every
    real call has a prompt token) an estimate marked ``estimated``. Counted as 0, such calls spent
    nothing of the token budget, which then never stopped a run."""
    prompt, completion = result.prompt_tokens, result.completion_tokens
    estimated = prompt == 0 and completion == 0
    if estimated:
        prompt, completion = estimate_tokens(messages), estimate_text_tokens(result.text)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return {**usage, "estimated": True} if estimated else usage


def _stored_tokens(record: Mapping[str, Any], key: str) -> int:
    """A stored call's ``usage[key]``; 0 when it has none (a store merged by hand, say: a count
    that was no number, or a usage that was no mapping, failed the run with a traceback)."""
    usage = record.get("usage")
    return (reported_tokens(usage.get(key)) or 0) if isinstance(usage, Mapping) else 0


def _tokens(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}
