"""The embedding routers' long-prompt policy: used in training and scoring, saved, and read as
``head`` from checkpoints saved before it existed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fake_embedder import WordWindowEmbedder

from lmroute.data.battles import Battle
from lmroute.routers._embedding_pair import LONG_PROMPTS_DEFAULT
from lmroute.routers.mf import MFRouter
from lmroute.routers.sw_ranking import SWRankingRouter

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
PREFIX = "examples one two three four five six seven eight"
ROUTERS = {
    "mf": (MFRouter, {"dim": 8, "epochs": 30, "batch_size": 16, "lr": 1e-2, "noise": 0.0}),
    "sw_ranking": (SWRankingRouter, {"num_tiers": 2}),
}


def prefixed_battles() -> list[Battle]:
    """Every prompt opens with the same eight words; the strong model wins 'prove' questions."""
    battles = []
    for i in range(120):
        hard = i % 2 == 0
        prompt = f"{PREFIX} {'prove derive bound' if hard else 'hello joke chat'} {i}"
        battles.append(Battle(prompt, STRONG, WEAK, "model_a" if hard else "model_b"))
    return battles


@pytest.mark.parametrize("name", ROUTERS)
def test_a_router_trained_on_tails_tells_prefixed_prompts_apart(name, tmp_path):
    cls, options = ROUTERS[name]
    embedder = WordWindowEmbedder(limit=4, dim=64)
    battles = prefixed_battles()
    head = cls(embedder=embedder, long_prompts="head", **options).fit(battles)
    tail = cls(embedder=embedder, long_prompts="tail", **options).fit(battles)
    queries = [f"{PREFIX} prove derive bound 999", f"{PREFIX} hello joke chat 999"]
    assert np.ptp(head.score(queries)) < 1e-9  # the first four words are all it sees
    hard, easy = tail.score(queries)
    assert hard > 0.5 > easy
    loaded = cls.load(tail.save(tmp_path / name), embedder=embedder)
    assert loaded.config.long_prompts == "tail"
    np.testing.assert_allclose(loaded.score(queries), [hard, easy])
    assert loaded.prompt_embedder.truncated == 2  # long prompts are counted


@pytest.mark.parametrize("name", ROUTERS)
def test_checkpoints_from_before_the_policy_load_as_head(name, tmp_path):
    cls, options = ROUTERS[name]
    embedder = WordWindowEmbedder(limit=4, dim=64)
    router = cls(embedder=embedder, long_prompts="head", **options).fit(prefixed_battles())
    folder = router.save(tmp_path / name)
    manifest = json.loads((folder / "config.json").read_text())
    del manifest["config"]["long_prompts"]
    (folder / "config.json").write_text(json.dumps(manifest))
    assert cls.load(folder, embedder=embedder).config.long_prompts == "head"
    assert cls(embedder=embedder).config.long_prompts == LONG_PROMPTS_DEFAULT


def test_with_long_prompts_changes_only_how_long_prompts_are_read():
    cls, options = ROUTERS["mf"]
    embedder = WordWindowEmbedder(limit=4, dim=64)
    router = cls(embedder=embedder, long_prompts="head", **options).fit(prefixed_battles())
    other = router.with_long_prompts("tail")
    assert other.config.long_prompts == "tail" and router.config.long_prompts == "head"
    short = ["prove derive", "hello joke"]
    np.testing.assert_array_equal(other.score(short), router.score(short))
    long = [f"{PREFIX} prove derive bound", f"{PREFIX} hello joke chat"]
    assert np.ptp(router.score(long)) < 1e-9 < np.ptp(other.score(long))
