"""JSONL files: the one reader and the one writer of the package.

A line ends at ``\\n``, ``\\r\\n`` or ``\\r`` and nowhere else, so files are read by iterating
the file object. ``str.splitlines`` would also end lines at U+2028, U+2029, U+0085 and the
controls ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``; a JSON string may hold the first three as they
are (:func:`encode_line` writes them so), and splitting there tore records apart.

Every failure to read is a :class:`~lmroute.exceptions.DataError` naming the file and, for a bad
line, its number. What a record must contain is the caller's to check.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lmroute._files import atomic_writer, not_utf8_at, read_failures, write_failures
from lmroute.exceptions import DataError

#: A surrogate code point: in a str it is always unpaired (a pair is one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_lines(path: str | Path, *, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line ending) of each non-blank line of a UTF-8 file, streamed.

    A byte-order mark is skipped. ``what`` says what the file holds ("battles", "prompts"): a
    file without a non-blank line raises ``DataError("<path> is empty: no <what>")``.
    """
    path = Path(path)
    found = False
    try:
        # newline="": the three line endings are recognised and handed back untranslated.
        with read_failures(str(path), DataError), open(path, encoding="utf-8-sig", newline="") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    found = True
                    yield number, line.rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text ({not_utf8_at(path)}): is it a binary file?") from None
    if not found:
        raise DataError(f"{path} is empty: no {what}")


def parse_line(path: str | Path, number: int, line: str) -> Any:
    """The JSON value of line ``number`` of ``path``; DataError naming both when it is not JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    except RecursionError:  # "[[[[..." deeper than the parser recurses: a damaged line too
        raise DataError(f"{path}:{number}: not valid JSON (nested too deeply)") from None
    except ValueError:  # an integer longer than Python converts (sys.set_int_max_str_digits)
        limit = sys.get_int_max_str_digits()
        raise DataError(f"{path}:{number}: not valid JSON (a number of over {limit} digits)") from None


def read_jsonl(path: str | Path, *, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of the JSONL file at ``path``, streamed.

    Errors as :func:`read_lines` and :func:`parse_line` raise them.
    """
    for number, line in read_lines(path, what=what):
        yield number, parse_line(path, number, line)


def read_jsonl_objects(path: str | Path, *, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """As :func:`read_jsonl`, for files of JSON objects: any other value is a DataError."""
    for number, record in read_jsonl(path, what=what):
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        yield number, record


def encode_line(record: Any, *, ascii_only: bool = False) -> str:
    """``record`` as one JSONL line (ending in ``\\n``); non-ASCII text is written as it is, unless
    the record holds an unpaired UTF-16 surrogate (read from a ``"\\ud83d"`` escape): no UTF-8
    file takes that character, so such a line is written all escaped, as it came. ``ascii_only``
    escapes every line so."""
    line = json.dumps(record, ensure_ascii=ascii_only)
    if _SURROGATE.search(line):
        line = json.dumps(record)
    return line + "\n"


def write_jsonl(path: str | Path, records: Iterable[Any]) -> Path:
    """Write records as JSONL atomically: the file appears whole or not at all."""
    with atomic_writer(path, "w", encoding="utf-8") as f:
        for record in records:
            line = encode_line(record)
            with write_failures(path):  # a full disk, met once the buffer is passed on
                f.write(line)
    return Path(path)


def append_line(fd: int, record: Any) -> None:
    """Append ``record`` as one line to the file open at ``fd`` (``O_APPEND``), then fsync.

    A writer killed mid-line leaves at most that one torn last line behind.
    """
    view = memoryview(encode_line(record).encode("utf-8"))
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
