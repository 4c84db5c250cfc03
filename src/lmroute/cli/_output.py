"""How commands report: results on standard output, notes about files written on standard error."""

from __future__ import annotations

import argparse
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


def refuse_overwriting_inputs(args: argparse.Namespace, options: tuple[str, ...], inputs: list[str]) -> None:
    """A ConfigError when one of the output ``options`` (``args`` attributes: ``"save_scores"`` is
    ``--save-scores``) names a file the command reads: it would replace its own input. Checked
    before the work."""
    from lmroute.exceptions import ConfigError

    for option in options:
        output = getattr(args, option)
        for given in inputs:
            if output and _same_file(output, given):
                flag = "--" + option.replace("_", "-")
                raise ConfigError(f"{flag} {output} is the input file {given}: write the output elsewhere")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): not the same file
        return False
