"""Read prompt lists (JSONL with a ``prompt`` field, or plain text one per line) and write JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lmroute._files import atomic_writer
from lmroute.exceptions import DataError


def read_prompts(path: str | Path, *, field: str = "prompt") -> list[str]:
    """Prompts from a JSONL file (objects with ``field``; ``.jsonl``/``.json`` or lines that start
    with ``{``) or a text file with one prompt per non-blank line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}): is it a binary file?") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"{path} is empty: no prompts")
    as_json = path.suffix.lower() in (".jsonl", ".json") or lines[0][1].lstrip().startswith("{")
    if not as_json:
        return [line for _, line in lines]
    prompts = []
    for n, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise DataError(f"{path}:{n}: expected an object with a string {field!r} field")
        prompts.append(record[field])
    return prompts


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as JSONL atomically: the file appears whole or not at all."""
    with atomic_writer(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)
