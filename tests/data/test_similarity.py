"""The benchmark–dataset similarity score on hand-made embeddings, checked by hand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from lmroute.data.similarity import ALL_SOURCES, nearest_similarities, similarity_report
from lmroute.embeddings.base import Embedder
from lmroute.exceptions import ConfigError, DataError

# Three prompts and two training sources in 3-d. Cosines, by hand:
#          a1 = (0.8, 0.6, 0)   a2 = (0, 0, 1)   b1 = (0, 1, 0)   b2 = (-1, 0, 0)
# q1 = (1, 0, 0)     0.8             0               0               -1
# q2 = (0, 1, 0)     0.6             0               1                0
# q3 = (0.6, 0.8, 0) 0.96            0               0.8             -0.6
VECTORS = {
    "q1": [1, 0, 0],
    "q2": [0, 1, 0],
    "q3": [3, 4, 0],  # not unit length: (0.6, 0.8, 0) once normalised
    "a1": [8, 6, 0],
    "a2": [0, 0, 1],
    "b1": [0, 1, 0],
    "b2": [-2, 0, 0],
}
CUTS = (0.95, 0.9, 0.7, 0.5)


class TableEmbedder(Embedder):
    """Looks each text up in a table, and records what it was asked to embed."""

    name = "table"
    dim = 3

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.append(list(texts))
        return np.asarray([VECTORS[t] for t in texts], dtype=np.float32)


def report(**sources):
    return similarity_report(["q1", "q2", "q3"], sources, embedder=TableEmbedder(), name="bench", cuts=CUTS)


def test_each_prompts_nearest_training_prompt_and_the_mean():
    rep = report(A=["a1", "a2"], B=["b1", "b2"])
    a, b = rep.sources
    assert a.nearest == pytest.approx([0.8, 0.6, 0.96], abs=1e-6)
    assert b.nearest == pytest.approx([0.0, 1.0, 0.8], abs=1e-6)
    assert a.score == pytest.approx(2.36 / 3, abs=1e-6)
    assert b.score == pytest.approx(0.6, abs=1e-6)
    assert a.median == pytest.approx(0.8, abs=1e-6)


def test_overall_is_the_nearest_over_every_source():
    rep = report(A=["a1", "a2"], B=["b1", "b2"])
    assert rep.overall.source == ALL_SOURCES and rep.overall.train_prompts == 4
    assert rep.overall.nearest == pytest.approx([0.8, 1.0, 0.96], abs=1e-6)
    assert rep.overall.score == pytest.approx(0.92, abs=1e-6)


def test_shares_at_each_cut():
    rep = report(A=["a1", "a2"], B=["b1", "b2"])
    assert rep.overall.shares == pytest.approx({0.95: 2 / 3, 0.9: 2 / 3, 0.7: 1.0, 0.5: 1.0})
    assert rep.sources[1].shares == pytest.approx({0.95: 1 / 3, 0.9: 1 / 3, 0.7: 2 / 3, 0.5: 2 / 3})
    assert rep.sources[0].to_dict()["share_at_least"] == {
        "0.95": pytest.approx(1 / 3, abs=1e-6),
        "0.9": pytest.approx(1 / 3, abs=1e-6),
        "0.7": pytest.approx(2 / 3, abs=1e-6),
        "0.5": 1.0,
    }


def test_all_but_one_source_is_the_other_sources_figure():
    rep = report(A=["a1", "a2"], B=["b1", "b2"], C=["a2"])
    assert rep.without("A").nearest == pytest.approx([0.0, 1.0, 0.8], abs=1e-6)
    assert rep.without("B").score == pytest.approx(2.36 / 3, abs=1e-6)
    assert rep.without("C").score == pytest.approx(0.92, abs=1e-6)
    assert [s["without"]["score"] for s in rep.to_dict()["sources"]] == pytest.approx(
        [0.6, 2.36 / 3, 0.92], abs=1e-6
    )
    with pytest.raises(ConfigError, match="not one of the sources"):
        rep.without("D")
    with pytest.raises(ConfigError, match="only source"):
        report(A=["a1"]).without("A")


def test_repeated_training_prompts_count_once_and_are_embedded_once():
    embedder = TableEmbedder()
    rep = similarity_report(["q1", "q2", "q3"], {"A": ["a1", "a2", "a1"]}, embedder=embedder, cuts=CUTS)
    assert rep.sources[0].train_prompts == 2
    assert embedder.asked == [["q1", "q2", "q3"], ["a1", "a2"]]


def test_the_table_and_the_dict_carry_the_figures():
    rep = report(A=["a1", "a2"], B=["b1", "b2"])
    text = rep.describe()
    assert "bench: 3 prompts" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]}
    assert rows["A"][:3] == ["A", "2", "0.7867"] and rows["A"][-1] == "0.6000"
    assert rows["all"][3:5] == ["0.9200", "0.9600"]  # "all sources" is two words
    data = rep.to_dict()
    assert data["overall"]["score"] == pytest.approx(0.92, abs=1e-6) and data["prompts"] == 3


def test_chunked_search_equals_the_full_product():
    rng = np.random.default_rng(0)
    queries, corpus = rng.normal(size=(37, 8)), rng.normal(size=(23, 8))
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    full = (q @ c.T).max(axis=1)
    assert nearest_similarities(queries, corpus, chunk_bytes=1) == pytest.approx(full, abs=1e-6)
    assert nearest_similarities(queries, corpus, chunk_bytes=4 * 23 * 5) == pytest.approx(full, abs=1e-6)


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="no prompts"):
        similarity_report([], {"A": ["a1"]}, embedder=TableEmbedder())
    with pytest.raises(ConfigError, match="no training sources"):
        similarity_report(["q1"], {}, embedder=TableEmbedder())
    with pytest.raises(DataError, match="source 'A' has no prompts"):
        similarity_report(["q1"], {"A": []}, embedder=TableEmbedder())
    with pytest.raises(ConfigError, match="cuts"):
        similarity_report(["q1"], {"A": ["a1"]}, embedder=TableEmbedder(), cuts=[1.5])
    with pytest.raises(ConfigError, match="one width"):
        nearest_similarities(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ConfigError, match="no rows"):
        nearest_similarities(np.ones((2, 3)), np.ones((0, 3)))
