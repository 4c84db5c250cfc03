"""Embedding summaries taken from the router's own embedder: recorded once, taken once, bounded."""

import tracemalloc

import numpy as np
from _fake_embedder import HashEmbedder

from lmroute.control.drift import summary_projection
from lmroute.control.taps import EmbeddingSummaries


def test_the_tap_passes_vectors_through_and_keeps_their_summaries():
    inner = HashEmbedder()
    store = EmbeddingSummaries(summary_dim=8)
    tapped = store.tap(inner)
    assert tapped.name == inner.name and tapped.dim == inner.dim
    vectors = tapped.embed(["a", "b"])
    assert np.array_equal(vectors, inner.embed(["a", "b"]))
    expected = vectors[1] @ summary_projection(inner.dim, 8)
    assert np.allclose(store.take(inner.name, "b"), expected, atol=1e-5)
    assert store.take(inner.name, "b") is None  # taken once
    assert store.take("another-embedder", "a") is None and store.take(None, "a") is None


def test_only_the_latest_texts_are_kept():
    store = EmbeddingSummaries(capacity=3)
    tapped = store.tap(HashEmbedder())
    tapped.embed([f"text {i}" for i in range(5)])
    assert store.take(tapped.name, "text 0") is None and store.take(tapped.name, "text 4") is not None


def test_texts_whose_summaries_are_never_taken_are_not_kept_whole():
    # Under the lambda and quality modes (N models) the router embeds every prompt and no summary
    # is taken: the store kept the last `capacity` prompts themselves, each up to a request long.
    store = EmbeddingSummaries()
    tapped = store.tap(HashEmbedder())
    tapped.embed(["warm"])  # the projection, made once, is not what is measured
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            tapped.embed([f"{i}" + "x" * 1_000_000])  # each prompt is the request's, dropped after it
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1_000_000
    assert store.take(tapped.name, "5" + "x" * 1_000_000) is not None
