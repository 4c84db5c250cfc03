"""Prompt files: JSONL with a ``prompt`` field, CSV with a ``prompt`` column, or plain text with one
prompt a line."""

from __future__ import annotations

from pathlib import Path

from lmroute._jsonl import parse_line, read_lines
from lmroute.exceptions import DataError


def prompt_file_lines(path: str | Path) -> tuple[bool, list[tuple[int, str]]]:
    """Whether a prompt file is JSONL, and its non-blank lines as (line number, text).

    It is JSONL when it is named ``.jsonl``/``.json`` or its first line starts with ``{``; else
    each line is one prompt. DataError when the file cannot be read or has no line.
    """
    lines = list(read_lines(path, what="prompts"))
    as_json = Path(path).suffix.lower() in (".jsonl", ".json") or lines[0][1].lstrip().startswith("{")
    if as_json and lines[0][1].lstrip().startswith("["):  # valid JSON, of the wrong shape
        raise DataError(
            f"{path} holds a JSON array; prompts are read as JSON Lines: one JSON object per line"
        )
    if as_json and lines[0][1].strip() == "{":  # an object written indented (json.dump's indent=)
        raise DataError(
            f"{path}:{lines[0][0]}: a lone '{{': JSON written over several lines; prompts are read as "
            "JSON Lines: one JSON object per line"
        )
    return as_json, lines


def read_prompts(path: str | Path, *, field: str = "prompt") -> list[str]:
    """Prompts from a JSONL file (objects with ``field``; see :func:`prompt_file_lines`), a CSV file
    named ``.csv`` (its ``field`` column, e.g. a benchmark's) or a text file with one prompt a line.

    In a text file prompt N is line N (what ``lmroute score`` writes as its line N answers it), so
    a blank line before the last prompt is refused, naming the line; blank lines at the end are not
    prompts.
    """
    if Path(path).suffix.lower() == ".csv":
        # Read as text, its header would be a prompt, and a quoted line break would split one.
        from lmroute.data.fields import read_csv_rows

        return [row[field] for _, row in read_csv_rows(path, required=(field,))]
    as_json, lines = prompt_file_lines(path)
    if not as_json:
        for expected, (number, _) in enumerate(lines, start=1):
            if number != expected:
                raise DataError(
                    f"{path}:{expected}: blank line; in a text file every line is one prompt (so that "
                    "output line N answers input line N): remove it, or use JSONL with a 'prompt' field"
                )
        return [line for _, line in lines]
    prompts = []
    for n, line in lines:
        record = parse_line(path, n, line)
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise DataError(f"{path}:{n}: expected an object with a string {field!r} field")
        prompts.append(record[field])
    return prompts
