"""An in-memory LRU cache in front of an embedder, for a server that sees the same prompts again.

The disk cache (:mod:`lmroute.embeddings.cache`) keeps every text forever, which suits training
and evaluation but not a server that embeds a stream of mostly new prompts. :class:`LruEmbedder`
keeps the vectors of the last ``max_items`` distinct texts (384 float32 each for MiniLM: 4,096
texts are 6 MB), so an application that repeats a system prompt or a question pays the model once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from lmroute.embeddings.base import Embedder, check_texts
from lmroute.exceptions import ConfigError

#: Distinct texts kept by default.
DEFAULT_ITEMS = 4096


class LruEmbedder(Embedder):
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
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:  # type: ignore[override]  # the inner embedder's, which may learn it late
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        out: list[np.ndarray | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vector = self._vectors.get(text)
                if vector is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._vectors.move_to_end(text)
                    out[i] = vector
            self.hits += len(texts) - sum(len(rows) for rows in missing.values())
            self.misses += sum(len(rows) for rows in missing.values())
        if not missing:
            return np.stack(out) if out else np.zeros((0, self.dim), dtype=np.float32)  # type: ignore[arg-type]
        # Embedding happens outside the lock: other threads' hits need not wait for the model.
        new = self.inner.embed(list(missing))
        with self._lock:
            for (text, rows), vector in zip(missing.items(), new, strict=True):
                for i in rows:
                    out[i] = vector
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.max_items:
                self._vectors.popitem(last=False)
        return np.stack(out)  # type: ignore[arg-type]  # every row is filled by now
