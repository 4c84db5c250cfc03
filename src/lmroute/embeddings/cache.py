"""A content-hash cache in front of any embedder, so that each text is embedded once.

Layout, under ``<user cache>/embeddings/<safe cache name>/``: shards, each an ``<id>.npy``
(float32, one row per text) and an ``<id>.json`` index (format, embedder name, dim, the npy file's
sha256 and the hex keys of its rows). A key is ``sha256(cache name, NUL, text)``, the cache name
being the embedder's name plus what changes its vectors without changing the name (a model
folder, a quantisation's version, an ``openai:`` endpoint other than OpenAI's). Both files
are written to a temporary name and renamed, the JSON last, so a shard exists whole or not at
all; an interrupted process leaves at most an unused ``.npy``. A shard whose files are damaged
(bad JSON, wrong checksum, wrong shape) is logged, deleted and its texts re-embedded; one of another
embedder, size or format (a folder given to several as ``cache_dir``; an embedder stating the
wrong size) is left alone. Small
shards are merged once there are many of them, so that a server embedding one prompt per
request does not leave thousands of files; a merge writes every row of the shards it deletes but
those a big shard (which no merge deletes) holds, so that processes merging at once lose nothing.
The folder grows without bound unless ``max_bytes`` is given: then after each write the embedder's
oldest shards (by the time they were written; a merge writes anew) are deleted until its shards
hold at most that many bytes (the one just written is kept). No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmroute import _paths
from lmroute._files import write_atomic
from lmroute.embeddings.base import Embedder, PassThroughEmbedder, check_texts
from lmroute.exceptions import ConfigError, LmrouteError

logger = logging.getLogger(__name__)

_FORMAT = 1
#: Shards smaller than this are merged once there are ``_MERGE_AT`` of them.
_SMALL_SHARD = 4096
_MERGE_AT = 32


def safe_name(name: str) -> str:
    """A folder name for an embedder name: readable, and distinct for distinct names."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "embedder"
    return f"{readable[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


