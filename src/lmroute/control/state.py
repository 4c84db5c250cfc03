"""The control state file: written whole or not at all, and never trusted blindly when read.

The state is one JSON object (``{"format": "lmroute-control", "version": 1, ...}``) written to a
temporary file, synced to disk and renamed over the old one, so a crash mid-write (of the process
or of the machine) leaves the previous state. A file that cannot be read back (not JSON, another
format, a newer version, numbers that do not fit) is *quarantined*: renamed to
``<name>.corrupt-<time>`` beside it, where a person can look at it, and the caller starts afresh
and says so. Reading never raises for a bad file.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from lmroute._files import write_atomic, write_failures
from lmroute.exceptions import ConfigError, WriteError

FORMAT = "lmroute-control"
VERSION = 1


def write_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (with the format and version added) to ``path`` atomically; a WriteError
    when it cannot be, the file system's refusal or a state JSON cannot hold (a number that is not
    finite), and the file keeps what it had."""
    body = {"format": FORMAT, "version": VERSION, **state}
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise WriteError(f"cannot write {path}: the state is not valid JSON ({exc})") from None
    # Durable: a save is rewritten every save_every decisions while serving, so a power loss is
    # likely to fall soon after one, which the rename alone could leave empty or torn on disk.
    write_atomic(path, text.encode("utf-8"), durable=True)


def check_state_path(path: str | Path) -> None:
    """ConfigError when ``path`` is a folder: it is not a bad state file to move aside (that moved
    the folder and its files away, and saved the state under its name), but a mistake in the config;
    or when no state can be saved there (a file in the way of its folder, no permission), which
    would otherwise show only at the first save, with the server already serving."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"control.state_file {path} is a folder: name a file, such as {path / 'control.json'}"
        )
    # A save writes a new file beside the old one and renames it over; missing folders are made.
    nearest = next(p for p in path.parents if p.exists() or p == p.parent)  # '.' or '/' at last
    probe = nearest / f".{path.name}.{uuid.uuid4().hex}.probe"
    try:
        with write_failures(path):
            if not nearest.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(nearest))
            probe.touch(exist_ok=False)
    except WriteError as exc:
        raise ConfigError(f"control.state_file: {exc}") from None
    probe.unlink()


def read_state(path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)`` for a good file, ``(None, None)`` when there is none, and
    ``(None, problem)`` when it cannot be used (the problem says why, in one line)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    try:
        state = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"it is not valid JSON ({str(exc)[:120]})"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None, f'it is not an lmroute control state (no "format": "{FORMAT}")'
    version = state.get("version")
    if version != VERSION:
        return None, f"it has version {version!r}; this lmroute reads version {VERSION}"
    return state, None


def quarantine(path: str | Path) -> Path | None:
    """Move a bad state file aside (``<name>.corrupt-<time>``); the new name, or None if it could
    not be moved (it is then left where it is, and overwritten by the next save)."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside
