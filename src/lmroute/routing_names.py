"""The ``router-<name>-<threshold>`` model strings that select a router and how it decides.

The server and the controller read them from a request's ``model``; calibration writes them::

    router-mf-0.52          a fixed threshold: strong when the score is at least 0.52
    router-mf-share-0.30      hold a strong-call share of 0.30 online (the threshold moves)
    router-mf-spend-2.5       hold an estimated spend of $2.50 per 1,000 requests online
    router-mf-lambda-0.02     among N priced models: maximise predicted quality - 0.02 x estimated cost
    router-mf-quality-0.6     among N priced models: the cheapest whose predicted quality is >= 0.6

The value is the part after the last ``-``; a mode, when there is one, the word before it. Router
names may themselves contain ``-`` and ``_`` but may not end in ``-<mode>``. Values are written in
ASCII digits, in positional notation (``0.00001``, never ``1e-05``, whose ``-`` would be read as
the separator).
Each mode's values are checked here (:data:`MODES`); adding a mode is one entry there. The
``lambda`` and ``quality`` modes (:data:`FLEET_MODES`) need a server with N priced models
(:mod:`lmroute.serving.fleet`, issue 14); ``share`` and ``spend`` are held online (issue 16).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lmroute.exceptions import InvalidModelNameError

PREFIX = "router-"
EXAMPLE = "router-mf-0.52"
#: The mode of a plain ``router-<name>-<threshold>``.
THRESHOLD = "threshold"
#: ASCII digits only: ``\d`` and float() also take other scripts' digits (Arabic-Indic U+0660.U+0665
#: read as 0.5), so one value had many model strings.
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
#: "router-mf-1e-05" splits into name "mf-1e" and threshold "05": a threshold with an exponent.
_EXPONENT = re.compile(r"-(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE]\Z")


def _unit_interval(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "is outside [0, 1]"


def _non_negative(value: float) -> str | None:
    return None if math.isfinite(value) and value >= 0.0 else "must be a finite number >= 0"


#: The largest spend target, in US dollars per 1,000 requests (a million dollars a request): beyond
#: any price, and far below where the controller's deficit, the target over a small fraction of
#: a cent, overflows to infinity (it then sent every request to the weak model, and the status
#: and the state file could no longer be written as JSON).
MAX_SPEND = 1e9


def _spend(value: float) -> str | None:
    return None if 0.0 <= value <= MAX_SPEND else f"must be a number from 0 to {MAX_SPEND:.0f}"


class Mode(NamedTuple):
    """What a mode's value means, an example value, and its check (None: fine, else what is wrong)."""

    meaning: str
    example: str
    check: Callable[[float], str | None]


#: The modes by name.
MODES: dict[str, Mode] = {
    THRESHOLD: Mode("the score at or above which a prompt goes to the strong model", "0.52", _unit_interval),
    "share": Mode("the strong-call share to hold online, a fraction in [0, 1]", "0.3", _unit_interval),
    "spend": Mode("the estimated spend to hold online, in US dollars per 1,000 requests", "2.5", _spend),
    "lambda": Mode(
        "among N priced models, the quality worth one US dollar of estimated cost per 1,000 requests",
        "0.02",
        _non_negative,
    ),
    "quality": Mode(
        "among N priced models, the least predicted quality, in [0, 1], of the cheapest model chosen",
        "0.6",
        _unit_interval,
    ),
}
#: The modes that route among N priced models (a server's ``models:``), not between two.
FLEET_MODES = ("lambda", "quality")


class RouterSpec(NamedTuple):
    """A router name, a mode and its value; ``RouterSpec("mf", 0.52)`` is a fixed threshold."""

    router: str
    value: float
    mode: str = THRESHOLD

    @property
    def threshold(self) -> float | None:
        """The fixed threshold, or None when the threshold is found online (a target mode)."""
        return self.value if self.mode == THRESHOLD else None

    @property
    def model(self) -> str:
        """The model string of this spec, e.g. ``router-mf-share-0.3``."""
        return format_model_name(self.router, self.value, mode=self.mode)


