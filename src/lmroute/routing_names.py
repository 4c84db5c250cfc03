"""The ``router-<name>-<threshold>`` model strings that select a router and a threshold.

The server and the controller read them from a request's ``model``; calibration writes them.

The threshold is the part after the last ``-``, so router names may themselves contain ``-``
and ``_``. Thresholds are written in positional notation (``0.00001``, never ``1e-05``, whose
``-`` would be read as the separator).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from lmroute.exceptions import InvalidModelNameError

PREFIX = "router-"
EXAMPLE = "router-mf-0.52"
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)\Z")
#: "router-mf-1e-05" splits into name "mf-1e" and threshold "05": a threshold with an exponent.
_EXPONENT = re.compile(r"-(?:\d+\.?\d*|\.\d+)[eE]\Z")


class RouterSpec(NamedTuple):
    """A router name and the threshold at or above which a prompt goes to the strong model."""

    router: str
    threshold: float


def parse_model_name(model: str) -> RouterSpec:
    """``"router-mf-0.52"`` -> ``RouterSpec("mf", 0.52)``; InvalidModelNameError otherwise."""
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
    return RouterSpec(name, parse_threshold(threshold, model=model))


def parse_threshold(text: str, *, model: str | None = None) -> float:
    """A threshold from its decimal text, checked to lie in [0, 1]."""
    where = f" in model {model!r}" if model else ""
    if not _NUMBER.match(text):
        raise InvalidModelNameError(
            f"threshold {text!r}{where} is not a decimal number: write it like 0.52 (in [0, 1])"
        )
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise InvalidModelNameError(f"threshold {text}{where} is outside [0, 1]")
    return value


def format_model_name(router: str, threshold: float) -> str:
    """The model string for a router and threshold, e.g. ``router-mf-0.52``."""
    if not router:
        raise InvalidModelNameError("router name is empty")
    value = float(threshold)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidModelNameError(f"threshold must be in [0, 1], got {threshold!r}")
    # The shortest text that reads back as the same float, positional so the last "-" stays the
    # separator.
    text = np.format_float_positional(value, trim="-")
    return f"{PREFIX}{router}-{text}"
