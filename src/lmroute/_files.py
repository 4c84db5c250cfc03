"""Writing files so that a reader sees the whole file or none of it, even if the writer dies."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lmroute.exceptions import WriteError


@contextlib.contextmanager
def atomic_writer(
    path: str | Path, mode: str = "wb", *, durable: bool = False, **open_options
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` (keeping its
    permissions), on error it vanishes.

    ``durable`` also survives a power loss or an operating-system crash: the new file's contents
    reach the disk before the rename does (else the rename may be on disk with the file still
    empty or torn), and the rename reaches it before this returns.

    A symbolic link is written where it points (the link stays). A device or a pipe (``/dev/null``,
    ``/dev/stdout``, a FIFO) is written into: a regular file would take its place.

    The file system's refusals (a folder at ``path``, no permission, a full disk) are a
    :class:`~lmroute.exceptions.WriteError` naming ``path``.
    """
    given = path = Path(path)
    if _special(path):
        with write_failures(given):
            f = open(path, mode, **open_options)  # noqa: SIM115  (closed below)
        with _closing(f, given):
            yield f
        return
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    with write_failures(given):
        path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened exclusively, not mkstemp: its files are private (0600), while a saved
    # router or cache file should get the permissions the user's umask gives any new file.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with write_failures(given):  # not around the caller's code: its errors are not this file's
            f = open(tmp, mode.replace("w", "x"), **open_options)  # noqa: SIM115  (closed below)
        with _closing(f, given, durable=durable):
            yield f
        with write_failures(given):
            with contextlib.suppress(FileNotFoundError):
                # The old file's permissions, not the umask's: a file made private stays private.
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            os.replace(tmp, path)
        if durable:
            _sync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _closing(f: IO, given: Path, *, durable: bool = False) -> Iterator[IO]:
    """``f`` for the caller to write, then closed (``durable``: its contents synced to the disk
    first): the last bytes' refusal (a full disk, met in close's flush) a WriteError naming
    ``given``. Not ``with f``: closing a file whose flush failed flushes again, and that second
    OSError took the WriteError's place (a traceback)."""
    try:
        yield f
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()  # the caller's error is the one to see: this file is thrown away
        raise
    with write_failures(given):
        try:
            if durable:
                f.flush()
                os.fsync(f.fileno())
        finally:
            f.close()  # closed even when its flush fails, so nothing is left to fail again


def _sync_folder(folder: Path) -> None:
    """Put a rename in ``folder`` on disk. Best effort: a file system that cannot sync a folder
    (some network ones refuse) leaves the rename to the next sync, the new file already whole."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _special(path: Path) -> bool:
    """Whether ``path`` (its link followed) is there and neither a regular file nor a folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there (yet), or a dangling link: written as a new file
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def replacing_folder(path: str | Path) -> Iterator[Path]:
    """A new empty folder beside the folder ``path`` to fill; on success it takes ``path``'s place,
    with what else the old folder held (files the new one lacks) moved into it; on error it
    vanishes and ``path`` is left as it was. A folder that is a symbolic link is replaced where it
    points. The file system's refusals are a :class:`~lmroute.exceptions.WriteError` naming ``path``.

    Where the folder cannot be replaced it is given to be written in place, as when it is new: the
    working directory, or a folder holding it (this process, and the shell that started it there,
    would be left in a deleted folder); a mount point (a container's volume), which cannot be renamed;
    a folder in a parent folder this process may not write to, where nothing can be put beside it.
    """
    given, path = path, Path(os.path.realpath(path))
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except OSError:  # a working directory deleted already is in no folder
        cwd = None
    in_use = cwd is not None and (cwd == path or path in cwd.parents)
    if in_use or os.path.ismount(path) or not os.access(path.parent, os.W_OK | os.X_OK):
        yield path
        return
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with write_failures(given):
        mode = stat.S_IMODE(path.stat().st_mode)
        staging.mkdir()
    try:
        try:
            yield staging
        except WriteError as exc:  # named as the folder it is written for, not the hidden one
            raise WriteError(str(exc).replace(str(staging), str(given))) from None
        with write_failures(given):
            os.chmod(staging, mode)  # the old folder's, shared with a group or not
            _swap_folders(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone after a swap


def _swap_folders(new: Path, path: Path) -> None:
    aside = path.parent / f".{path.name}.{uuid.uuid4().hex}.old"
    # POSIX renames cannot exchange two folders in one step: between these two renames (two
    # system calls, not the writing of the files) the old folder is whole at ``aside``.
    os.rename(path, aside)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(aside, path)
        raise
    for entry in aside.iterdir():
        if not os.path.lexists(path / entry.name):
            os.rename(entry, path / entry.name)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def read_failures(
    name: str, error: type[Exception], *, folder: str = "a folder, not a file"
) -> Iterator[None]:
    """Turn the ways reading a file fails (missing, a folder, unreadable) into one ``error`` line
    naming the file as ``name``; ``folder`` completes "NAME is ..." for a folder."""
    try:
        yield
    except FileNotFoundError:
        raise error(f"{name} does not exist") from None
    except IsADirectoryError:
        raise error(f"{name} is {folder}") from None
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}") from None


def not_utf8_at(path: str | Path) -> str:
    """Where a file stops being UTF-8, as "line L, byte B" (lines counted by ``\\n``): a text
    reader decodes blocks of many lines, so where it failed says little."""
    offset = 0
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"line {number}, byte {offset + exc.start}"
                offset += len(raw)
    except OSError:
        pass
    return "it changed while read"


@contextlib.contextmanager
def write_failures(path: str | Path) -> Iterator[None]:
    """Turn the ways writing ``path`` fails into one :class:`~lmroute.exceptions.WriteError` naming it."""
    try:
        yield
    except WriteError:
        raise
    except IsADirectoryError:
        raise WriteError(f"cannot write {path}: it is a folder") from None
    except (FileExistsError, NotADirectoryError) as exc:  # what mkdir raises for a file in the way
        if exc.filename is not None and Path(exc.filename) == Path(path):
            raise WriteError(f"cannot write {path}: it is a file, and a folder is wanted there") from None
        raise WriteError(f"cannot write {path}: a file is in the way of folder {exc.filename}") from None
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_atomic(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (``durable``: see :func:`atomic_writer`)."""
    # A write larger than the buffer reaches the disk in write() itself, not at close.
    with atomic_writer(path, durable=durable) as f, write_failures(path):
        f.write(data)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (a report a person may read) atomically, a NaN or infinite
    number as null: JSON has no such numbers, and strict readers (a browser's ``JSON.parse``, as in
    the console's report view) refuse the ``NaN`` and ``Infinity`` Python would write."""
    text = json.dumps(_finite(data), indent=2, allow_nan=False)
    return write_atomic(path, (text + "\n").encode("utf-8"))


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float, in any dict, list or tuple, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
