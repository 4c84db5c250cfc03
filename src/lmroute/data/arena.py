"""Chatbot Arena battles in the schema of ``lmsys-arena-human-preference-55k``.

CSV or parquet with ``prompt`` (a JSON-encoded list of user turns), ``model_a``, ``model_b`` and 0/1
columns ``winner_model_a``, ``winner_model_b``, ``winner_tie``; or ``hf:<dataset id>`` through the
``datasets`` library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmroute import _extras
from lmroute.data.battles import DUPLICATE_ROW, MALFORMED_PROMPT, BattleCollector, ReadResult
from lmroute.data.fields import read_csv_rows
from lmroute.exceptions import ConfigError, DataError, DownloadError

ARENA_COLUMNS = ("prompt", "model_a", "model_b", "winner_model_a", "winner_model_b", "winner_tie")


def read_arena(path: str | Path, *, source: str = "arena", split: str = "train") -> ReadResult:
    """Battles from a Chatbot Arena file in the ``lmsys-arena-human-preference-55k`` schema.

    ``path`` is a ``.csv`` or ``.parquet`` file, or ``hf:<dataset id>`` (e.g.
    ``hf:lmsys/lmsys-arena-human-preference-55k``) to read ``split`` through the ``datasets``
    library (downloads; needs ``pip install datasets``). The prompt is the first user turn; rows
    whose prompt, models, both responses and winner repeat an earlier row are dropped as
    resubmissions. Human votes: ``winner_tie`` becomes ``tie`` (this schema has no "both bad").
    """
    text = str(path)
    if text.startswith("hf:"):
        rows: Iterable[Mapping[str, Any]] = _hf_rows(text[3:], split)
        where: object = text
    else:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            rows = (row for _, row in read_csv_rows(path, required=ARENA_COLUMNS))
        elif suffix in (".parquet", ".pq"):
            rows = _parquet_rows(path, ARENA_COLUMNS)
        else:
            raise DataError(f"{path}: an Arena file must be .csv or .parquet (or hf:<dataset id>)")
        where = path
    collector = BattleCollector(source)
    seen: set[tuple] = set()
    for row in rows:
        winner = _arena_winner(row)
        # A row without a valid winner is no vote to repeat: it is dropped below as unknown winner.
        if winner is not None and "response_a" in row and "response_b" in row:
            key = tuple(str(row.get(c)) for c in ("prompt", "model_a", "model_b", "response_a", "response_b"))
            if (key, winner) in seen:
                collector.drop(DUPLICATE_ROW)
                continue
            seen.add((key, winner))
        prompt = _first_turn(row["prompt"])
        if prompt is None:
            collector.drop(MALFORMED_PROMPT)
            continue
        collector.add(prompt, row["model_a"], row["model_b"], winner)
    return collector.result(where)


def _first_turn(value: object) -> str | None:
    """The first user turn of a JSON-encoded list of turns ("" if it is empty or null)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        # Recursion: "[[[[..." deeper than the parser goes; a bare ValueError: a number of more
        # digits than Python converts
        except (ValueError, RecursionError):
            return None
    if hasattr(value, "tolist"):  # arrays from parquet
        value = value.tolist()
    if not isinstance(value, list):
        return None
    if not value or value[0] is None:
        return ""
    return value[0] if isinstance(value[0], str) else None


def _flag(value: object) -> bool | None:
    """A 0/1 winner column (ints, floats, bools or their text); None when it is neither."""
    if isinstance(value, str):
        value = value.strip().lower()
        value = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0}.get(value, value)
    if isinstance(value, (bool, int, float)) and value in (0, 1):
        return bool(value)
    return None


def _arena_winner(row: Mapping[str, Any]) -> str | None:
    flags = [_flag(row[c]) for c in ("winner_model_a", "winner_model_b", "winner_tie")]
    if None in flags or sum(flags) != 1:  # type: ignore[arg-type]
        return None
    return ("model_a", "model_b", "tie")[flags.index(True)]


def _parquet_rows(path: Path, required: Sequence[str]) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise _extras.missing("pyarrow", purpose=f"reading {path}") from None
    import pyarrow as pa

    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        table = pq.ParquetFile(path)
        header = table.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}")
    columns = [c for c in header if c in (*required, "response_a", "response_b")]
    try:  # a damaged page fails here, though the footer read well
        for batch in table.iter_batches(batch_size=4096, columns=columns):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> DataError:
    # Arrow's messages may span lines ("Couldn't deserialize thrift: ...\nDeserializing page ...")
    return DataError(f"{path} is not a readable parquet file: {' '.join(str(exc).split())}")


def _hf_rows(dataset: str, split: str) -> Iterator[Mapping[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"reading hf:{dataset} needs the datasets library: pip install datasets "
            "(or download the dataset's CSV/parquet file and pass its path)"
        ) from None
    try:
        data = datasets.load_dataset(dataset, split=split)
    except Exception as exc:  # the hub client raises many types; all mean "could not get it"
        raise DownloadError(f"could not load {dataset!r} (split {split!r}) from the hub: {exc}") from exc
    missing = [c for c in ARENA_COLUMNS if c not in data.column_names]
    if missing:
        raise DataError(f"hf:{dataset}: missing column(s) {', '.join(missing)}; found {data.column_names}")
    yield from data
