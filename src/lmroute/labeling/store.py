"""A resumable store of finished upstream calls: one JSONL line per call, appended and synced.

Each record is keyed by (model, prompt id, request hash), where the hash covers everything that
shapes the answer (upstream model id, messages, sampling parameters). A rerun looks a call up
before making it, so a finished call is never paid for twice, and a changed prompt, template or
parameter makes a new call instead of reusing a stale answer. A run killed mid-write leaves at
most one torn last line, which the next open cuts off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lmroute._files import write_failures
from lmroute._jsonl import append_line, read_jsonl
from lmroute.exceptions import ConfigError, DataError

#: The two stores in a run folder: finished model calls and finished judge calls.
RESPONSES_FILE = "responses.jsonl"
JUDGEMENTS_FILE = "judgements.jsonl"


def request_hash(request: Mapping[str, Any]) -> str:
    """A short stable digest of a request (keys sorted, so dict order does not matter)."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


class CallStore:
    """Finished calls of one kind (responses or judgements) in an append-only JSONL file.

    Open it with :meth:`open` (which reads what is there and takes an exclusive lock, so two runs
    cannot pay for the same calls at once) and use it as a context manager to release it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._fd: int | None = None

    @classmethod
    def open(cls, path: str | Path) -> CallStore:
        """Load the finished calls at ``path`` (created if missing) and lock it for appending."""
        import fcntl

        store = cls(path)
        with write_failures(store.path):  # a folder in its place, a read-only run folder: one line
            store.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(store.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{store.path} is in use by another lmroute label run; wait for it or use another --out"
            ) from None
        store._fd = fd
        store._load()
        return store

    def _load(self) -> None:
        end = _cut_torn_line(self.path)
        if end == 0:
            return
        try:
            for number, record in read_jsonl(self.path, what="call records"):
                try:
                    key = _key(record)
                    # Its answer is what a rerun reuses: without it the run failed with a traceback.
                    if not isinstance(record["text"], str):
                        raise TypeError
                except (KeyError, TypeError):
                    raise DataError(f"{self.path}:{number} is not a call record") from None
                self._records[key] = record
        except DataError as exc:
            raise DataError(f"{exc}; move the file away to start afresh") from None

    def get(self, model: str, prompt_id: str, req_hash: str) -> dict[str, Any] | None:
        """The stored record of this call, or None if it was never finished."""
        return self._records.get((model, prompt_id, req_hash))

    def append(self, record: dict[str, Any]) -> None:
        """Store a finished call durably: one whole line, then fsync; a WriteError naming the
        file when it cannot be written (a full disk), the file as it was before."""
        if self._fd is None:
            raise RuntimeError("CallStore.append() before open() or after close()")
        with write_failures(self.path):
            end = os.fstat(self._fd).st_size
            try:
                append_line(self._fd, record)
            except OSError:
                # A part of the line left behind would join the next call's line into one that
                # no run can read: the whole store refused.
                os.ftruncate(self._fd, end)
                raise
        self._records[_key(record)] = record

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._records.values())

    def close(self) -> None:
        """Release the lock and the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryStore(CallStore):
    """Some finished calls held in memory, with nothing on disk: a Ray worker's share of a run
    folder's store (the calls of its items). What is appended is kept in :attr:`added` for the
    process that owns the folder to store."""

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__("<memory>")
        for record in records:
            self._records[_key(record)] = record
        self.added: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        """Keep a finished call (in :attr:`added` too)."""
        self._records[_key(record)] = record
        self.added.append(record)


def _key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    return (record["model"], record["prompt_id"], record["request_hash"])


def _cut_torn_line(path: Path) -> int:
    """Cut what follows the last newline (a line torn by a run killed while writing it); the
    file's new size."""
    with open(path, "rb") as f:
        size = end = f.seek(0, os.SEEK_END)
        while end > 0:  # backwards a block at a time: a torn line is short, a store is not
            start = max(0, end - 65536)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
    if end < size:
        os.truncate(path, end)
    return end
