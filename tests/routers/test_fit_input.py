"""mf and sw_ranking: what fit() takes from code (not from a reader), and a failed refit."""

from __future__ import annotations

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.data.battles import Battle
from lmroute.exceptions import DataError, LmrouteError
from lmroute.routers.mf import MFRouter
from lmroute.routers.sw_ranking import SWRankingRouter

STRONG, WEAK, OTHER = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "llama-2-13b"
PROMPTS = ["prove the integral bound", "hello tell a joke"]


def battles(n: int = 90) -> list[Battle]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a, b = (str(m) for m in rng.permutation([STRONG, WEAK, OTHER])[:2])
        prompt = f"{'prove integral' if i % 2 else 'hello joke'} {i}"
        out.append(Battle(prompt, a, b, "model_a" if i % 3 else "model_b"))
    return out


def make(kind: str) -> MFRouter | SWRankingRouter:
    if kind == "mf":
        return MFRouter(embedder=HashEmbedder(32), dim=8, epochs=3, lr=1e-2)
    return SWRankingRouter(embedder=HashEmbedder(32), num_tiers=3)


@pytest.mark.parametrize("kind", ["mf", "sw_ranking"])
def test_a_failed_refit_leaves_the_trained_router_as_it_was(kind):
    router = make(kind).fit(battles())
    scores, vocabulary = router.score(PROMPTS), router.vocabulary
    metadata = router.metadata.copy()
    # refits that fail after the new data is indexed: a vocabulary without the weak model, and
    # (for mf, which drops ties) one where WEAK takes the index OTHER has in the trained router
    failing = [[Battle(f"t{i}", STRONG, "zzz", "model_a") for i in range(20)]]
    if kind == "mf":
        failing.append([Battle(f"t{i}", STRONG, WEAK if i % 2 else "zzz", "tie") for i in range(20)])
    for bad in failing:
        with pytest.raises(LmrouteError):
            router.fit(bad)
        assert router.vocabulary == vocabulary and router.metadata == metadata
        np.testing.assert_array_equal(router.score(PROMPTS), scores)


@pytest.mark.parametrize("kind", ["mf", "sw_ranking"])
def test_fit_takes_an_iterator_of_battles(kind):
    given = battles()
    expected = make(kind).fit(given).score(PROMPTS)
    np.testing.assert_array_equal(make(kind).fit(iter(given)).score(PROMPTS), expected)


@pytest.mark.parametrize("kind", ["mf", "sw_ranking"])
@pytest.mark.parametrize("weight", [float("nan"), float("inf"), 0.0, -1.0, "2"])
def test_a_battle_weight_that_is_not_a_positive_number_is_a_data_error(kind, weight):
    bad = battles()
    bad[5] = Battle(bad[5].prompt, bad[5].model_a, bad[5].model_b, bad[5].winner, weight=weight)
    with pytest.raises(DataError, match=r"battle 5 has weight .*positive finite"):
        make(kind).fit(bad)


@pytest.mark.parametrize("kind", ["mf", "sw_ranking"])
def test_items_that_are_not_battles_are_a_data_error(kind):
    record = {"prompt": "x", "model_a": STRONG, "model_b": WEAK, "winner": "model_a"}
    with pytest.raises(DataError, match="battle 1 is a dict"):
        make(kind).fit([battles()[0], record])
    with pytest.raises(DataError, match="not a string"):
        make(kind).fit("battles.jsonl")


@pytest.mark.parametrize("kind", ["mf", "sw_ranking"])
@pytest.mark.parametrize("name", ["", " ", None, 5])
def test_a_battle_whose_model_is_not_named_is_a_data_error(kind, name):
    """A model named "" was trained and saved into a checkpoint that cannot be loaded; a name that
    is not a string was a TypeError where the vocabulary is sorted."""
    bad = battles()
    bad[7] = Battle(bad[7].prompt, bad[7].model_a, name, bad[7].winner)
    with pytest.raises(DataError, match=r"battle 7 has model .*: a model name is a non-blank string"):
        make(kind).fit(bad)
