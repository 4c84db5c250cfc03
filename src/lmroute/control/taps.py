"""Embedding summaries for drift detection, taken from the embeddings a router computes anyway.

A router embeds each prompt to score it; drift detection wants a summary of those embeddings
(:func:`~lmroute.control.drift.summary_projection`). Embedding a prompt a second time would
double the cost of routing, so :meth:`EmbeddingSummaries.tap` wraps the embedder a router is
given (``router.use_embedder(summaries.tap(embedder))``): the wrapper passes every call through
and keeps each text's summary, which the caller takes once the score is back
(:meth:`EmbeddingSummaries.take`). Only the last ``capacity`` texts are kept, so texts whose
summary is never taken (a failed request, every prompt under the N-model modes) cost nothing for
long; they are known by a digest, so that holds however long the prompts are. Scoring runs in
worker threads, so the store is locked.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from lmroute.control.drift import DEFAULT_SUMMARY_DIM, summary_projection
from lmroute.embeddings.base import Embedder, PassThroughEmbedder

#: Texts whose summaries are kept until taken (a few scoring batches of a busy server).
DEFAULT_CAPACITY = 4096


class EmbeddingSummaries:
    """Summaries of recently embedded texts, by embedder name and text."""

    def __init__(self, *, summary_dim: int = DEFAULT_SUMMARY_DIM, capacity: int = DEFAULT_CAPACITY):
        self.summary_dim = summary_dim
        self.capacity = capacity
        self._projections: dict[int, np.ndarray] = {}
        self._kept: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def tap(self, embedder: Embedder) -> Embedder:
        """``embedder``, with every batch it embeds summarised into this store."""
        return _Tap(embedder, self)

    def record(self, name: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep the summaries of ``vectors`` (one row per text) under ``name``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts) or not len(texts):
            return
        with self._lock:
            projection = self._projections.get(vectors.shape[1])
            if projection is None:
                projection = summary_projection(vectors.shape[1], self.summary_dim)
                self._projections[vectors.shape[1]] = projection
        self.keep(name, texts, (vectors @ projection).astype(np.float64))

    def keep(self, name: str, texts: Sequence[str], summaries: np.ndarray) -> None:
        """Keep ``summaries`` (one row per text, already summarised: by a Ray scoring replica's
        store) under ``name``."""
        keys = [(name, _digest(text)) for text in texts]
        with self._lock:
            for key, summary in zip(keys, summaries, strict=True):
                self._kept[key] = summary
                self._kept.move_to_end(key)
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)

    def take(self, name: str | None, text: str) -> np.ndarray | None:
        """The summary of ``text`` as embedded by ``name`` (and forget it), or None."""
        if name is None:
            return None
        key = (name, _digest(text))
        with self._lock:
            return self._kept.pop(key, None)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Tap(PassThroughEmbedder):
    """An embedder that passes every call to ``inner`` and records the summaries: of the texts it
    embeds, and of the long texts whose vectors a long-prompt policy made of their windows."""

    def __init__(self, inner: Embedder, store: EmbeddingSummaries):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._store = store

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        vectors = self.inner.embed(texts)
        self._store.record(self.name, texts, vectors)
        return vectors

    def observe(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._store.record(self.name, list(texts), vectors)
        super().observe(texts, vectors)
