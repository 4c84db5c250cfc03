"""MT-Bench's second turns as conversations whose next answer's quality is known per model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmroute._jsonl import read_jsonl_objects
from lmroute.data.benchmarks import STRONG_MODEL, WEAK_MODEL, Benchmark, load_mt_bench
from lmroute.data.conversations import Message, routing_text
from lmroute.data.public import locate, reading
from lmroute.exceptions import DataError


@dataclass(frozen=True)
class Conversations:
    """Conversations whose next answer's quality is known per model: ``benchmark.prompts`` are
    their last user messages, ``benchmark.scores`` the quality of each model's answer to it."""

    messages: tuple[tuple[Message, ...], ...]
    benchmark: Benchmark

    def routed(
        self, route_on: str, *, system_prompt: str | None = None, name: str | None = None
    ) -> Benchmark:
        """The benchmark (named ``name``, default the benchmark's) whose prompts are the routing
        texts of the conversations, each opened by ``system_prompt`` when given."""
        opening: tuple[Message, ...] = (("system", system_prompt),) if system_prompt else ()
        prompts = tuple(routing_text([*opening, *conv], route_on) for conv in self.messages)
        b = self.benchmark
        return Benchmark(name or b.name, prompts, b.scores, b.strong_model, b.weak_model, b.ids, b.categories)


_CONVERSATION = re.compile(
    r"<\|The Start of Assistant A's Conversation with User\|>\s*### User:\n(?P<first>.*?)\n\n"
    r"### Assistant A:\n(?P<answer>.*?)\n\n### User:\n",
    re.DOTALL,
)


def mt_bench_second_turns(
    data_dir: str | Path | None, *, answer_by: str = STRONG_MODEL, download_url: str | None = None
) -> Conversations:
    """MT-Bench's second turns: each conversation is the first question, ``answer_by``'s answer to
    it (from the judge's record) and the second question; a model's quality is its second-turn
    judge score. The questions the RouteLLM benchmark drops as contaminated are dropped (72 left).
    """
    folder = locate("mt-bench", data_dir=data_dir, download_url=download_url)
    with reading(folder):
        return _second_turns(folder, answer_by)


def _second_turns(folder: Path, answer_by: str) -> Conversations:
    first = load_mt_bench(folder)  # the decontaminated questions and their turns
    path = folder / "mt_bench" / "judgements.jsonl"
    turn2: dict[tuple[str, str], float] = {}
    answers: dict[str, str] = {}
    for line, record in read_jsonl_objects(path, what="judgements"):
        if record.get("turn") != 2:
            continue
        try:
            qid, model = str(int(record["question_id"])), str(record["model"])
            turn2[qid, model] = float(record["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}:{line}: bad record: {exc}") from exc
        if model == answer_by:
            match = _CONVERSATION.search(str(record.get("user_prompt", "")))
            if match is None:
                raise DataError(f"{path}:{line}: no first answer of {model} in the judge's prompt")
            answers[qid] = match["answer"]
    conversations, keep = [], []
    for i, (qid, question, later) in enumerate(zip(first.ids, first.prompts, first.followups, strict=True)):
        if not later or (qid, STRONG_MODEL) not in turn2 or (qid, WEAK_MODEL) not in turn2:
            continue
        if qid not in answers:
            raise DataError(f"{path}: no second-turn judgement of {answer_by} on question {qid}")
        conversations.append((("user", question), ("assistant", answers[qid]), ("user", later[0])))
        keep.append(i)
    scores = {m: np.array([turn2[first.ids[i], m] for i in keep]) for m in (STRONG_MODEL, WEAK_MODEL)}
    bench = Benchmark(
        "mt-bench-turn-2",
        tuple(conv[-1][1] for conv in conversations),
        scores,
        STRONG_MODEL,
        WEAK_MODEL,
        tuple(first.ids[i] for i in keep),
        tuple(first.categories[i] for i in keep),
    )
    return Conversations(tuple(conversations), bench)
