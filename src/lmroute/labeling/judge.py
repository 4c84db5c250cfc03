"""LLM-judge prompts and verdicts.

Two modes, each with a prompt template shipped in ``lmroute/labeling/templates`` (YAML with a
``system`` and a ``user`` message) that ``--judge-template FILE`` replaces:

``pairwise``
    The judge sees both responses and ends with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). Each pair
    is judged in both orders; the two verdicts decide only when they agree, and disagreeing
    verdicts count as a tie, which cancels position bias (MT-Bench's convention).
``score``
    The judge rates one response from 1 to 10 (``[[7]]``); the better-rated model wins the pair.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lmroute.exceptions import ConfigError

JUDGE_MODES = ("pairwise", "score")
_PLACEHOLDERS = {"pairwise": ("question", "answer_a", "answer_b"), "score": ("question", "answer")}
_FIELD = re.compile(r"\{(question|answer_a|answer_b|answer)\}")


@dataclass(frozen=True)
class JudgeTemplate:
    """The system and user messages of one judge mode, with ``{placeholders}`` in them."""

    mode: str
    system: str
    user: str
    #: Where the template came from: ``builtin:pairwise`` or a file path.
    source: str

    def render(self, **fields: str) -> list[dict[str, str]]:
        """Chat messages with the placeholders filled in.

        Filling is one pass, so braces inside a question or an answer are never expanded.
        """

        def fill(text: str) -> str:
            return _FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), text)

        messages = [{"role": "user", "content": fill(self.user)}]
        if self.system.strip():
            messages.insert(0, {"role": "system", "content": fill(self.system)})
        return messages


def load_template(mode: str, path: str | Path | None = None) -> JudgeTemplate:
    """The judge template of ``mode``: the packaged one, or the YAML file at ``path``."""
    from lmroute._yaml import load_yaml_text

    if mode not in JUDGE_MODES:
        raise ConfigError(f"unknown judge mode {mode!r}; use one of {', '.join(JUDGE_MODES)}")
    if path is None:
        text = (resources.files("lmroute.labeling") / "templates" / f"{mode}.yaml").read_text("utf-8")
        source = f"builtin:{mode}"
    else:
        try:
            text = Path(path).read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read judge template {path} as UTF-8 text: {exc}") from None
        source = str(path)
    data = load_yaml_text(text, what=f"judge template {source}")
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise ConfigError(f"judge template {source} needs a 'user' message (and may have a 'system' one)")
    extra = set(data) - {"system", "user"}
    if extra:
        raise ConfigError(f"judge template {source} has unknown keys {sorted(extra)}; use system, user")
    system = data.get("system") or ""
    if not isinstance(system, str):
        raise ConfigError(f"judge template {source}: 'system' must be text")
    missing = [p for p in _PLACEHOLDERS[mode] if "{" + p + "}" not in system + data["user"]]
    if missing:
        raise ConfigError(
            f"judge template {source} lacks {', '.join('{' + p + '}' for p in missing)} "
            f"needed by the {mode} mode"
        )
    return JudgeTemplate(mode, system, data["user"], source)


# A verdict followed by "if", or quoted and followed by "for", names an option ('"[[C]]" if they
# are equally good', '"[[C]]" for a tie', as the packaged template and MT-Bench's prompt word them),
# not the judge's choice: a judge that echoed the instructions and gave no verdict was read as the
# last option listed, a tie. ("[[B]] for assistant B" is a verdict.)
_PAIR_VERDICT = re.compile(
    r"\[\[\s*(A|B|C|tie)\s*\]\](?![\"'”’]?\s*(?-i:if)\b|[\"'”’]\s*(?-i:for)\b)", re.IGNORECASE
)
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*(?:/\s*10\s*)?\]\]")
# Each run of spaces has one quantifier that can take it: with "\s*[:=]?\s*\[?\s*" a judge's
# "rating" followed by a few thousand spaces (a small model's runaway output) took minutes to refuse.
_RATING_FALLBACK = re.compile(
    r"rating\s*(?:[:=]\s*)?(?:\[\s*)?(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*\]?", re.IGNORECASE
)


def parse_pairwise(text: str) -> str | None:
    """``A``, ``B`` or ``C`` (tie) from the judge's last ``[[X]]``; None when it gave none."""
    found = _PAIR_VERDICT.findall(text)
    if not found:
        return None
    verdict = found[-1].upper()
    return "C" if verdict == "TIE" else verdict


def parse_score(text: str) -> float | None:
    """The judge's 1-10 rating from its last ``[[N]]`` (or "Rating: N"); None when absent or out of range."""
    found = _RATING.findall(text) or _RATING_FALLBACK.findall(text)
    if not found:
        return None
    value = float(found[-1])
    return value if 1.0 <= value <= 10.0 else None


def combine_pairwise(first: str, second: str) -> tuple[str, bool]:
    """The battle winner from both orders, and whether the two verdicts agree.

    ``first`` judged model_a as A and model_b as B, ``second`` the swapped order. Agreeing
    verdicts decide; disagreeing ones make a tie, so a judge that favours a position cancels out.
    """
    winner = {"A": "model_a", "B": "model_b", "C": "tie"}
    consistent = first == {"A": "B", "B": "A", "C": "C"}[second]
    return (winner[first] if consistent else "tie"), consistent


def winner_from_scores(scores: Mapping[str, float], model_a: str, model_b: str) -> str:
    """``model_a``, ``model_b`` or ``tie`` from two ratings (or correctness values)."""
    if scores[model_a] > scores[model_b]:
        return "model_a"
    if scores[model_b] > scores[model_a]:
        return "model_b"
    return "tie"
