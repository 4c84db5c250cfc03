"""The dry run: what a run of a job would call and spend, beyond what its folder has stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmroute.labeling.job import (
    UNBOUNDED_COMPLETION_ESTIMATE,
    LabelJob,
    call_request,
    completion_bound,
    estimate_tokens,
    unbounded,
)
from lmroute.labeling.store import JUDGEMENTS_FILE, RESPONSES_FILE, CallStore, request_hash


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
        """A few lines for the terminal."""
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
    responses = _stored_calls(out / RESPONSES_FILE)
    judgements = _stored_calls(out / JUDGEMENTS_FILE)
    plan = Plan()
    for item in job.items:
        messages = job.messages(item)
        texts: dict[str, str] = {}
        for model in job.models:
            params = job.model_params(model)
            stored = responses.get(model.name, item.id, request_hash(call_request(model, messages, params)))
            if stored is not None:
                plan.response_stored += 1
                texts[model.name] = stored["text"]
            else:
                plan.response_calls += 1
                plan.prompt_tokens += estimate_tokens(messages)
                plan.completion_tokens += completion_bound(params)
                plan.unbounded |= unbounded(params)
                # Stand-in text of the longest possible answer, to size the judge prompts.
                texts[model.name] = "x" * (4 * completion_bound(params))
        if job.mode != "judge":
            continue
        assert job.judge is not None
        judge_params = job.judge_request_params()
        for _, judge_messages in job.judge_calls(item, texts):
            req_hash = request_hash(call_request(job.judge, judge_messages, judge_params))
            if judgements.get(job.judge.name, item.id, req_hash) is not None:
                plan.judge_stored += 1
            else:
                plan.judge_calls += 1
                plan.prompt_tokens += estimate_tokens(judge_messages)
                plan.completion_tokens += completion_bound(judge_params)
                plan.unbounded |= unbounded(judge_params)
    return plan


def _stored_calls(path: Path) -> CallStore:
    """The calls stored at ``path`` (none if it does not exist), read and released at once."""
    if not path.exists():
        return CallStore(path)
    with CallStore.open(path) as store:
        return store
