"""The in-memory LRU embedding cache a server puts in front of its embedder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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


def test_the_cache_keeps_digests_and_one_array_not_the_texts():
    inner = _Counting()
    lru = LruEmbedder(inner, max_items=3)
    long_prompts = [letter * 100_000 for letter in "abcde"]
    out = lru.embed(long_prompts)
    np.testing.assert_array_equal(out, inner.embed(long_prompts))
    assert all(isinstance(key, bytes) and len(key) == 16 for key in lru._slots)
    assert len(lru._slots) == 3 and lru._rows.shape == (3, 4)
    # the last three stayed, in rows that were reused for them
    np.testing.assert_array_equal(lru.embed(long_prompts[2:]), out[2:])
    assert lru.hits == 3


def test_threads_sharing_the_cache_get_each_text_its_own_vector():
    inner = _Counting()
    lru = LruEmbedder(inner, max_items=7)  # fewer rows than texts: rows are reused all the time
    texts = [f"{chr(97 + i % 26)}{'x' * i}" for i in range(40)]
    expected = dict(zip(texts, inner.embed(texts), strict=True))
    rng = np.random.default_rng(0)
    batches = [list(rng.choice(texts, size=9)) for _ in range(400)]

    def run(batch):
        return batch, lru.embed(batch)

    with ThreadPoolExecutor(4) as pool:
        for batch, vectors in pool.map(run, batches):
            np.testing.assert_array_equal(vectors, np.stack([expected[t] for t in batch]))
    assert lru.hits + lru.misses == 400 * 9 and lru.hits > 0
