"""Deduplication across sources and decontamination (exact, and near duplicates with a fake embedder)."""

from __future__ import annotations

import hashlib
import sys
import types
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from lmroute.data.battles import Battle
from lmroute.data.decontaminate import (
    DUPLICATE,
    EXACT,
    NEAR,
    decontaminate,
    deduplicate,
    max_similarity,
    normalize_prompt,
)
from lmroute.embeddings.base import Embedder
from lmroute.exceptions import ConfigError

DIM = 256


def _unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


class TableEmbedder(Embedder):
    """Vectors from a table; other texts get a hashed random direction (nearly orthogonal to all)."""

    name = "fake-table"
    dim = DIM

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        rows = []
        for text in texts:
            if text in self.table:
                rows.append(self.table[text])
                continue
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows).astype(np.float32)


def _at_cosine(cos: float) -> np.ndarray:
    """A unit vector whose cosine with _unit(0) is ``cos``."""
    return (cos * _unit(0) + np.sqrt(1 - cos**2) * _unit(1)).astype(np.float32)


def b(prompt: str, a: str = "x", bb: str = "y", winner: str = "model_a", source: str = "s") -> Battle:
    return Battle(prompt, a, bb, winner, source)  # type: ignore[arg-type]


def test_normalize_prompt():
    assert normalize_prompt("  What IS\n\t2+2? ") == "what is 2+2?"
    assert normalize_prompt("Straße") == normalize_prompt("STRASSE")
    # one text to a reader: composed and decomposed accents, compatibility forms, invisible marks
    assert normalize_prompt("caf\u00e9") == normalize_prompt("cafe\u0301") == "caf\u00e9"
    assert normalize_prompt("\ufb01le \uff21") == "file a"
    assert normalize_prompt("\ufeffzero\u200bwidth") == "zerowidth"


def test_exact_matching_sees_through_unicode_forms():
    decomposed = b("Qu'est-ce qu'un cafe\u0301 ?")
    kept, report = decontaminate([decomposed], ["qu'est-ce qu'un caf\u00e9 ?"], threshold=None)
    assert kept == [] and report.dropped == {EXACT: Counter({"s": 1})}
    kept, _ = deduplicate([decomposed, b("Qu'est-ce qu'un caf\u00e9 ?", source="other")])
    assert kept == [decomposed]


def test_dedup_keeps_repeated_votes_within_a_source_and_collapses_copies_across_sources():
    arena_hard = [b("Sort a list", source="arena-hard")] * 2  # two games of one pair: two votes
    export = [
        b("sort a  LIST", source="export"),  # the same vote, spelled differently
        b("Sort a list", "y", "x", "model_b", source="export"),  # the same vote, sides swapped
        b("Sort a list", winner="tie", source="export"),  # a different vote
    ]
    kept, report = deduplicate([*arena_hard, *export])
    assert kept == [*arena_hard, export[2]]
    assert report.dropped == {DUPLICATE: Counter({"export": 2})}
    assert (report.total, report.kept) == (5, 3)
    assert "dropped 2 duplicate" in str(report)


def test_dedup_by_explicit_origins():
    same = [b("p", source="alpaca-eval")] * 3
    kept, report = deduplicate(same, origins=[0, 1, 1])  # origin 1 has it twice: keep two
    assert kept == same[:2] and report.dropped[DUPLICATE]["alpaca-eval"] == 1
    with pytest.raises(ConfigError, match="2 origins for 3 battles"):
        deduplicate(same, origins=[0, 1])
    kept, report = deduplicate(same)  # one origin: repeated votes are all kept
    assert kept == same and not report.dropped


def test_exact_decontamination_needs_no_embedder():
    battles = [b("What is 2+2?"), b("what is   2+2?", source="t"), b("Write a poem")]
    kept, report = decontaminate(battles, ["WHAT IS 2+2?"], threshold=None)
    assert kept == [battles[2]]
    assert report.dropped == {EXACT: Counter({"s": 1, "t": 1})}
    assert report.embedder is None and report.matched == Counter({"eval": 2})


