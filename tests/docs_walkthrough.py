"""The harness of the docs walk-through (``tests/test_docs_walkthrough.py``): blocks, stand-ins, runs.

:func:`blocks` reads a markdown file's fenced blocks in order. Every block names its language:
``bash`` and ``python`` run; ``yaml`` and ``json`` must parse, and a yaml block whose first line is
``# NAME.yaml`` is written to that file for the blocks after it; ``text`` is output or a synopsis
(a synopsis line ``lmroute CMD ...`` may only name flags that CMD has). A block can be left out
only by saying why, on the line before it::

    <!-- walkthrough: skip: REASON -->

Blocks run as written in a copy of the repository, with the data folder set and every download
source unreachable; what cannot run here is swapped for a loopback stand-in, by text: :data:`URLS`
(hosted APIs and the local model servers the docs name) and :data:`STAND_IN_FILES` (files a doc
says are yours). A ``bash`` block of ``export`` lines sets those variables for the blocks after it
(the README's quickstart; ``tests/test_readme_quickstart.py`` also runs it against two llama.cpp
servers); a ``bash`` block that is one ``lmroute serve`` command runs in the background until the
doc ends; a ``bash`` block whose command ends in ``&`` starts servers the stand-ins replace and must
be skipped with its reason.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP = re.compile(r"<!--\s*walkthrough:\s*skip:\s*(.+?)\s*-->")
LANGUAGES = ("bash", "python", "yaml", "json", "text")

#: Hosted APIs and model servers the docs name -> the stand-in that answers for them here.
URLS = {
    "https://api.openai.com/v1": "strong",  # a hosted strong model (and judge)
    "http://127.0.0.1:8080/v1": "weak",  # the quickstart's and serving docs' local weak model
    "http://127.0.0.1:8081/v1": "strong",  # docs/labeling.md's larger local model
    "http://127.0.0.1:8082/v1": "weak",  # docs/labeling.md's smaller local model
}
#: Files a doc says are the reader's own -> how the walk-through makes a stand-in from the data folder.
STAND_IN_FILES = {
    "gsm8k/train.jsonl": "GSM8K's training split: routellm-evals' test questions after the first 1,000",
    "gsm8k/test.jsonl": "GSM8K's test questions: routellm-evals/gsm8k/test.jsonl, its first 1,000",
    "my_prompts.jsonl": "your prompts: the first 20 Arena-Hard prompts",
    "my_traffic.jsonl": "your traffic: the first 200 Arena-Hard prompts",
    "checkpoints/my-mf": "a router you trained: a copy of the shipped mf",
}
#: The port the docs give ``lmroute serve``; the walk-through replaces it with a free one.
SERVE_PORT = "6060"


@dataclass(frozen=True)
class Block:
    """A fenced block: its file, the line it starts on, language, code, and why it is skipped."""

    doc: Path
    line: int
    language: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc`` in order (language ``""`` when none is given)."""
    lines = doc.read_text("utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(`{3,})(\w*)\s*$", line)
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1)))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.search(before)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(doc, i + 1, fence.group(2), code, skip.group(1) if skip else None))
        i = end + 1
    return found


def commands(code: str) -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def exports(code: str) -> dict[str, str] | None:
    """The variables a bash block of ``export NAME=VALUE ...`` lines sets (None for any other block)."""
    lines = commands(code)
    if not lines or not all(line.startswith("export ") for line in lines):
        return None
    words = [w for line in lines for w in shlex.split(line, comments=True)[1:]]
    return dict(word.split("=", 1) for word in words)


def substitute(code: str, urls: dict[str, str], port: int) -> str:
    """``code`` with the stand-ins' URLs and the server's port in place of the docs' ones."""
    for url, stand_in in URLS.items():
        code = code.replace(url, urls[stand_in])
    return code.replace(SERVE_PORT, str(port))


def copy_repository(to: Path) -> Path:
    """The repository's tracked files (or, outside git, its tree without caches) copied to ``to``."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        for name in listed.stdout.splitlines():
            source = REPO / name
            if source.is_file():
                (to / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, to / name)
    else:
        ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "results")
        shutil.copytree(REPO, to, ignore=ignore, dirs_exist_ok=True)
    return to


def make_stand_in_files(work: Path, data_dir: Path) -> None:
    """The files of :data:`STAND_IN_FILES`, in ``work``."""
    gsm8k = (
        (data_dir / "routellm-evals" / "gsm8k" / "test.jsonl").read_text("utf-8").splitlines(keepends=True)
    )
    arena = (data_dir / "arena-hard" / "questions.jsonl").read_text("utf-8").splitlines(keepends=True)
    (work / "gsm8k").mkdir(exist_ok=True)
    (work / "gsm8k" / "train.jsonl").write_text("".join(gsm8k[1000:]), "utf-8")
    (work / "gsm8k" / "test.jsonl").write_text("".join(gsm8k[:1000]), "utf-8")
    (work / "my_prompts.jsonl").write_text("".join(arena[:20]), "utf-8")
    (work / "my_traffic.jsonl").write_text("".join(arena[:200]), "utf-8")
    shutil.copytree(REPO / "src" / "lmroute" / "checkpoints" / "mf", work / "checkpoints" / "my-mf")


class StandInModel:
    """An OpenAI-compatible chat model on loopback that answers what the docs ask of their models.

    A question it knows (GSM8K's, with its reference) gets the right ``#### N`` from ``strong`` and,
    for two questions in three, a wrong one from ``weak``; a judge's prompt (it asks for ``[[A]]``,
    ``[[B]]``, ``[[C]]`` or a ``[[rating]]``) gets a verdict; anything else a short answer. Streams
    are sent in two chunks.
    """

    def __init__(self, name: str, answers: dict[str, str]):
        self.name = name
        self.answers = answers
        self.requests = 0

    def reply(self, messages: list[dict]) -> str:
        text = "\n".join(str(m.get("content", "")) for m in messages)
        if "[[A]]" in text:
            return "[[A]]" if zlib.crc32(text.encode()) % 3 else "[[C]]"
        if "[[" in text and "rating" in text.lower():
            return f"Rating: [[{3 + zlib.crc32(text.encode()) % 7}]]"
        for question, answer in self.answers.items():
            if question in text:
                right = self.name == "strong" or zlib.crc32(question.encode()) % 3 == 0
                return f"The answer is\n#### {answer if right else int(answer) + 1}"
        return f"{self.name} model: here is an answer."

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            self.requests += 1
            model, text = body.get("model", self.name), self.reply(body.get("messages", []))
            usage = {"prompt_tokens": 10, "completion_tokens": len(text) // 4 + 1}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if not body.get("stream"):
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                return JSONResponse(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 1,
                        "model": model,
                        "choices": [choice],
                        "usage": usage,
                    }
                )

            def chunk(delta: str) -> bytes:
                choice = {"index": 0, "delta": {"content": delta}, "finish_reason": None}
                data = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [choice],
                }
                return f"data: {json.dumps(data)}\n\n".encode()

            half = len(text) // 2
            events = [chunk(text[:half]), chunk(text[half:]), b"data: [DONE]\n\n"]
            return StreamingResponse(iter(events), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def gsm8k_answers(data_dir: Path) -> dict[str, str]:
    """GSM8K test question -> its reference number (the stand-in models' knowledge)."""
    answers = {}
    for line in (data_dir / "routellm-evals" / "gsm8k" / "test.jsonl").read_text("utf-8").splitlines():
        record = json.loads(line)
        answers[record["question"]] = record["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    return answers
