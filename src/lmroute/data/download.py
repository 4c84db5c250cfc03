"""Fetching public files over HTTP(S), atomically, with errors of one line; their checksums.

:mod:`lmroute.data.public` says which files and from where; :mod:`lmroute.data.pull` fetches
them all into a folder to carry offline.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path

from lmroute._files import write_atomic
from lmroute.exceptions import DownloadError


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
    done = [write_atomic(dest / name, get(url, timeout=timeout, hint=hint))]
    print(f"lmroute: downloading {what} ({n_files(len(missing))}) into {dest}", file=sys.stderr)
    from tqdm import tqdm

    for name, url in tqdm(rest, desc="downloading", unit="file", file=sys.stderr, leave=False):
        done.append(write_atomic(dest / name, get(url, timeout=timeout, hint=hint)))
    return done


def n_files(n: int) -> str:
    """``n`` files, in words: "1 file", "3 files"."""
    return f"{n} file" if n == 1 else f"{n} files"


def get(url: str, *, timeout: float, hint: str = "") -> bytes:
    """The bytes at ``url``; a one-line DownloadError ending in ``hint`` if they cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.headers.get_content_type() == "text/html":
                # A captive portal, a proxy's login or an error page served as 200: kept, it would
                # pass for the data file (there is no checksum of files that may change upstream).
                raise DownloadError(
                    f"could not download {url}: the server answered a web page (text/html), not the "
                    f"file (a proxy or login page?). {hint}".strip()
                )
            body = _decoded(response.read(), response.headers.get("Content-Encoding"), url, hint)
    except http.client.InvalidURL as exc:
        # An HTTPException too, but no server was asked: a port that is no number, a space or a
        # control character in the URL (shown escaped, so the message stays one line).
        raise DownloadError(f"could not download {url!r}: not a valid URL ({exc}). {hint}".strip()) from exc
    except http.client.HTTPException as exc:
        # Not an OSError: a body cut short of its Content-Length or chunks (IncompleteRead), an
        # answer that is not HTTP (BadStatusLine). Its bytes are never kept: nothing was written.
        said = " ".join(str(exc).split())[:80]  # BadStatusLine holds the server's raw line, CR LF and all
        broke = f"the server's answer broke off or is not HTTP ({type(exc).__name__}: {said})"
        raise DownloadError(f"could not download {url}: {broke}. {hint}".strip()) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # On one line: urllib's reason for a redirect loop spans three
        reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
        raise DownloadError(f"could not download {url}: {reason}. {hint}".strip()) from exc
    # Every public file holds data, none is a web page: kept in the cache, either would be taken
    # for the file by every later run, each failing on it as bad data.
    if not body.strip():
        raise DownloadError(f"could not download {url}: the server answered an empty file. {hint}".strip())
    if body.lstrip()[:14].lower().startswith((b"<!doctype html", b"<html")):
        raise DownloadError(
            f"could not download {url}: the server answered a web page, not the file (a proxy or "
            f"login page?). {hint}".strip()
        )
    return body


def _decoded(body: bytes, encoding: str | None, url: str, hint: str) -> bytes:
    """``body`` without its Content-Encoding: none is asked for, but a mirror serving objects
    stored gzip-encoded (S3) sends them so all the same, and kept as they came they are no data."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            said = f"its gzip encoding does not decode ({exc})"
            raise DownloadError(f"could not download {url}: {said}. {hint}".strip()) from None
    said = f"the server answered it encoded as {encoding!r}, which lmroute does not decode"
    raise DownloadError(f"could not download {url}: {said}. {hint}".strip())


def sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
