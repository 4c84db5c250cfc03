"""How commands report: results on standard output, notes about files written on standard error."""

from __future__ import annotations

import argparse
import codecs
import errno
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def print_jsonl(records: Iterable[Any]) -> None:
    """Print ``records`` as JSONL on standard output. Where it is not UTF-8 (PYTHONIOENCODING=ascii,
    a latin-1 or Windows console) non-ASCII characters are JSON escapes (``\\u00e9``), the same text
    to any JSON reader: printed as they are, the first one the encoding lacks ended the command
    with a traceback, and the others made a file in neither UTF-8 nor JSON's encoding."""
    from lmroute._jsonl import encode_line

    ascii_only = not _is_utf8(getattr(sys.stdout, "encoding", None))
    for record in records:
        print(encode_line(record, ascii_only=ascii_only), end="")


def _is_utf8(encoding: str | None) -> bool:
    if encoding is None:  # a stream of text, not bytes (io.StringIO)
        return True
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


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


def check_output(path: str | os.PathLike[str] | None, *, folder: bool = False) -> None:
    """A WriteError, before the work, when ``path`` (if given) can be seen not to be writable as an
    output file, or with ``folder`` an output folder: a folder where a file is wanted, a file where a
    folder is wanted, or a file where a folder above it should be. Creates nothing; the write itself
    still reports what cannot be seen now (no permission, a full disk)."""
    from lmroute._files import write_failures

    if path is None:
        return
    path = Path(path)
    # Raised as the errors the write would meet, so that write_failures words them the same way.
    with write_failures(path):
        nearest = next((p for p in path.parents if p.exists()), None)  # a file there is in the way
        if nearest is not None and not nearest.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(nearest))
        if folder and path.exists() and not path.is_dir():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))


def refuse_overwriting_inputs(args: argparse.Namespace, options: tuple[str, ...], inputs: list[str]) -> None:
    """A ConfigError when one of the output ``options`` (``args`` attributes: ``"save_scores"`` is
    ``--save-scores``) names a file the command reads, which it would replace, or the file of
    another of them, which the later write would replace. Checked before the work."""
    from lmroute.exceptions import ConfigError

    written: list[tuple[str, str]] = []
    for option in options:
        output = getattr(args, option)
        if not output:
            continue
        flag = "--" + option.replace("_", "-")
        for given in inputs:
            if _same_file(output, given):
                raise ConfigError(f"{flag} {output} is the input file {given}: write the output elsewhere")
        for other_flag, other in written:
            if os.path.abspath(output) == os.path.abspath(other) or _same_file(output, other):
                raise ConfigError(
                    f"{other_flag} and {flag} both name {output}: one would overwrite the other; "
                    "give each its own file"
                )
        written.append((flag, output))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): not the same file
        return False
