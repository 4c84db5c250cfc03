"""The prompts a labelling run works on, read from a prompt file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmroute._jsonl import parse_line
from lmroute.data.fields import read_csv_rows
from lmroute.data.prompts import prompt_file_lines
from lmroute.exceptions import ConfigError, DataError


@dataclass(frozen=True)
class LabelItem:
    """One prompt to collect responses for, with its reference answer in golden mode."""

    id: str
    prompt: str
    reference: str | None = None


def read_items(
    path: str | Path,
    *,
    prompt_field: str | None = None,
    reference_field: str | None = None,
    limit: int | None = None,
) -> list[LabelItem]:
    """Prompts from a text file (one a line), JSONL or a CSV file named ``.csv``.

    JSONL fields and CSV columns: the prompt is ``prompt_field`` (default ``prompt``, else
    ``question`` as in GSM8K), the reference ``reference_field`` (default ``reference``, else
    ``answer``), the id ``id`` (default: the item's position). ``limit`` keeps the first items.
    """
    if limit is not None and limit < 1:  # else "no prompts to label", as if the file were empty
        raise ConfigError(f"the limit must be at least 1 prompt, got {limit}")
    items: list[LabelItem] = []
    positional: set[str] = set()  # ids given by position, to a prompt with none
    for n, record in _records(path):
        if limit is not None and len(items) >= limit:
            break
        if isinstance(record, str):
            if prompt_field or reference_field:
                # Else ignored: a TSV's header and rows, say, were labelled as prompts.
                named = "prompt" if prompt_field else "reference"
                raise ConfigError(
                    f"{path} is read as text, one prompt a line: a {named} field names a JSONL "
                    "field or a .csv column"
                )
            items.append(LabelItem(str(len(items)), record))
            continue
        p_field = prompt_field or ("prompt" if "prompt" in record else "question")
        prompt = record.get(p_field)
        if not isinstance(prompt, str) or not prompt.strip():
            # Without a field named, either default: one named alone read as the file's field.
            wanted = repr(p_field) if prompt_field else "'prompt' (or 'question')"
            raise DataError(f"{path}:{n}: expected a non-empty string field {wanted}")
        r_field = reference_field or ("reference" if "reference" in record else "answer")
        reference = record.get(r_field)
        # a null id is one not given, as a null reference is and an empty CSV cell is
        given_id = record.get("id")
        item_id = str(len(items)) if given_id is None else str(given_id)
        if given_id is None:
            positional.add(item_id)
        items.append(LabelItem(item_id, prompt, None if reference is None else str(reference)))
    seen = Counter(item.id for item in items)
    duplicates = [i for i, count in seen.items() if count > 1]
    if duplicates:
        # An id given once that clashes with a prompt's position alone read as a given id repeated.
        why = (
            " (a prompt without an id has its position, from 0, as id: give every prompt an id, or none)"
            if positional.intersection(duplicates)
            else ""
        )
        raise DataError(f"{path}: ids must be unique; repeated: {', '.join(duplicates[:5])}{why}")
    return items


def _records(path: str | Path) -> Iterator[tuple[int, str | dict[str, Any]]]:
    """(line, record) of a prompt file: a JSON object, a CSV row, or a text line's prompt."""
    if Path(path).suffix.lower() == ".csv":
        # Read as text, a CSV's header would be a prompt and each row one, its cells glued. An
        # empty cell is a field the row does not have (no reference, no id), as in JSONL.
        for n, row in read_csv_rows(path, required=()):
            yield n, {column: cell for column, cell in row.items() if cell != ""}
        return
    as_json, lines = prompt_file_lines(path)
    for n, line in lines:
        if not as_json:
            yield n, line
            continue
        record = parse_line(path, n, line)
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: expected a JSON object")
        yield n, record
