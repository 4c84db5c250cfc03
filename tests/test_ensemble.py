"""ensemble: the weighted mean of its members' score quantiles; trains, saves, loads, refuses bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fake_embedder import HashEmbedder
from pydantic import Field

from lmroute import registry
from lmroute.data.battles import Battle
from lmroute.ensemble import EnsembleRouter
from lmroute.exceptions import CheckpointError, ConfigError, LmrouteError
from lmroute.registry import get_router_class, load_router
from lmroute.routers.base import Router, RouterConfig

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
MF = {"router": "mf", "options": {"dim": 16, "epochs": 25, "batch_size": 32, "lr": 1e-2, "noise": 0.02}}
SW = {"router": "sw_ranking", "options": {"num_tiers": 2}}
HARD = ["prove derive integral of this", "derive and prove the integral bound"]
EASY = ["hello chat joke please", "tell a joke and chat hello"]


def battles(n: int = 300) -> list[Battle]:
    """The strong model wins hard prompts, the weak one easy ones."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = f"{'prove derive integral' if hard else 'hello chat joke'} w{rng.integers(40)} {i}"
        out.append(Battle(prompt, STRONG, WEAK, "model_a" if hard else "model_b"))
    return out


class FixedConfig(RouterConfig):
    scores: dict[str, float] = Field(default_factory=dict)


class Fixed(Router[FixedConfig]):
    """A router whose scores are given per prompt (a stand-in member for combine())."""

    name = "fixed"
    config_class = FixedConfig

    def _score(self, prompts: list[str]) -> np.ndarray:
        return np.array([self.config.scores[p] for p in prompts])


@pytest.fixture(autouse=True)
def fixed_is_registered(monkeypatch):
    monkeypatch.setitem(registry._ROUTERS, "fixed", Fixed)


@pytest.fixture(scope="module")
def trained() -> EnsembleRouter:
    return EnsembleRouter(members=[MF, SW], embedder=HashEmbedder(64)).fit(battles())


def test_registered_and_learns_which_prompts_need_the_strong_model(trained):
    assert get_router_class("ensemble") is EnsembleRouter
    assert trained.score(HARD).min() > trained.score(EASY).max()
    assert [m.name for m in trained.members] == ["mf", "sw_ranking"]
    assert len(trained._arrays()["0.reference"]) == 300  # every distinct training prompt


def test_on_its_reference_prompts_it_is_the_weighted_rank_mean():
    prompts = [f"p{i}" for i in range(7)]
    a = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6])
    b = np.array([0.2, 0.4, 0.45, 0.9, 0.1, 0.3, 0.8])
    ensemble = EnsembleRouter.combine(
        [Fixed(scores=dict(zip(prompts, a, strict=True))), Fixed(scores=dict(zip(prompts, b, strict=True)))],
        prompts,
        weights=[3, 1],
    )
    rank_a, rank_b = a.argsort().argsort() + 1, b.argsort().argsort() + 1  # 1 = lowest
    mid = lambda rank: (2 * rank - 1) / (2 * len(prompts))  # noqa: E731
    np.testing.assert_allclose(ensemble.score(prompts), (3 * mid(rank_a) + mid(rank_b)) / 4)
    # a new prompt is placed among the reference scores, ties at their middle
    new = Fixed(scores={"x": 0.5}), Fixed(scores={"x": 2.0})
    ensemble.members = list(new)
    assert ensemble.score(["x"])[0] == pytest.approx((3 * (3.5 / 7) + 1.0) / 4)


def test_weights_too_large_to_sum_weigh_as_their_ratios():
    """Weights of 1e308 summed to inf, and every score was 0."""
    prompts = ["a", "b", "c", "d"]
    members = [
        Fixed(scores=dict(zip(prompts, [0.1, 0.4, 0.2, 0.9], strict=True))),
        Fixed(scores=dict(zip(prompts, [0.3, 0.1, 0.8, 0.5], strict=True))),
    ]
    huge = EnsembleRouter.combine(members, prompts, weights=[1e308, 1e308]).score(prompts)
    np.testing.assert_array_equal(huge, EnsembleRouter.combine(members, prompts).score(prompts))
    np.testing.assert_array_equal(huge, [0.25, 0.375, 0.625, 0.75])


def test_saves_and_loads_with_the_same_scores(trained, tmp_path):
    prompts = HARD + EASY + ["an unseen prompt about integrals"]
    trained.save(tmp_path / "ensemble")
    manifest = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    assert [m["router"] for m in manifest["config"]["members"]] == ["mf", "sw_ranking"]
    loaded = load_router(tmp_path / "ensemble")
    assert isinstance(loaded, EnsembleRouter)
    loaded.use_embedder(HashEmbedder(64))  # the fake embedder has no registered name to load by
    np.testing.assert_array_equal(loaded.score(prompts), trained.score(prompts))


def test_hands_an_embedder_to_the_members_of_its_name(trained):
    assert trained.embedder_name == "fake-hash"
    with pytest.raises(ConfigError, match="no member of this ensemble embeds with 'other'"):
        trained.use_embedder(HashEmbedder(64, name="other"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"members": [MF]}, "at least 2"),
        ({"members": [MF, {"router": "ensemble"}]}, "cannot be a member of an ensemble"),
        ({"members": [MF, {"router": "nope"}]}, "unknown router 'nope'"),
        ({"members": [MF, {"router": "random"}]}, "is random"),
        ({"members": [MF, {**SW, "weight": 0}]}, "greater than 0"),
        ({"members": [MF, {**SW, "options": {"num_tiers": "x"}}]}, "num_tiers"),
        ({"members": [MF, SW], "reference_prompts": 1}, "greater than or equal to 2"),
        ({"members": [MF, SW], "seed": -1}, "seed: Input should be greater than or equal to 0"),
        # it averaged P(strong beats weak) of two different pairs, the probability of neither
        (
            {"members": [MF, {**SW, "options": {"strong_model": "claude"}}]},
            r"compare different model pairs \(member 0 \(mf\) gpt-4-1106-preview vs .*; member 1 "
            r"\(sw_ranking\) claude vs",
        ),
    ],
)
def test_bad_configs_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        EnsembleRouter(**options)


