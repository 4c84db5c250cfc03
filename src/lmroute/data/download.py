"""Fetching public files: into the user cache on demand, or all of them into a folder to carry.

:func:`fetch_files` downloads what a command needs and is missing (see :mod:`lmroute.data.public`
for which files and from where). :func:`pull` is ``lmroute data pull``: every public part into a
data folder, with a ``SHA256SUMS`` file and a ``MANIFEST.json`` of sources and licences, so the
folder can be carried to a machine without internet and used there as ``--data-dir``.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lmroute._files import write_atomic, write_json
from lmroute.exceptions import DownloadError

MANIFEST = "MANIFEST.json"
CHECKSUMS = "SHA256SUMS"


def fetch_files(
    files: Mapping[str, str], dest: Path, *, what: str, hint: str = "", timeout: float = 60.0
) -> list[Path]:
    """Download each ``files`` entry (path under ``dest`` -> URL) that is not in ``dest`` yet.

    Each file is written atomically, so a file that exists is whole and an interrupted download
    resumes with the files still missing. A failure is a one-line DownloadError ending in ``hint``.
    Returns the files downloaded.
    """
    dest = Path(dest)
    missing = [(name, url) for name, url in files.items() if not (dest / name).is_file()]
    if not missing:
        return []
    # The first file is fetched before anything is printed: offline, the one line said is the error.
    (name, url), rest = missing[0], missing[1:]
    done = [write_atomic(dest / name, _get(url, timeout=timeout, hint=hint))]
    print(f"lmroute: downloading {what} ({len(missing)} files) into {dest}", file=sys.stderr)
    from tqdm import tqdm

    for name, url in tqdm(rest, desc="downloading", unit="file", file=sys.stderr, leave=False):
        done.append(write_atomic(dest / name, _get(url, timeout=timeout, hint=hint)))
    return done


def _get(url: str, *, timeout: float, hint: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}. {hint}".strip()) from exc


def sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    import json

    from lmroute._version import __version__
    from lmroute.data.public import parts_named

    folder = Path(to).expanduser()
    parts = parts_named(only)
    manifest_path = folder / MANIFEST
    old: dict[str, dict] = {}
    if manifest_path.is_file():
        try:
            old = {f["path"]: f for f in json.loads(manifest_path.read_text("utf-8"))["files"]}
        except (ValueError, KeyError, TypeError):
            old = {}
    todo: list[tuple[str, str, str]] = []  # (path, url, hint) of the files to fetch
    for p in parts:
        base = p.dataset.base_url((urls or {}).get(p.dataset.folder))
        for name, remote in p.files.items():
            path = f"{p.dataset.folder}/{name}"
            known = old.get(path)
            if not ((folder / path).is_file() and known and known.get("sha256") == sha256(folder / path)):
                todo.append(
                    (path, f"{base}/{remote}", f"A mirror of {p.dataset.source}: set {p.dataset.url_env}.")
                )
    if todo:
        print(f"lmroute: downloading {len(todo)} files into {folder}", file=sys.stderr)
    from tqdm import tqdm

    for path, url, hint in tqdm(todo, desc="downloading", unit="file", file=sys.stderr, leave=False):
        write_atomic(folder / path, _get(url, timeout=timeout, hint=hint))
    entries = dict(old)
    for p in parts:
        base = p.dataset.base_url((urls or {}).get(p.dataset.folder))
        for name, remote in p.files.items():
            path = f"{p.dataset.folder}/{name}"
            entries[path] = {
                "path": path,
                "url": f"{base}/{remote}",
                "sha256": sha256(folder / path),
                "bytes": (folder / path).stat().st_size,
                "part": p.name,
                "licence": p.dataset.licence,
            }
    from lmroute.data.public import PARTS

    listed = {e["part"] for e in entries.values()}
    files = sorted(entries.values(), key=lambda e: e["path"])
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
    write_json(manifest_path, manifest)
    return PullResult(folder, len(entries), len(todo), tuple(p.name for p in parts))
