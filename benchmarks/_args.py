"""Command-line types and signal handling shared by the benchmark scripts (run as ``python
benchmarks/X.py``, so this folder is on the import path)."""

from __future__ import annotations

import argparse
import signal


def _whole(text: str, *, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive(text: str) -> int:
    """A whole number of at least 1: a count of 0 ends in argparse's one-line usage error instead of
    a division by zero or an empty median after the setup has run."""
    return _whole(text, least=1)


def non_negative(text: str) -> int:
    """A whole number of at least 0, for an optional extra measurement that 0 leaves out (a negative
    one was a traceback after all the other timing)."""
    return _whole(text, least=0)


def positive_seconds(text: str) -> float:
    """A finite time limit above 0: a limit of 0 (or NaN) sends no request, and the figures of an
    empty run end in a division by zero or in checks failed for no reason given."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def stop_on_sigterm() -> None:
    """Make SIGTERM (``timeout``, ``kill``, a cancelled CI job) interrupt the script as Ctrl-C does, so
    its ``finally`` blocks stop the servers it started; by default Python dies at once and leaves them
    running, holding their ports and cores."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
