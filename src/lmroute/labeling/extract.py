"""Golden grading: pull the final answer out of a free-form response and compare it with a reference.

Graders, by name:

``gsm8k``
    The rule of RouteLLM's (and SGLang's) GSM8K evaluation, which produced the published
    ``gsm8k_responses.csv`` labels: drop thousands commas, take the *last run of digits* in the
    response and compare it with the last run of digits of the reference (``#### N``). Signs and
    decimals are ignored, so ``$20.00`` reads as ``0`` and ``0.5`` as ``5``. Use it to label data
    comparably with the paper's GSM8K numbers.
``number``
    A stricter final-number rule: the number after the last ``#### ``, else after ``\\boxed{`` or
    "answer is", else the last number in the text; signs, decimals and ``$`` are honoured and
    numbers compare by value (``$20.00`` equals ``20``).
``choice``
    A multiple-choice letter as in MMLU (the reference read the first character of a one-token
    answer; a lone letter counts in either case); longer answers are read from "answer is (B)",
    "Answer: B", a leading "B." or a single "(B)".
``exact``
    Short answers: equal after normalising case, punctuation, articles and spaces, or the
    response's stated final answer ("Answer: ...", "The answer is ...") equals the reference so
    normalised.

``auto`` picks one by the reference's form (:func:`guess_grader`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from lmroute.exceptions import ConfigError

GRADERS = ("gsm8k", "number", "choice", "exact")

_DIGITS = re.compile(r"\d+")
_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_HASHES = re.compile(r"####\s*(" + _NUMBER + ")")
_BOXED = re.compile(r"\\boxed\{\s*(" + _NUMBER + ")")
# No two quantifiers here may take the same run of spaces (see _CHOICE_ANSWER).
_ANSWER_IS = re.compile(r"answer is[:\s]*(?:\*+\s*)?(" + _NUMBER + ")", re.IGNORECASE)
# Not inside a word or after a decimal point, so "x2" and the "5" of "0.5" are not numbers.
_ANY_NUMBER = re.compile(r"(?<![\w.])(" + _NUMBER + ")")


def gsm8k_reference_value(text: str) -> int | None:
    """The reference rule's value of ``text``: its last run of digits once commas are removed."""
    runs = _DIGITS.findall(text.replace(",", ""))
    return int(runs[-1]) if runs else None


def extract_number(text: str) -> Decimal | None:
    """The final number of a response (``#### N``, ``\\boxed{N}``, "answer is N", else the last)."""
    for pattern in (_HASHES, _BOXED, _ANSWER_IS, _ANY_NUMBER):
        found = pattern.findall(text)
        if found:
            return _to_decimal(found[-1])
    return None


def reference_number(answer: str) -> Decimal | None:
    """The number of a GSM8K-style reference: after its last ``####``, else its final number."""
    return extract_number(answer)


def _to_decimal(token: str) -> Decimal | None:
    cleaned = token.replace(",", "").replace("$", "").replace(" ", "")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


# Only the word "answer" ignores case: "the answer is a bit unclear" names no letter. Each run of
# spaces has one quantifier that can take it: with two in a row ("\s*[\s*(\[]*") a response that
# ran on in spaces after "answer" was split every way before it was refused, for seconds to hours.
# "I" is also the pronoun: in "Answer: I think it's (C)" it is no answer (with ten options it is one).
_PRONOUN_I = r"I(?:['’]|\s+(?:am|believe|can|chose|choose|do|feel|guess|have|know|must|need|pick|"
_PRONOUN_I += r"reckon|say|select|should|suppose|think|will|would)\b)"
_CHOICE_ANSWER = re.compile(r"(?i:answer)(?:\s+is)?(?:\s*[:\-])?[\s*(\[]*(?!" + _PRONOUN_I + r")([A-J])\b")
_CHOICE_LEADING = re.compile(r"^\s*[*(\[]*([A-J])(?:[*)\].:]|\s*$|\s*\n)")
_CHOICE_PAREN = re.compile(r"\(([A-J])\)")
# A response that is one letter and nothing else commits to it in either case ("b"); elsewhere a
# lower-case "a" is more often the article.
_CHOICE_ALONE = re.compile(r"\s*[*(\[]*([A-Ja-j])[*)\].:]*\s*")


