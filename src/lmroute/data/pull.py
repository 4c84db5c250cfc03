"""``lmroute data pull``: every public part into a data folder, to carry to a machine offline.

The folder gets the layout of a data folder (``routellm-evals/...``, ``arena-hard/...``; see
:mod:`lmroute.data.public`), a ``SHA256SUMS`` file that ``sha256sum -c`` reads, and a
``MANIFEST.json`` with each file's source URL, checksum, size, part and licence.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lmroute._files import write_atomic, write_json
from lmroute.data.download import get, n_files, sha256
from lmroute.data.public import PARTS, Part, parts_named

MANIFEST = "MANIFEST.json"
CHECKSUMS = "SHA256SUMS"


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` did: the folder, the files it holds, and how many were downloaded."""

    folder: Path
    files: int
    downloaded: int
    parts: tuple[str, ...]


def pull(
    to: str | Path,
    *,
    only: Sequence[str] | None = None,
    urls: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> PullResult:
    """Fetch the public parts ``only`` (every part when None) into the data folder ``to``.

    Files already there whose checksum matches the folder's manifest are kept; others are fetched
    again. ``urls`` maps a dataset folder (``routellm-evals``) to another download base URL.
    Writes ``SHA256SUMS`` (``sha256sum -c`` reads it) and ``MANIFEST.json`` (per file: path, URL,
    sha256, bytes, part, licence; per part: description, source, licence) over everything pulled
    into the folder so far.
    """
    folder = Path(to).expanduser()
    parts = parts_named(only)
    manifest_path = folder / MANIFEST
    old = _listed(manifest_path)
    # Files of earlier pulls stay listed while they are there; a deleted one is no longer listed.
    entries = {path: entry for path, entry in old.items() if (folder / path).is_file()}
    todo: list[tuple[str, str, Part]] = []  # (path, url, part) of the files to fetch
    for p in parts:
        base = p.dataset.base_url((urls or {}).get(p.dataset.folder))
        for name, remote in p.files.items():
            path, url = f"{p.dataset.folder}/{name}", f"{base}/{remote}"
            known = old.get(path)
            if (folder / path).is_file() and known and known.get("sha256") == sha256(folder / path):
                entries[path] = _entry(folder, path, url, p)
            else:
                todo.append((path, url, p))
    if todo:
        # The first file is fetched before anything is printed (as fetch_files does): offline, the
        # one line said is the error.
        _fetch(folder, entries, *todo[0], timeout=timeout)
        print(f"lmroute: downloading {n_files(len(todo))} into {folder}", file=sys.stderr)
        from tqdm import tqdm

        for path, url, p in tqdm(todo[1:], desc="downloading", unit="file", file=sys.stderr, leave=False):
            _fetch(folder, entries, path, url, p, timeout=timeout)
    _write_listing(folder, entries)
    return PullResult(folder, len(entries), len(todo), tuple(p.name for p in parts))


def _fetch(
    folder: Path, entries: dict[str, dict[str, object]], path: str, url: str, p: Part, *, timeout: float
) -> None:
    """Download ``url`` to ``folder/path`` and list it in ``entries`` and the folder's listing."""
    hint = f"A mirror of {p.dataset.source}: set {p.dataset.url_env}."
    write_atomic(folder / path, get(url, timeout=timeout, hint=hint))
    entries[path] = _entry(folder, path, url, p)
    # Listed at once, so a pull that stops later (a failed download, Ctrl-C) keeps this file.
    _write_listing(folder, entries)


def _listed(manifest_path: Path) -> dict[str, dict]:
    """The manifest's entries by path: those with the fields :func:`_entry` writes, of its types
    (a damaged one's file is not listed, and fetched again when its part is pulled); none if the
    manifest cannot be read."""
    try:
        files = json.loads(manifest_path.read_text("utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(files, list):
        return {}
    return {
        f["path"]: f
        for f in files
        if isinstance(f, dict)
        and all(isinstance(f.get(key), str) for key in ("path", "url", "sha256", "part", "licence"))
        and isinstance(f.get("bytes"), int)
    }


def _entry(folder: Path, path: str, url: str, p: Part) -> dict[str, object]:
    """The manifest entry of the file at ``path`` in ``folder``, fetched from ``url`` for part ``p``."""
    return {
        "path": path,
        "url": url,
        "sha256": sha256(folder / path),
        "bytes": (folder / path).stat().st_size,
        "part": p.name,
        "licence": p.dataset.licence,
    }


def _write_listing(folder: Path, entries: Mapping[str, Mapping[str, object]]) -> None:
    """Write ``SHA256SUMS`` and ``MANIFEST.json`` of the files ``entries`` lists."""
    from lmroute._version import __version__

    listed = {e["part"] for e in entries.values()}
    files = sorted(entries.values(), key=lambda e: str(e["path"]))
    manifest = {
        "written_by": f"lmroute {__version__} (lmroute data pull)",
        "parts": {
            name: {"description": q.description, "source": q.dataset.source, "licence": q.dataset.licence}
            for name, q in PARTS.items()
            if name in listed
        },
        "files": files,
    }
    sums = "".join(f"{e['sha256']}  {e['path']}\n" for e in files)
    write_atomic(folder / CHECKSUMS, sums.encode("utf-8"))
    write_json(folder / MANIFEST, manifest)
