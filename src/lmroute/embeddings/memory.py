"""An in-memory LRU cache in front of an embedder, for a server that sees the same prompts again.

The disk cache (:mod:`lmroute.embeddings.cache`) keeps every text forever, which suits training
and evaluation but not a server that embeds a stream of mostly new prompts. :class:`LruEmbedder`
keeps the vectors of the last ``max_items`` distinct texts, so an application that repeats a system
prompt or a question pays the model once. Texts are known by a 16-byte digest and their vectors
live in one array, so the cache holds at most ``max_items`` rows however long the prompts are
(384 float32 each for MiniLM: 4,096 texts are 6.3 MB, taken as they fill).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from lmroute.embeddings.base import Embedder, PassThroughEmbedder, check_texts
from lmroute.exceptions import ConfigError

#: Distinct texts kept by default.
DEFAULT_ITEMS = 4096


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class LruEmbedder(PassThroughEmbedder):
    """Wraps ``inner``: vectors of the ``max_items`` most recently seen texts come from memory.

    ``embed`` takes the hits from memory and sends the misses (each distinct text once) to
    ``inner.embed`` in one call. Safe to share between threads. ``hits`` and ``misses`` count texts.
    """

    def __init__(self, inner: Embedder, *, max_items: int = DEFAULT_ITEMS):
        if max_items < 1:
            raise ConfigError(f"max_items must be at least 1, not {max_items}")
        self.inner = inner
        self.name = inner.name
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._slots: OrderedDict[bytes, int] = OrderedDict()  # digest -> row, least recent first
        self._rows: np.ndarray | None = None  # (max_items, dim), made when the first vectors arrive
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:  # type: ignore[override]  # the inner embedder's, which may learn it late
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        keys = [_digest(text) for text in texts]
        hit_at: list[int] = []
        hit_slots: list[int] = []
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                slot = self._slots.get(key)
                if slot is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._slots.move_to_end(key)
                    hit_at.append(i)
                    hit_slots.append(slot)
            # copied under the lock: another thread may give an evicted row to a new text
            hit_vectors = self._rows[hit_slots] if hit_slots and self._rows is not None else None
            self.hits += len(hit_at)
            self.misses += len(texts) - len(hit_at)
        if not missing:
            if hit_vectors is None:
                return np.zeros((0, self.dim), dtype=np.float32)
            return hit_vectors
        # Embedding happens outside the lock: other threads' hits need not wait for the model.
        new = self.inner.embed([texts[rows[0]] for rows in missing.values()])
        out = np.empty((len(texts), new.shape[1]), dtype=np.float32)
        if hit_vectors is not None:
            out[hit_at] = hit_vectors
        with self._lock:
            if self._rows is None:
                self._rows = np.empty((self.max_items, new.shape[1]), dtype=np.float32)
            for (key, rows), vector in zip(missing.items(), new, strict=True):
                out[rows] = vector
                slot = self._slots.get(key)  # another thread may have embedded it meanwhile
                if slot is None:
                    if len(self._slots) < self.max_items:
                        slot = len(self._slots)
                    else:
                        _, slot = self._slots.popitem(last=False)
                self._rows[slot] = vector
                self._slots[key] = slot
                self._slots.move_to_end(key)
        return out