def test_near_duplicates_by_cosine_cut_off():
    table = {
        "Eval: integrate x^2": _unit(0),
        "train close": _at_cosine(0.97),
        "train borderline below": _at_cosine(0.94),
        "train far": _at_cosine(0.5),
    }
    embedder = TableEmbedder(table)
    battles = [b(p) for p in ("train close", "train borderline below", "train far", "train close")]
    battles.append(b("EVAL:  integrate X^2", source="u"))
    kept, report = decontaminate(battles, ["Eval: integrate x^2"], embedder=embedder, threshold=0.95)
    assert [x.prompt for x in kept] == ["train borderline below", "train far"]
    assert report.dropped == {EXACT: Counter({"u": 1}), NEAR: Counter({"s": 2})}
    assert report.embedder == "fake-table" and report.threshold == 0.95
    assert embedder.seen.count("train close") == 1  # each distinct prompt embedded once
    assert "EVAL:  integrate X^2" not in embedder.seen  # exact matches are not embedded
    assert report.borderline_dropped[0]["similarity"] == pytest.approx(0.97, abs=1e-4)
    assert report.closest_kept[0]["train"] == "train borderline below"
    assert report.closest_kept[0]["similarity"] == pytest.approx(0.94, abs=1e-4)
    embedder.table["same direction"] = _unit(0)
    at_cut_off, _ = decontaminate(
        [b("same direction")], ["Eval: integrate x^2"], embedder=embedder, threshold=1
    )
    assert at_cut_off == []  # cosine exactly 1.0 is >= the cut-off 1.0: dropped
    # The same direction, not along an axis: float32 rounding puts many such cosines at 1 - 5e-7.
    rng = np.random.default_rng(0)
    for i in range(20):
        v = rng.standard_normal(DIM).astype(np.float32)
        embedder.table[f"train {i}"], embedder.table[f"eval {i}"] = v, 3 * v
    train = [b(f"train {i}") for i in range(20)]
    same, _ = decontaminate(train, [f"eval {i}" for i in range(20)], embedder=embedder, threshold=1)
    assert same == []
    by_default, report = decontaminate(battles, ["Eval: integrate x^2"], embedder=embedder)
    assert [x.prompt for x in by_default] == ["train far"] and report.threshold == 0.90


def test_named_evaluation_sets_are_credited():
    battles = [b("alpha"), b("beta"), b("gamma")]
    kept, report = decontaminate(battles, {"mmlu": ["Alpha"], "gsm8k": ["beta", "alpha"]}, threshold=None)
    assert kept == [battles[2]]
    assert report.matched == Counter({"gsm8k": 2, "mmlu": 1})
    assert report.to_dict()["matched"] == {"gsm8k": 2, "mmlu": 1}


def test_default_embedder_is_minilm_loaded_lazily(monkeypatch):
    made = []

    def get_embedder(name: str = "minilm", **options):
        made.append(name)
        return TableEmbedder({"train": _unit(3), "eval": _unit(3)})

    monkeypatch.setitem(sys.modules, "lmroute.embeddings", types.SimpleNamespace(get_embedder=get_embedder))
    kept, report = decontaminate([b("train")], ["eval"])
    assert made == ["minilm"] and kept == [] and report.dropped[NEAR]["s"] == 1


def test_bad_threshold_and_bad_embedder():
    with pytest.raises(ConfigError, match="threshold"):
        decontaminate([b("p")], ["q"], threshold=1.5)

    class Broken(TableEmbedder):
        def embed(self, texts):
            return np.zeros((1, DIM), dtype=np.float32)

    with pytest.raises(ConfigError, match="returned shape"):
        decontaminate([b("p"), b("r")], ["q"], embedder=Broken({}))


def test_chunked_similarity_matches_one_matrix_product():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((257, 16)).astype(np.float32)
    r = rng.standard_normal((91, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    full = q @ r.T
    sim, idx = max_similarity(q, r, chunk_bytes=4 * 91 * 10)  # 10 rows at a time
    np.testing.assert_allclose(sim, full.max(axis=1), rtol=1e-6)
    assert np.array_equal(idx, full.argmax(axis=1))
    empty_sim, _ = max_similarity(q, r[:0])
    assert np.isneginf(empty_sim).all()