class CachedEmbedder(PassThroughEmbedder):
    """Wraps ``inner``: texts already embedded under the same embedder (``cache_name``) come from disk.

    ``embed`` hashes the texts, takes the hits from the cache and sends all misses (each
    distinct text once) to ``inner.embed_parts`` in one call; what it embedded is stored in one
    shard, also when it fails part way (the parts that came before the failure). ``directory``
    defaults to ``<user cache>/embeddings/<safe inner.cache_name>/``. ``max_bytes`` caps the size
    of this embedder's shards there (the module notes say how); None: no cap. Safe to share
    between threads and processes.
    """

    def __init__(self, inner: Embedder, *, directory: str | Path | None = None, max_bytes: int | None = None):
        if max_bytes is not None and max_bytes < 1:
            raise ConfigError(f"the embedding cache's max_bytes must be at least 1, not {max_bytes}")
        self.inner = inner
        self.max_bytes = max_bytes
        self.name = inner.name
        self.dim = inner.dim
        self.directory = None if directory is None else Path(directory)
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, int]] = {}  # key -> (shard id, row)
        self._shards: dict[str, np.ndarray | None] = {}  # verified arrays; None when unusable
        self._seen: set[str] = set()  # shard ids whose index was read
        self._contents: dict[str, list[str]] = {}  # shard id -> the keys of its rows, in row order
        self._write_failed = False

    @property
    def path(self) -> Path:
        """The folder of this embedder's shards."""
        if self.directory is None:
            self.directory = _paths.cache_dir() / "embeddings" / safe_name(self.inner.cache_name)
        return self.directory

    def key(self, text: str) -> str:
        """The cache key of a text: sha256 of the embedder's ``cache_name`` and the text."""
        data = f"{self.inner.cache_name}\0{text}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(data).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, computing only those not in the cache: ``(len(texts), dim)`` float32."""
        texts = check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [self.key(text) for text in texts]
        with self._lock:
            self._scan()
            found = self._lookup(keys, out)
        misses: dict[str, str] = {}
        for i, key in enumerate(keys):
            if not found[i]:
                misses.setdefault(key, texts[i])
        if misses:
            vectors = self._embed_misses(misses)
            rows = {key: row for row, key in enumerate(misses)}
            for i, key in enumerate(keys):
                if not found[i]:
                    out[i] = vectors[rows[key]]
        return out

    def _embed_misses(self, misses: dict[str, str]) -> np.ndarray:
        """The vectors of ``misses`` (key -> text), stored: those embedded before a failure too,
        which a rerun then need not pay for again."""
        n = len(misses)
        parts: list[np.ndarray] = []
        done = 0
        try:
            for part in self.inner.embed_parts(list(misses.values())):
                part = np.asarray(part, dtype=np.float32)
                if part.ndim != 2 or part.shape[1] != self.dim or done + len(part) > n:
                    shape = (done + len(part), *part.shape[1:]) if part.ndim else part.shape
                    raise self._wrong_shape(shape, n)
                parts.append(part)
                done += len(part)
            if done != n:
                raise self._wrong_shape((done, self.dim), n)
        except BaseException:  # Ctrl-C too
            if parts:
                with self._lock:
                    self._store(list(misses)[:done], np.concatenate(parts))
            raise
        vectors = np.concatenate(parts)
        with self._lock:
            self._store(list(misses), vectors)
        return vectors

    def _wrong_shape(self, shape: tuple[int, ...], n: int) -> LmrouteError:
        return LmrouteError(
            f"embedder {self.name!r} returned shape {shape} for {n} texts; expected ({n}, {self.dim})"
        )

    # --- reading -----------------------------------------------------------------------------

    def _scan(self) -> None:
        """Read the index of every shard that appeared since the last scan; forget those gone."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:  # not a folder, no permission: work without the cache
            logger.debug("embedding cache: cannot list %s: %s", self.path, exc)
            return
        present = {name[: -len(".json")] for name in names if name.endswith(".json") and name[0] != "."}
        for shard in [shard for shard in self._contents if shard not in present]:
            # merged away by another process, which wrote all its rows into a shard of its own: a
            # merge here would write them once more, and its vectors need not stay in memory
            self._forget(shard)
            self._shards.pop(shard, None)
        for shard in present:
            if shard in self._seen:
                continue
            self._seen.add(shard)
            index = self._read_index(shard)
            if index is not None:
                self._contents[shard] = index["keys"]
                for row, key in enumerate(index["keys"]):
                    self._keys[key] = (shard, row)

    def _read_index(self, shard: str) -> dict | None:
        path = self.path / f"{shard}.json"
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except (OSError, ValueError) as exc:
            self._discard(shard, f"unreadable index ({exc})")
            return None
        if (
            isinstance(index, dict)
            and isinstance(index.get("format"), int)
            and isinstance(index.get("embedder"), str)
            and isinstance(index.get("dim"), int)
            and (index["format"], index["embedder"], index["dim"]) != (_FORMAT, self.name, self.dim)
        ):
            # another embedder's (a folder given as cache_dir to several; one named alike that
            # states another size, by mistake or for another endpoint) or a later format's: not
            # damaged, and not ours to delete
            logger.debug("embedding cache: %s in %s is not %s's: skipped", shard, self.path, self.name)
            return None
        if not (
            isinstance(index, dict)
            and index.get("format") == _FORMAT
            and index.get("embedder") == self.name
            and index.get("dim") == self.dim
            and isinstance(index.get("sha256"), str)
            and isinstance(index.get("keys"), list)
            and all(isinstance(k, str) for k in index["keys"])
        ):
            self._discard(shard, "index without its format, embedder, dimension or keys")
            return None
        return index

    def _load_shard(self, shard: str) -> np.ndarray | None:
        """The shard's vectors after checking them against its index; None if unusable."""
        if shard in self._shards:
            return self._shards[shard]
        vectors = None
        index = self._read_index(shard)
        if index is not None:
            unreadable = None
            try:
                data = (self.path / f"{shard}.npy").read_bytes()
            except FileNotFoundError:
                data = None
            except OSError as exc:  # a bad sector, no permission: damage too, not a failed embed()
                data, unreadable = None, exc
            if unreadable is not None:
                self._discard(shard, f"unreadable array ({unreadable})")
            elif data is None:
                # a merge deletes the index before the array: an index left alone is damage
                if (self.path / f"{shard}.json").exists():
                    self._discard(shard, "array file missing")
            elif hashlib.sha256(data).hexdigest() != index["sha256"]:
                self._discard(shard, "checksum mismatch")
            else:
                try:
                    vectors = np.load(io.BytesIO(data), allow_pickle=False)
                except ValueError as exc:
                    self._discard(shard, f"unreadable array ({exc})")
                else:
                    if vectors.dtype != np.float32 or vectors.shape != (len(index["keys"]), self.dim):
                        self._discard(shard, f"array of shape {vectors.shape}")
                        vectors = None
        self._shards[shard] = vectors
        return vectors

    def _discard(self, shard: str, why: str) -> None:
        logger.warning(
            "embedding cache: ignoring and deleting damaged shard %s in %s: %s; its texts will be "
            "embedded again",
            shard,
            self.path,
            why,
        )
        _unlink(self.path / f"{shard}.json", self.path / f"{shard}.npy")
        self._shards[shard] = None
        return None

    def _lookup(self, keys: list[str], out: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for i, key in enumerate(keys):
            hit = self._keys.get(key)
            if hit is not None:
                positions, rows = by_shard.setdefault(hit[0], ([], []))
                positions.append(i)
                rows.append(hit[1])
        for shard, (positions, rows) in by_shard.items():
            vectors = self._load_shard(shard)
            if vectors is None:
                self._forget(shard)
                continue
            out[positions] = vectors[rows]
            found[positions] = True
        return found

    def _forget(self, shard: str) -> None:
        for key in self._contents.pop(shard, ()):
            if self._keys.get(key, ("",))[0] == shard:
                del self._keys[key]

    def _in_big_shard(self, key: str) -> bool:
        hit = self._keys.get(key)
        return hit is not None and len(self._contents.get(hit[0], ())) >= _SMALL_SHARD

    # --- writing -----------------------------------------------------------------------------

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        shard = uuid.uuid4().hex
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        data = buffer.getvalue()
        index = {
            "format": _FORMAT,
            "embedder": self.name,
            "dim": self.dim,
            "sha256": hashlib.sha256(data).hexdigest(),
            "keys": keys,
        }
        write_atomic(self.path / f"{shard}.npy", data)
        try:
            write_atomic(self.path / f"{shard}.json", json.dumps(index).encode())  # commits the shard
        except OSError:
            # an array without its index is never read nor deleted: on a full disk it kept the space
            _unlink(self.path / f"{shard}.npy")
            raise
        self._seen.add(shard)
        self._shards[shard] = vectors
        self._contents[shard] = keys
        for row, key in enumerate(keys):
            self._keys[key] = (shard, row)
        return shard

    def _store(self, keys: list[str], vectors: np.ndarray) -> None:
        try:
            shard = self._write_shard(keys, vectors)
            merged = self._merge_small_shards()
            if self.max_bytes is not None:
                self._evict(self.max_bytes, keep=merged or shard)
        except OSError as exc:  # a full or read-only disk costs speed, not results
            # said once: scoring a file fails like this every 512 prompts
            log = logger.debug if self._write_failed else logger.warning
            self._write_failed = True
            log("embedding cache: could not write to %s: %s", self.path, exc)

    def _merge_small_shards(self) -> str | None:
        """Merge the small shards once there are many; the shard written, if any."""
        small = [shard for shard, keys in self._contents.items() if len(keys) < _SMALL_SHARD]
        if len(small) < _MERGE_AT:
            return None
        self._scan()  # another process may have merged some of them since this call's scan
        small = [shard for shard in small if shard in self._contents]
        keys: list[str] = []
        parts = []
        held: set[str] = set()
        for shard in small:
            vectors = self._load_shard(shard)
            if vectors is None:
                self._forget(shard)
                continue
            # All its rows but those also in a big shard, which no merge deletes: a text written by
            # two processes at once is in two shards, and another process, which looks it up in
            # the other one, may be merging that one away, counting on this one.
            rows = [
                row
                for row, key in enumerate(self._contents[shard])
                if key not in held and not self._in_big_shard(key)
            ]
            keys.extend(self._contents[shard][row] for row in rows)
            held.update(self._contents[shard])
            parts.append(vectors[rows])
        merged = self._write_shard(keys, np.concatenate(parts)) if keys else None
        for shard in small:
            # index first: a shard without its index is simply unused
            _unlink(self.path / f"{shard}.json", self.path / f"{shard}.npy")
            self._shards.pop(shard, None)
            self._contents.pop(shard, None)
        return merged

    def _evict(self, max_bytes: int, *, keep: str) -> None:
        """Delete this embedder's oldest shards but ``keep`` (what this call wrote) until its
        shards hold at most ``max_bytes``."""
        shards = []
        for shard in list(self._contents):
            try:
                index, array = (os.stat(self.path / f"{shard}{ext}") for ext in (".json", ".npy"))
            except FileNotFoundError:  # merged or evicted by another process meanwhile
                continue
            shards.append((index.st_mtime_ns, index.st_size + array.st_size, shard))
        shards.sort()
        total = sum(size for _, size, _ in shards)
        for _, size, shard in shards:
            if total <= max_bytes:
                break
            if shard == keep:
                continue
            # index first, as a merge deletes: another process reading it then finds it gone
            _unlink(self.path / f"{shard}.json", self.path / f"{shard}.npy")
            self._forget(shard)
            self._shards.pop(shard, None)
            total -= size
