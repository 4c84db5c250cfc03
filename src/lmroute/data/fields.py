"""CSV rows and score values read with errors that name the file and the row or line."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from lmroute._files import not_utf8_at, read_failures
from lmroute.exceptions import DataError


def read_csv_rows(path: str | Path, *, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) of each data row of a UTF-8 CSV file with the ``required`` columns, streamed.

    ``line`` is the file line the row ends on (the header is line 1), so errors count lines as
    JSONL errors do. A row with too many or too few fields, a column name given twice, malformed CSV,
    a file that is missing, not UTF-8 or without data rows: a DataError naming the file (and the line).
    """
    csv.field_size_limit(2**31 - 1)  # rows may carry whole model responses
    path = Path(path)
    rows = 0
    try:
        # newline="": rows end at line endings only, as CSV quoting requires (never at U+2028 etc.)
        with read_failures(str(path), DataError), open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if header is None:
                raise DataError(f"{path} is empty")
            # DictReader keeps the last of two equal column names: the other's cells would vanish.
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise DataError(f"{path}:1: column(s) {', '.join(map(repr, repeated))} appear more than once")
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{path}:{reader.line_num}: wrong number of fields")
                rows += 1
                yield reader.line_num, row
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text ({not_utf8_at(path)}): is it a binary file?") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    if rows == 0:
        raise DataError(f"{path} has a header but no rows")


def score_value(value: object, path: Path, line: int, column: str) -> float:
    """A score as a float: a finite number, or a string of a number or a boolean (``"0.5"``,
    ``"True"``: CSV cells, the reference's format). A JSON ``true``/``false`` is refused: a score is
    a number (1 and 0 for right and wrong), and a boolean there is more often a mistake."""
    if isinstance(value, bool):
        raise DataError(
            f"{path}:{line}: score of {column!r} is {str(value).lower()}, not a number "
            "(write 1 or 0 for right or wrong)"
        )
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return float(lowered == "true")
    if isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # Overflow: a JSON integer past a float's range
            number = math.nan
        if math.isfinite(number):
            return number
    raise DataError(f"{path}:{line}: score of {column!r} is not a number: {value!r}")


def cost_value(value: object, path: Path, line: int, model: str) -> float:
    """A cost as a float: a finite number >= 0 (not a boolean, nor a string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer past a float's range
            number = math.inf
        if math.isfinite(number) and number >= 0:
            return number
    raise DataError(f"{path}:{line}: cost of {model!r} must be a number >= 0, got {value!r}")