def extract_choice(text: str, *, letters: str = "ABCD") -> str | None:
    """The multiple-choice letter a response commits to, or None when it names none (or several)."""
    allowed = set(letters.upper())
    stated = [m for m in _CHOICE_ANSWER.findall(text) if m in allowed]
    if stated:
        return stated[-1]
    alone = _CHOICE_ALONE.fullmatch(text)
    if alone:
        letter = alone.group(1).upper()
        return letter if letter in allowed else None
    leading = _CHOICE_LEADING.match(text)
    if leading and leading.group(1) in allowed:
        return leading.group(1)
    in_parens = {m for m in _CHOICE_PAREN.findall(text) if m in allowed}
    return in_parens.pop() if len(in_parens) == 1 else None


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# "Answer: X", "The answer is: X" and "The answer is X" ("The answer is Paris." was graded wrong).
_FINAL_ANSWER = re.compile(r"(?:final answer|answer)(?:\s+is\b)?(?:\s*[:\-]|(?<=is))\s*(.+)", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's normalisation)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def match_short_answer(response: str, reference: str) -> bool:
    """Whether a short response (or its stated final answer) equals the reference, normalised."""
    target = normalize_answer(reference)
    if not target:
        return False
    if normalize_answer(response) == target:
        return True
    stated = _FINAL_ANSWER.findall(response)
    return bool(stated) and normalize_answer(stated[-1].strip().splitlines()[0]) == target


def _grade_gsm8k(response: str, reference: str) -> tuple[bool, str | None]:
    expected = gsm8k_reference_value(reference)
    got = gsm8k_reference_value(response)
    return expected is not None and got == expected, None if got is None else str(got)


def _grade_number(response: str, reference: str) -> tuple[bool, str | None]:
    expected = reference_number(reference)
    got = extract_number(response)
    return expected is not None and got == expected, None if got is None else str(got)


def _grade_choice(response: str, reference: str) -> tuple[bool, str | None]:
    expected = reference.strip().strip("()").upper()
    got = extract_choice(response, letters="ABCDEFGHIJ")
    return got is not None and got == expected, got


def _grade_exact(response: str, reference: str) -> tuple[bool, str | None]:
    return match_short_answer(response, reference), normalize_answer(response)[:200]


_GRADERS: dict[str, Callable[[str, str], tuple[bool, str | None]]] = {
    "gsm8k": _grade_gsm8k,
    "number": _grade_number,
    "choice": _grade_choice,
    "exact": _grade_exact,
}


def guess_grader(reference: str) -> str:
    """The grader a reference calls for: ``#### N`` or a whole number -> gsm8k, a decimal one ->
    number, one letter A-J (either case) -> choice, anything else -> exact."""
    stripped = reference.strip()
    number = _to_decimal(stripped)
    # Decimal also reads "Infinity", "inf" and "NaN": words, with no digits for gsm8k to compare,
    # so no answer to them was ever right.
    if "####" in stripped or (number is not None and number.is_finite()):
        # gsm8k reads a decimal's last digits alone: against 12.5 the answer 3.5 was right, 12.5
        # and 12 wrong against 12.0.
        value = reference_number(stripped)
        decimal = value is not None and value.is_finite() and int(value.as_tuple().exponent) < 0
        return "number" if decimal else "gsm8k"
    # In either case, as the choice grader reads it: a reference "a" (MathQA's options are lower
    # case) graded as a short answer was the article, dropped, and no answer ever matched it.
    if re.fullmatch(r"\(?[A-Ja-j]\)?", stripped):
        return "choice"
    return "exact"


def reads_reference(reference: str, *, grader: str = "auto") -> bool:
    """Whether ``grader`` reads an answer from ``reference``. One it cannot (a choice reference that
    is no letter, a gsm8k or number one without a number, an exact one that normalises to nothing)
    grades every response to it wrong."""
    name = guess_grader(reference) if grader == "auto" else grader
    if name == "choice":
        expected = reference.strip().strip("()").upper()
        return len(expected) == 1 and expected in "ABCDEFGHIJ"
    if name == "gsm8k":
        return gsm8k_reference_value(reference) is not None
    if name == "number":
        return reference_number(reference) is not None
    return bool(normalize_answer(reference))


def grade(response: str, reference: str, *, grader: str = "auto") -> tuple[bool, str | None]:
    """Whether ``response`` is correct against ``reference``, and the answer read from it.

    ``grader`` is one of :data:`GRADERS` or ``auto`` (chosen per reference by :func:`guess_grader`).
    """
    name = guess_grader(reference) if grader == "auto" else grader
    try:
        fn = _GRADERS[name]
    except KeyError:
        raise ConfigError(f"unknown grader {grader!r}; use auto or one of {', '.join(GRADERS)}") from None
    return fn(response, reference)
