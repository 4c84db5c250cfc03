"""The ``router-<name>-<threshold>`` model strings that select a router and a threshold, and the
``router-<name>-<mode>-<value>`` strings of the other routing modes.

The server and the controller read them from a request's ``model``; calibration writes them.
Modes (:data:`MODES`): ``lambda`` routes among N models maximising predicted quality minus
``value`` times the estimated cost (``router-mf-lambda-0.02``); ``quality`` takes the cheapest model
whose predicted quality is at least ``value`` (``router-mf-quality-0.6``). A word before the value
that is a known mode is read as the mode, so a router's name cannot end in ``-lambda`` or ``-quality``.

The threshold is the part after the last ``-``, so router names may themselves contain ``-``
and ``_``. Thresholds are written in positional notation (``0.00001``, never ``1e-05``, whose
``-`` would be read as the separator).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import NamedTuple

import numpy as np

from lmroute.exceptions import InvalidModelNameError

PREFIX = "router-"
EXAMPLE = "router-mf-0.1159"
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)\Z")
#: "router-mf-1e-05" splits into name "mf-1e" and threshold "05": a threshold with an exponent.
_EXPONENT = re.compile(r"-(?:\d+\.?\d*|\.\d+)[eE]\Z")


#: Routing modes besides the fixed threshold, and the range of each one's value.
MODES = {"lambda": (0.0, math.inf), "quality": (0.0, 1.0)}
THRESHOLD = "threshold"


class RouterSpec(NamedTuple):
    """A router name and the threshold at or above which a prompt goes to the strong model; for
    another mode (``lambda``, ``quality``), that mode's value in place of the threshold."""

    router: str
    threshold: float
    mode: str = THRESHOLD

    @property
    def value(self) -> float:
        """The threshold, or the value of the mode."""
        return self.threshold


def parse_model_name(model: str) -> RouterSpec:
    """``"router-mf-0.1159"`` -> ``RouterSpec("mf", 0.1159)``; InvalidModelNameError otherwise."""
    if not isinstance(model, str):
        raise InvalidModelNameError(f"model must be a string such as {EXAMPLE!r}, got {model!r}")
    if not model.startswith(PREFIX):
        raise InvalidModelNameError(
            f"model {model!r} does not start with {PREFIX!r}: use router-<router>-<threshold>, "
            f"e.g. {EXAMPLE!r}"
        )
    name, sep, threshold = model[len(PREFIX) :].rpartition("-")
    if not sep or not name:
        raise InvalidModelNameError(
            f"model {model!r} lacks a router name or threshold: use router-<router>-<threshold>, "
            f"e.g. {EXAMPLE!r}"
        )
    if _EXPONENT.search(name):
        raise InvalidModelNameError(
            f"model {model!r}: write the threshold without an exponent (0.00001, not 1e-05)"
        )
    router, sep, mode = name.rpartition("-")
    if sep and mode in MODES:
        if not router:
            raise InvalidModelNameError(
                f"model {model!r} lacks a router name: use router-<router>-{mode}-<value>"
            )
        return RouterSpec(router, parse_mode_value(mode, threshold, model=model), mode)
    return RouterSpec(name, parse_threshold(threshold, model=model))


def check_mode(router: str, known_routers: Collection[str]) -> None:
    """InvalidModelNameError when ``router`` (parsed from a model name) is no known router but
    reads as a known router and an unknown mode (``mf-budget``), listing the known modes."""
    if router in known_routers:
        return
    base, sep, mode = router.rpartition("-")
    if sep and base in known_routers and mode.isalpha():
        raise InvalidModelNameError(
            f"unknown routing mode {mode!r}; known modes: {', '.join(MODES)} "
            f"(router-{base}-<mode>-<value>), or a threshold (router-{base}-<threshold>)"
        )


def parse_mode_value(mode: str, text: str, *, model: str | None = None) -> float:
    """The value of a routing mode from its decimal text, checked against the mode's range."""
    where = f" in model {model!r}" if model else ""
    low, high = MODES[mode]
    if not _NUMBER.match(text):
        raise InvalidModelNameError(
            f"{mode} value {text!r}{where} is not a decimal number (write it like 0.5)"
        )
    value = float(text)
    if not low <= value <= high:
        span = f"[{low:g}, {high:g}]" if math.isfinite(high) else f"at least {low:g}"
        raise InvalidModelNameError(f"{mode} value {text}{where} must be {span}")
    return value


def parse_threshold(text: str, *, model: str | None = None) -> float:
    """A threshold from its decimal text, checked to lie in [0, 1]."""
    where = f" in model {model!r}" if model else ""
    if not _NUMBER.match(text):
        raise InvalidModelNameError(
            f"threshold {text!r}{where} is not a decimal number: write it like 0.1159 (in [0, 1])"
        )
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise InvalidModelNameError(f"threshold {text}{where} is outside [0, 1]")
    return value


def format_model_name(router: str, threshold: float) -> str:
    """The model string for a router and threshold, e.g. ``router-mf-0.1159``."""
    if not router:
        raise InvalidModelNameError("router name is empty")
    value = float(threshold)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidModelNameError(f"threshold must be in [0, 1], got {threshold!r}")
    # The shortest text that reads back as the same float, positional so the last "-" stays the
    # separator.
    text = np.format_float_positional(value, trim="-")
    return f"{PREFIX}{router}-{text}"


def format_mode_name(router: str, mode: str, value: float) -> str:
    """The model string of a routing mode, e.g. ``router-mf-lambda-0.02``."""
    if not router:
        raise InvalidModelNameError("router name is empty")
    if mode not in MODES:
        raise InvalidModelNameError(f"unknown routing mode {mode!r}; known modes: {', '.join(MODES)}")
    low, high = MODES[mode]
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise InvalidModelNameError(f"{mode} value {value!r} is out of range")
    return f"{PREFIX}{router}-{mode}-{np.format_float_positional(number, trim='-')}"
