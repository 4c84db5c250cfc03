"""What a labelling run does: :class:`LabelJob` (items, models, mode, request defaults) and the
requests of its calls, with the token estimates the dry run and the budget use."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmroute.exceptions import ConfigError, DataError
from lmroute.labeling.extract import GRADERS, reads_reference
from lmroute.labeling.items import LabelItem
from lmroute.labeling.judge import JUDGE_MODES, JudgeTemplate, load_template, parse_pairwise, parse_score
from lmroute.labeling.upstream import LabelModel
from lmroute.pricing import CHARS_PER_TOKEN

MODES = ("judge", "golden")
#: Chat messages as sent upstream: ``[{"role": ..., "content": ...}, ...]``.
Messages = list[dict[str, str]]
#: What a call without max_tokens is assumed to produce, for dry runs and the budget.
UNBOUNDED_COMPLETION_ESTIMATE = 1024


def _default_params() -> dict[str, Any]:
    return {"temperature": 0.0, "max_tokens": 1024}


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
    params: Mapping[str, Any] = field(default_factory=_default_params)
    judge_params: Mapping[str, Any] = field(default_factory=_default_params)

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
        # An upstream's own params are sent as they are (llama.cpp reads max_tokens -1 as no bound).
        _check_bounds(self.params, "the models' requests")
        _check_bounds(self.judge_params, "the judge's requests")
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
            # Else every pair of such a prompt was labelled "tie (bothbad)", whatever the answers.
            unread = [i for i in self.items if not reads_reference(i.reference or "", grader=self.grader)]
            if unread:
                raise DataError(
                    f"the {self.grader} grader reads no answer from {len(unread)} reference(s), so "
                    f"every response to them would be graded wrong (first: id {unread[0].id}, "
                    f"{(unread[0].reference or '')[:80]!r}); fix them or use another grader"
                )

    def messages(self, item: LabelItem) -> Messages:
        """The chat messages every model gets for ``item``."""
        user = self.prompt_template.replace("{prompt}", item.prompt)
        messages = [{"role": "user", "content": user}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def model_params(self, model: LabelModel) -> dict[str, Any]:
        """The request parameters of ``model``'s calls: the job's, under the model's own."""
        return {**self.params, **model.params}

    def judge_request_params(self) -> dict[str, Any]:
        """The request parameters of the judge's calls."""
        assert self.judge is not None
        return {**self.judge_params, **self.judge.params}

    def judge_calls(
        self, item: LabelItem, texts: Mapping[str, str]
    ) -> list[tuple[str, list[dict[str, str]]]]:
        """(what is judged, messages) of each judge call for ``item``, given the models' answers.

        ``what`` is the rated model's name (score mode) or ``first|second`` in the order the judge
        sees them (pairwise: each pair in both orders). Models without an answer are left out.
        """
        assert self.template is not None
        question = self.messages(item)[-1]["content"]
        if self.judge_mode == "score":
            return [(name, self.template.render(question=question, answer=texts[name])) for name in texts]
        calls = []
        for a, b in self.pairs:
            if a not in texts or b not in texts:
                continue
            for first, second in ((a, b), (b, a)):
                rendered = self.template.render(
                    question=question, answer_a=texts[first], answer_b=texts[second]
                )
                calls.append((f"{first}|{second}", rendered))
        return calls

    def parse_verdict(self, text: str) -> str | float | None:
        """The verdict in a judge's output (see :mod:`lmroute.labeling.judge`); None if it gave none."""
        return parse_score(text) if self.judge_mode == "score" else parse_pairwise(text)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every pair of model names, in the order the models were given."""
        return list(itertools.combinations([m.name for m in self.models], 2))

    @property
    def source(self) -> str:
        """The provenance written into each battle: ``label:golden:<grader>`` or
        ``label:judge-<mode>:<judge>``."""
        if self.mode == "golden":
            return f"label:golden:{self.grader}"
        assert self.judge is not None
        return f"label:judge-{self.judge_mode}:{self.judge.name}"


def _check_bounds(params: Mapping[str, Any], where: str) -> None:
    """ConfigError unless each completion bound in ``params`` is a positive integer (or None: none).
    Any other went to every call as it was, each refused by the endpoint, and the dry run and the
    budget counted it wrong."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}: {key} must be a whole number of tokens, at least 1, not {value!r}")


def call_request(
    model: LabelModel, messages: list[dict[str, str]], params: Mapping[str, Any]
) -> dict[str, Any]:
    """What identifies a call in the stores (its hash is the key): model id, messages, parameters."""
    # The upstream's address is left out: the same model moved to another host is the same call.
    return {"model": model.upstream_model, "messages": messages, "params": dict(params)}


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """A rough prompt size: four characters a token plus a few per message."""
    return sum(estimate_text_tokens(m["content"]) + 4 for m in messages)


def estimate_text_tokens(text: str) -> int:
    """A rough size of ``text``: the characters a token of English text takes (four)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _bound(params: Mapping[str, Any]) -> int | None:
    """The completion bound of a call with ``params``, None when it has none.

    Only a positive number bounds a call: an upstream's own params are sent as they are, and
    llama.cpp reads ``max_tokens: -1`` as no bound (counted as -1 tokens, the dry run and the budget
    let such a call through as if it could produce nothing).
    """
    for key in ("max_tokens", "max_completion_tokens"):
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value < math.inf:
            return int(value)
    return None


def unbounded(params: Mapping[str, Any]) -> bool:
    """Whether a call with ``params`` has no completion bound (no positive max_tokens)."""
    return _bound(params) is None


def completion_bound(params: Mapping[str, Any]) -> int:
    """The most tokens a call with ``params`` may produce (an estimate when it is unbounded)."""
    bound = _bound(params)
    return UNBOUNDED_COMPLETION_ESTIMATE if bound is None else bound
