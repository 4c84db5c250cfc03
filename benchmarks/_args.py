"""Command-line types shared by the benchmark scripts (run as ``python benchmarks/X.py``, so this
folder is on the import path)."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """A whole number of at least 1: a count of 0 ends in argparse's one-line usage error instead of
    a division by zero or an empty median after the setup has run."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