def parse_model_name(model: str) -> RouterSpec:
    """``"router-mf-0.52"`` -> ``RouterSpec("mf", 0.52)``, ``"router-mf-share-0.3"`` ->
    ``RouterSpec("mf", 0.3, "share")``; InvalidModelNameError otherwise."""
    if not isinstance(model, str):
        raise InvalidModelNameError(f"model must be a string such as {EXAMPLE!r}, got {model!r}")
    if not model.startswith(PREFIX):
        raise InvalidModelNameError(
            f"model {model!r} does not start with {PREFIX!r}: use router-<router>-<threshold>, "
            f"e.g. {EXAMPLE!r}"
        )
    name, sep, value = model[len(PREFIX) :].rpartition("-")
    if not sep or not name:
        raise InvalidModelNameError(
            f"model {model!r} lacks a router name or threshold: use router-<router>-<threshold>, "
            f"e.g. {EXAMPLE!r}"
        )
    if _EXPONENT.search(name):
        raise InvalidModelNameError(
            f"model {model!r}: write the threshold without an exponent (0.00001, not 1e-05)"
        )
    negative = name.endswith("-")
    router, mode = split_mode(name[:-1] if negative else name)
    if negative:
        # "router-mf--0.1" or "router-mf-spend--5": the last "-" was a minus sign.
        raise InvalidModelNameError(f"model {model!r}: {mode} -{value} is negative ({MODES[mode].meaning})")
    if not router:
        raise InvalidModelNameError(
            f"model {model!r} lacks a router name: use router-<router>-{mode}-<value>"
        )
    return RouterSpec(router, parse_value(value, mode=mode, model=model), mode)


def split_mode(name: str) -> tuple[str, str]:
    """``"mf-share"`` -> ``("mf", "share")``; a name without a mode word keeps the threshold mode."""
    router, sep, last = name.rpartition("-")
    if sep and last in MODES and last != THRESHOLD:
        return router, last
    return name, THRESHOLD


def parse_value(text: str, *, mode: str = THRESHOLD, model: str | None = None) -> float:
    """A mode's value from its decimal text, checked (a threshold or share in [0, 1], a spend >= 0)."""
    where = f" in model {model!r}" if model else ""
    spec = MODES[mode]
    if not _NUMBER.match(text):
        raise InvalidModelNameError(
            f"{mode} {text!r}{where} is not a decimal number: write it like {spec.example} ({spec.meaning})"
        )
    value = float(text)
    problem = spec.check(value)
    if problem:
        raise InvalidModelNameError(f"{mode} {text}{where} {problem}")
    return value


def unknown_mode_hint(name: str) -> str | None:
    """For a router name that is not served, e.g. ``"mf-budget"``: the sentence that says
    ``budget`` is no mode, when the name looks like ``<router>-<word>`` (else None)."""
    router, sep, word = name.rpartition("-")
    if not sep or not router or not word.isalpha():
        return None
    known = ", ".join(m for m in MODES if m != THRESHOLD)
    return (
        f"{word!r} is not a mode of router-<router>-<mode>-<value>: the modes are {known} "
        "(or no mode, for a fixed threshold)"
    )


def check_router_name(router: str) -> None:
    """InvalidModelNameError for a router name that ``router-<name>-<value>`` would not read back."""
    if not router:
        raise InvalidModelNameError("router name is empty")
    if router.endswith("-") or split_mode(router)[1] != THRESHOLD or _EXPONENT.search(router):
        # "router-a--0.5" would read as a negative value, "router-x-share-0.5" as router x's share
        # mode, "router-x-1e-0.5" as a threshold written with an exponent.
        raise InvalidModelNameError(
            f"router name {router!r} ends in '-' or a mode word, or in '-<number>e' (read as an "
            "exponent): rename the router"
        )


def format_model_name(router: str, value: float, *, mode: str = THRESHOLD) -> str:
    """The model string for a router and a threshold (or another mode's value), e.g.
    ``router-mf-0.52`` or ``router-mf-share-0.3``."""
    check_router_name(router)
    if mode not in MODES:
        raise InvalidModelNameError(f"unknown mode {mode!r}; the modes are {', '.join(MODES)}")
    number = float(value)
    problem = MODES[mode].check(number) if math.isfinite(number) else "is not a finite number"
    if problem:
        raise InvalidModelNameError(f"{mode} {value!r} {problem}")
    # The shortest text that reads back as the same float, positional so the last "-" stays the
    # separator.
    text = np.format_float_positional(number, trim="-")
    infix = "" if mode == THRESHOLD else f"{mode}-"
    return f"{PREFIX}{router}-{infix}{text}"
