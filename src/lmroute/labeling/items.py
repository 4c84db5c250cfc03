"""The prompts a labelling run works on, read from a prompt file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lmroute._jsonl import parse_line
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
    """Prompts from a text file (one a line) or JSONL.

    JSONL fields: the prompt is ``prompt_field`` (default ``prompt``, else ``question`` as in
    GSM8K), the reference ``reference_field`` (default ``reference``, else ``answer``), the id
    ``id`` (default: the item's position). ``limit`` keeps the first items.
    """
    if limit is not None and limit < 1:  # else "no prompts to label", as if the file were empty
        raise ConfigError(f"the limit must be at least 1 prompt, got {limit}")
    as_json, lines = prompt_file_lines(path)
    items: list[LabelItem] = []
    for n, line in lines:
        if limit is not None and len(items) >= limit:
            break
        if not as_json:
            items.append(LabelItem(str(len(items)), line))
            continue
        record = parse_line(path, n, line)
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: expected a JSON object")
        p_field = prompt_field or ("prompt" if "prompt" in record else "question")
        prompt = record.get(p_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{path}:{n}: expected a non-empty string field {p_field!r}")
        r_field = reference_field or ("reference" if "reference" in record else "answer")
        reference = record.get(r_field)
        items.append(
            LabelItem(
                str(record.get("id", len(items))), prompt, None if reference is None else str(reference)
            )
        )
    seen = Counter(item.id for item in items)
    duplicates = [i for i, count in seen.items() if count > 1]
    if duplicates:
        raise DataError(f"{path}: ids must be unique; repeated: {', '.join(duplicates[:5])}")
    return items
