"""The in-memory LRU embedding cache a server puts in front of its embedder."""

from __future__ import annotations

import numpy as np
import pytest

from lmroute.embeddings.base import Embedder, normalize
from lmroute.embeddings.memory import LruEmbedder
from lmroute.exceptions import ConfigError


class _Counting(Embedder):
    name = "counting"
    dim = 4

    def __init__(self):
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return normalize(np.array([[len(t), 1.0, ord(t[0]) if t else 0.0, 2.0] for t in texts]))


def test_repeated_texts_are_embedded_once_and_the_oldest_are_forgotten():
    inner = _Counting()
    lru = LruEmbedder(inner, max_items=2)
    first = lru.embed(["a", "bb", "a"])
    assert inner.calls == [["a", "bb"]]  # each distinct miss once, in one call
    np.testing.assert_array_equal(first, inner.embed(["a", "bb", "a"]))
    inner.calls.clear()
    np.testing.assert_array_equal(lru.embed(["bb", "a"]), first[[1, 0]])
    assert inner.calls == [] and (lru.hits, lru.misses) == (2, 3)
    lru.embed(["ccc"])  # evicts the least recently used: "bb" (a was used after it)
    lru.embed(["a"])
    lru.embed(["bb"])
    assert inner.calls == [["ccc"], ["bb"]]
    assert lru.name == "counting" and lru.dim == 4 and lru.embed([]).shape == (0, 4)


def test_a_cache_needs_room():
    with pytest.raises(ConfigError, match="at least 1"):
        LruEmbedder(_Counting(), max_items=0)
