"""How commands report: results on standard output, notes about files written on standard error."""

from __future__ import annotations

import os
import sys


def note(message: str) -> None:
    """A line for the person at the terminal, kept out of the results (standard error)."""
    print(message, file=sys.stderr)


def wrote(path: str | os.PathLike[str]) -> None:
    """Say that ``path`` was written."""
    note(f"wrote {path}")


def write_json_report(path: str, data: object) -> None:
    """Write ``data`` to the JSON file ``path`` and say so."""
    from lmroute._files import write_json

    write_json(path, data)
    wrote(path)