def test_a_bad_member_is_the_one_error_not_also_too_few_members():
    # pydantic's length check counted only the valid members: one bad weight of two members also
    # said "Tuple should have at least 2 items after validation, not 1".
    with pytest.raises(ConfigError) as caught:
        EnsembleRouter(members=[MF, {**SW, "weight": float("nan")}])
    assert str(caught.value) == (
        "invalid options for router 'ensemble': members.1.weight: Input should be a finite number"
    )


def test_has_no_shipped_default_and_says_how_to_make_one():
    with pytest.raises(ConfigError, match="lmroute train ensemble"):
        load_router("ensemble")


def test_untrained_it_refuses_to_score_and_to_combine_without_prompts():
    with pytest.raises(LmrouteError, match="not trained"):
        EnsembleRouter(members=[MF, SW]).score(["a prompt"])
    with pytest.raises(ConfigError, match="two distinct reference prompts"):
        EnsembleRouter.combine([Fixed(scores={"a": 0.1}), Fixed(scores={"a": 0.2})], ["a"])
    with pytest.raises(ConfigError, match="2 routers but 1 weights"):
        EnsembleRouter.combine([Fixed(), Fixed()], ["a", "b"], weights=[1])


def test_a_checkpoint_without_reference_scores_is_refused(trained, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = trained.save(tmp_path / "ensemble")
    arrays = load_file(str(folder / "weights.safetensors"))
    del arrays["1.reference"]
    save_file(arrays, str(folder / "weights.safetensors"))
    manifest = json.loads((folder / "config.json").read_text())
    manifest["weights"]["sha256"] = None
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"member 1 \(sw_ranking\) has no reference scores"):
        load_router(folder)


@pytest.mark.parametrize("saved", [["models"], "trained"])
def test_a_member_metadata_that_is_not_an_object_is_refused(trained, tmp_path, saved):
    """It was given to dict(): a TypeError or ValueError traceback."""
    folder = trained.save(tmp_path / "ensemble")
    manifest = json.loads((folder / "config.json").read_text())
    manifest["metadata"]["members"][0] = saved
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"member 0 \(mf\): its metadata is not an object"):
        load_router(folder)


def test_served_it_gives_its_members_one_embedder_without_the_disk_cache(tmp_path):
    from lmroute.embeddings.cache import CachedEmbedder
    from lmroute.serving.loading import load_routers

    members = [load_router("mf").with_embedder("minilm"), load_router("sw_ranking")]
    prompts = HARD + EASY
    directory = EnsembleRouter.combine(members, prompts).save(tmp_path / "ensemble")
    served = load_routers([f"both={directory}"])["both"]
    assert isinstance(served, EnsembleRouter)
    embedders = [member.embedder for member in served.members]
    assert embedders[0] is embedders[1] and not isinstance(embedders[0], CachedEmbedder)
    np.testing.assert_allclose(served.score(prompts), EnsembleRouter.combine(members, prompts).score(prompts))


def test_combine_refuses_what_is_not_routers_or_prompts(tmp_path):
    members = [Fixed(scores={"a": 0.1, "b": 0.2}), Fixed(scores={"a": 0.3, "b": 0.1})]
    with pytest.raises(ConfigError, match="router 1 is a str, not a trained lmroute Router"):
        EnsembleRouter.combine([members[0], "length"], ["a", "b"])
    # a string's characters are no sample of traffic
    with pytest.raises(ConfigError, match="not a single string"):
        EnsembleRouter.combine(members, "ab")
    # an untrained ensemble cannot be saved into a directory that would not load
    with pytest.raises(ConfigError, match="not trained"):
        EnsembleRouter(members=[MF, SW]).save(tmp_path / "untrained")
    assert not (tmp_path / "untrained" / "config.json").exists()


class _Fails(Router[RouterConfig]):
    """A member whose fit fails."""

    name = "fails"

    def fit(self, battles, *, progress=False):
        raise LmrouteError("this member cannot learn from these battles")

    def _score(self, prompts: list[str]) -> np.ndarray:
        return np.full(len(prompts), 0.5)


def test_a_fit_that_fails_half_way_leaves_it_untrained(monkeypatch):
    # The members before a failing one are refitted: it scored on, their new scores read against
    # the old reference scores (silently moved quantiles; here the first member learns nothing).
    monkeypatch.setitem(registry._ROUTERS, "fails", _Fails)
    ensemble = EnsembleRouter.combine([Fixed(scores={"a": 0.1, "b": 0.2}), _Fails()], ["a", "b"])
    with pytest.raises(LmrouteError, match="cannot learn"):
        ensemble.fit(battles(10))
    with pytest.raises(LmrouteError, match="not trained"):
        ensemble.score(["a"])


def test_fits_on_an_iterator_of_battles():
    # every member reads the battles, and then the ensemble their prompts: one pass would leave none
    members = [SW, {"router": "length"}]
    ensemble = EnsembleRouter(members=members, embedder=HashEmbedder(64)).fit(iter(battles(60)))
    assert len(ensemble._arrays()["0.reference"]) == 60
