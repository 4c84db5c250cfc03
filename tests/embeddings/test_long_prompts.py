"""Long-prompt policies: which windows of a long prompt are embedded, their cost, counting, MiniLM."""

import logging

import numpy as np
import pytest
from _fake_embedder import WordWindowEmbedder

from lmroute.embeddings.base import normalize
from lmroute.embeddings.long_prompts import (
    MAX_WINDOWS,
    POLICIES,
    LongPromptEmbedder,
    embeddings_per_text,
    window_starts,
    window_texts,
)
from lmroute.exceptions import ConfigError


@pytest.mark.parametrize(
    "pieces, size, policy, starts",
    [
        (10, 4, "head", [0]),
        (10, 4, "tail", [6]),
        (10, 4, "head_tail", [0, 6]),
        (10, 4, "windows", [0, 3, 6]),  # ceil(10 / 4) = 3 windows, first at 0, last ending at 10
        (8, 4, "windows", [0, 4]),  # an exact split: no overlap
        (4, 4, "tail", [0]),  # a text that fits is one window under every policy
        (3, 4, "head_tail", [0]),
        (100, 4, "windows", [0, 14, 27, 41, 55, 69, 82, 96]),  # capped at MAX_WINDOWS, spread
    ],
)
def test_window_starts_by_hand(pieces, size, policy, starts):
    assert window_starts(pieces, size, policy) == starts
    assert len(window_starts(pieces, size, policy)) <= MAX_WINDOWS


def test_window_texts_cut_at_piece_spans():
    text = "aa bb cc dd ee"
    spans = np.array([[0, 2], [3, 5], [6, 8], [9, 11], [12, 14]])
    assert window_texts(text, None, 2, "tail") == [text]
    assert window_texts(text, spans, 2, "head") == ["aa bb"]
    assert window_texts(text, spans, 2, "tail") == ["dd ee"]
    assert window_texts(text, spans, 2, "head_tail") == ["aa bb", "dd ee"]
    # ceil(5 / 2) = 3 windows, starting at 0, 1.5 -> 2 and 3
    assert window_texts(text, spans, 2, "windows") == ["aa bb", "cc dd", "dd ee"]


def test_cost_is_one_embedding_per_window():
    spans = [None, np.zeros((10, 2)), np.zeros((1000, 2))]
    assert embeddings_per_text(spans, 4, "head").tolist() == [1, 1, 1]
    assert embeddings_per_text(spans, 4, "head_tail").tolist() == [1, 2, 2]
    assert embeddings_per_text(spans, 4, "windows").tolist() == [1, 3, MAX_WINDOWS]


def test_head_is_the_inner_embedder_untouched():
    inner = WordWindowEmbedder()
    texts = ["one two three four five six", "short text"]
    np.testing.assert_array_equal(LongPromptEmbedder(inner, "head").embed(texts), inner.embed(texts))
    assert inner.calls[0] == texts  # passed through whole: the inner embedder truncates by itself


def test_a_shared_prefix_no_longer_collapses_distinct_questions():
    inner = WordWindowEmbedder(dim=256)
    texts = [f"shared long prefix here {q}" for q in ("alpha", "beta", "gamma")]
    head = LongPromptEmbedder(inner, "head").embed(texts)
    assert np.allclose(head, head[0])  # the head: three copies of the prefix
    for policy in ("tail", "head_tail", "windows"):
        vectors = LongPromptEmbedder(inner, policy).embed(texts)
        assert np.all(vectors @ vectors.T - np.eye(3) < 0.999), policy
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_short_texts_get_the_same_vector_under_every_policy():
    inner = WordWindowEmbedder()
    texts = ["a b", "c d e f"]
    for policy in POLICIES:
        np.testing.assert_allclose(LongPromptEmbedder(inner, policy).embed(texts), inner.embed(texts))


def test_head_tail_is_the_normalised_mean_of_both_ends():
    inner = WordWindowEmbedder()
    text = "w1 w2 w3 w4 w5 w6 w7"
    got = LongPromptEmbedder(inner, "head_tail").embed([text, "x"])
    ends = inner.embed(["w1 w2 w3 w4", "w4 w5 w6 w7"])
    np.testing.assert_allclose(got[0], normalize(ends.sum(axis=0, keepdims=True))[0], atol=1e-6)


def test_long_texts_are_counted_and_warned_once(caplog):
    embedder = LongPromptEmbedder(WordWindowEmbedder(), "tail")
    with caplog.at_level(logging.DEBUG, logger="lmroute.embeddings.long_prompts"):
        embedder.embed(["a b c d e", "f"])
        embedder.embed(["a b c d e f g"])
    assert (embedder.embedded, embedder.truncated) == (3, 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "last 4 words are embedded" in warnings[0].getMessage()


def test_long_texts_are_counted_under_head_too(tmp_path, caplog):
    # router.prompt_embedder.truncated stayed 0 under head: only the inner embedder counted, and
    # behind the embedding cache it cannot be read and misses the texts the cache answers.
    from lmroute.embeddings.cache import CachedEmbedder

    embedder = LongPromptEmbedder(CachedEmbedder(WordWindowEmbedder(), directory=tmp_path), "head")
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.long_prompts"):
        for _ in range(2):  # the second time from the cache
            embedder.embed(["a b c d e", "f"])
    assert (embedder.embedded, embedder.truncated) == (4, 2)
    assert "were longer than the embedder reads; only their start is embedded" in caplog.text


def test_unknown_policy_is_refused():
    with pytest.raises(ConfigError, match="known: head, tail"):
        LongPromptEmbedder(WordWindowEmbedder(), "middle")


def test_minilm_windows_fit_the_model_and_cover_the_text(tmp_path, monkeypatch):
    from lmroute.embeddings.minilm import OnnxMiniLM

    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path))
    minilm = OnnxMiniLM()
    prefix = "Answer the question after these worked examples, step by step. " * 60
    texts = [prefix + "What is the capital of France?", "short"]
    spans = minilm.pieces(texts)
    assert spans[1] is None and spans[0] is not None and len(spans[0]) > 256
    for policy in ("tail", "windows"):
        windows = window_texts(texts[0], spans[0], minilm.window_size, policy)
        assert windows[-1].endswith("France?")
        minilm.truncated = 0
        minilm.embed(windows)
        assert minilm.truncated == 0  # every window is read whole by the model
    assert window_texts(texts[0], spans[0], minilm.window_size, "head")[0].startswith("Answer")


def test_minilm_finds_long_prompts_of_fewer_characters_than_word_pieces(tmp_path, monkeypatch):
    # a Hangul syllable is read as two or three word pieces (its jamo): a Korean prompt of 200
    # characters is 420 word pieces, cut by the model, but was taken for one the model reads whole,
    # so tail and head_tail embedded its head only
    from lmroute.embeddings.minilm import OnnxMiniLM

    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path))
    minilm = OnnxMiniLM()
    korean = "한국어 문장입니다 " * 19 + "질문은 마지막에"
    assert len(korean) < 254
    (spans,) = minilm.pieces([korean])
    assert spans is not None and len(spans) > 254
    windows = window_texts(korean, spans, minilm.window_size, "tail")
    assert windows[-1].endswith("질문은 마지막에")
    minilm.embed(windows)
    assert minilm.truncated == 0
    assert minilm.pieces(["é" * 200, "a" * 254]) == [None, None]  # one word piece a character


def test_caches_and_taps_in_front_of_the_embedder_keep_the_policy(tmp_path):
    from lmroute.control.drift import summary_projection
    from lmroute.control.taps import EmbeddingSummaries
    from lmroute.embeddings.cache import CachedEmbedder
    from lmroute.embeddings.memory import LruEmbedder

    texts = ["one two three four five six seven eight", "short text"]
    expected = LongPromptEmbedder(WordWindowEmbedder(), "head_tail").embed(texts)
    assert not np.allclose(expected[0], WordWindowEmbedder().embed(texts[:1])[0])  # not the head
    store = EmbeddingSummaries(summary_dim=8)
    for front in (
        CachedEmbedder(WordWindowEmbedder(), directory=tmp_path),
        LruEmbedder(WordWindowEmbedder()),
        store.tap(LruEmbedder(WordWindowEmbedder())),
    ):
        policy = LongPromptEmbedder(front, "head_tail")
        np.testing.assert_allclose(policy.embed(texts), expected, atol=1e-6)
        assert policy.truncated == 1
    # the tap keeps the summary of the vector the policy made of the long text's windows
    projection = summary_projection(expected.shape[1], 8)
    np.testing.assert_allclose(store.take("fake-words", texts[0]), expected[0] @ projection, atol=1e-5)
