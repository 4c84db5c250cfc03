"""N-model prediction (Router.predict_quality) and onboarding a new model (Router.onboard)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.data.battles import Battle
from lmroute.exceptions import CheckpointError, ConfigError, DataError, UnknownModelError
from lmroute.registry import get_router_class, load_router
from lmroute.routers.mf import MFRouter
from lmroute.routers.sw_ranking import SWRankingRouter
from lmroute.shrinkage import QualityShrinkage

MODELS = ["alpha", "beta", "gamma"]
FAST = {"dim": 16, "epochs": 25, "batch_size": 32, "lr": 1e-2, "noise": 0.02, "ties": "half"}
PAIR = {"strong_model": "alpha", "weak_model": "gamma"}


def battles(seed: int, n: int, models: list[str], *, math_champion: str = "alpha") -> list[Battle]:
    """The earlier model of a pair wins chat prompts; ``math_champion`` wins every math battle it is in."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        math = i % 2 == 0
        prompt = f"{'integral derive prove' if math else 'hello joke chat'} w{rng.integers(40)} {i}"
        a, b = (str(m) for m in rng.choice(models, size=2, replace=False))
        if math and math_champion in (a, b):
            winner = "model_a" if a == math_champion else "model_b"
        else:
            winner = "model_a" if models.index(a) < models.index(b) else "model_b"
        out.append(Battle(prompt, a, b, winner))
    return out


@pytest.fixture(scope="module")
def mf() -> MFRouter:
    return MFRouter(embedder=HashEmbedder(64), **FAST, **PAIR).fit(battles(0, 600, MODELS))


def test_quality_has_one_column_per_model_and_ranks_them(mf):
    q = mf.predict_quality(["hello joke chat x", "integral derive prove y"], ["gamma", "alpha", "beta"])
    assert q.shape == (2, 3) and q.dtype == np.float64
    assert q[0].argmax() == 1 and q[0].argmin() == 0  # alpha > beta > gamma
    assert mf.predict_quality([], MODELS).shape == (0, 3)


def test_the_two_model_score_is_the_special_case(mf):
    prompts = ["hello joke chat a", "integral derive prove b", "something else"]
    q = mf.predict_quality(prompts, ["alpha", "gamma"])
    logit = np.log(q / (1 - q))
    np.testing.assert_allclose(1 / (1 + np.exp(-(logit[:, 0] - logit[:, 1]))), mf.score(prompts), atol=1e-9)


def test_one_embedding_call_however_many_models(mf):
    embedder = HashEmbedder(64)
    mf.use_embedder(embedder)
    mf.predict_quality(["a b", "c d"], MODELS)
    assert embedder.calls == 1


def test_a_model_the_shrinkage_lacks_is_refused_before_the_prompts_are_embedded(mf):
    # It was refused only after every prompt was embedded: minutes of `lmroute score` on a big file.
    means = np.array([0.6, 0.4])
    shrunk = mf.with_shrinkage(QualityShrinkage(("alpha", "beta"), means, means, 0.5))
    embedder = HashEmbedder(64)
    shrunk.use_embedder(embedder)
    with pytest.raises(ConfigError, match="cannot put gamma on that scale"):
        shrunk.predict_quality(["a b", "c d"], ["alpha", "gamma"])
    assert embedder.calls == 0


def test_a_batch_of_no_prompts_still_refuses_a_model_the_router_or_its_shrinkage_lacks(mf):
    # lmroute calibrate and lmroute shrink ask with no prompt to check a router before reading (or
    # downloading) the prompts: an unknown model, or one its shrinkage lacks, passed that check
    # with an empty (0, k) array and failed only after the prompts were read.
    with pytest.raises(UnknownModelError, match="'delta' not in this mf router's vocabulary"):
        mf.predict_quality([], ["alpha", "delta"])
    means = np.array([0.6, 0.4])
    shrunk = mf.with_shrinkage(QualityShrinkage(("alpha", "beta"), means, means, 0.5))
    with pytest.raises(ConfigError, match="cannot put gamma on that scale"):
        shrunk.predict_quality([], ["alpha", "gamma"])
    assert shrunk.predict_quality([], ["beta", "alpha"]).shape == (0, 2)


@pytest.mark.parametrize("kind", ["mf", "sw_ranking"])
def test_an_untrained_router_says_so_when_asked_for_qualities(kind):
    # sw_ranking raised AttributeError ('_tiers'), mf that 'alpha' was not among its "0 models: ".
    router = get_router_class(kind)(embedder=HashEmbedder(64), **PAIR)
    assert router.predict_quality([], MODELS).shape == (0, 3)  # whether it can: it can, once trained
    with pytest.raises(ConfigError, match=f"this {kind} router is not trained"):
        router.predict_quality(["hello"], MODELS)


def test_shipped_mf_predicts_quality_and_matches_its_score():
    router = load_router("mf")
    prompts = ["What is 2+2?", "Prove that there are infinitely many primes."]
    models = [router.config.strong_model, router.config.weak_model, router.vocabulary[0]]
    q = router.predict_quality(prompts, models)
    logit = np.log(q / (1 - q))
    np.testing.assert_allclose(
        1 / (1 + np.exp(-(logit[:, 0] - logit[:, 1]))), router.score(prompts), atol=1e-9
    )


def test_an_unknown_model_lists_the_vocabulary_and_names_onboarding(mf):
    with pytest.raises(UnknownModelError) as info:
        mf.predict_quality(["x"], ["alpha", "delta"])
    message = str(info.value)
    assert "'delta'" in message and "alpha, beta, gamma" in message and "lmroute onboard" in message


@pytest.mark.parametrize(
    "models, message",
    [
        (["alpha", "alpha"], "named twice"),
        ([], "list of model names"),
        ("alpha", "not a single string"),
        (None, "sequence of model names, got NoneType"),  # a TypeError traceback from list()
    ],
)
def test_bad_model_lists(mf, models, message):
    with pytest.raises(ConfigError, match=message):
        mf.predict_quality(["x"], models)


@pytest.mark.parametrize("name", ["random", "length"])
def test_routers_without_a_vocabulary_say_they_cannot(name):
    router = load_router(name)
    with pytest.raises(ConfigError, match="scores only its two models"):
        router.predict_quality(["x"], ["a", "b"])
    with pytest.raises(ConfigError, match="cannot onboard"):
        router.onboard("a", [])
    assert router.vocabulary == ()


def test_sw_ranking_predicts_quality_consistent_with_its_score():
    router = SWRankingRouter(embedder=HashEmbedder(64), num_tiers=3, **PAIR).fit(battles(1, 300, MODELS))
    prompts = ["hello joke chat q", "integral derive prove r"]
    q = router.predict_quality(prompts, ["alpha", "gamma", "beta"])
    logit = np.log(q / (1 - q))
    np.testing.assert_allclose(
        1 / (1 + np.exp(-(logit[:, 0] - logit[:, 1]))), router.score(prompts), atol=1e-9
    )
    assert (q[:, 0] > q[:, 1]).all()


def probe(model: str, outcome: str, n: int = 120) -> list[Battle]:
    """Battles of ``model`` against each known model, all ending in ``outcome`` for it."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        prompt = f"{'integral derive prove' if i % 2 else 'hello joke chat'} w{rng.integers(40)} {i}"
        other = MODELS[i % 3]
        out.append(Battle(prompt, model, other, "model_a" if outcome == "wins" else "model_b"))
    return out


def test_onboarding_learns_a_new_model_from_battles_with_everything_else_frozen(mf, tmp_path):
    """A new model that beats every known model ranks first once onboarded, one that loses to all
    ranks last; the known models' predictions do not move."""
    prompts = ["integral derive prove z", "hello joke chat z"]
    best = mf.onboard("delta", probe("delta", "wins"))
    assert best.vocabulary == (*MODELS, "delta") and mf.vocabulary == tuple(MODELS)
    q = best.predict_quality(prompts, [*MODELS, "delta"])
    assert (q.argmax(axis=1) == 3).all()
    worst = mf.onboard("omega", probe("omega", "loses")).predict_quality(prompts, [*MODELS, "omega"])
    assert (worst.argmin(axis=1) == 3).all()
    np.testing.assert_allclose(q[:, :3], mf.predict_quality(prompts, MODELS), atol=1e-12)
    np.testing.assert_array_equal(best.score(prompts), mf.score(prompts))
    assert best.metadata["onboarded"]["delta"]["opponents"] == MODELS
    assert best.metadata["onboarded"]["delta"]["battles"] == 120
    loaded = MFRouter.load(best.save(tmp_path / "r"), embedder=HashEmbedder(64))
    np.testing.assert_allclose(loaded.predict_quality(prompts, ["delta"]), q[:, 3:], atol=1e-6)


@pytest.mark.parametrize(
    "onboarded", [5, "delta", ["delta", "x"], {"x": {}}, dict.fromkeys([*MODELS, "delta"])]
)
def test_a_saved_router_with_a_damaged_record_of_its_onboarded_models_is_a_checkpoint_error(
    mf, tmp_path, onboarded
):
    # It loaded, then its first N-model prediction was a TypeError traceback (5), or a string was
    # read as its letters and every model's quality moved without a word.
    folder = mf.onboard("delta", probe("delta", "wins")).save(tmp_path / "r")
    manifest = json.loads((folder / "config.json").read_text())
    manifest["metadata"]["onboarded"] = onboarded
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"metadata\.onboarded must map some of its models"):
        MFRouter.load(folder, embedder=HashEmbedder(64))


def test_onboarding_refuses_what_it_cannot_learn(mf):
    with pytest.raises(ConfigError, match="already in this mf router's vocabulary"):
        mf.onboard("alpha", [])
    with pytest.raises(DataError, match="no usable battle of 'delta'"):
        mf.onboard("delta", [Battle("x", "delta", "omega", "model_a")])
    # an infinite prior fitted a vector of NaNs, whose router predicted 0.5 on every prompt
    # a string was a TypeError traceback, True a prior of 1
    for prior in (float("inf"), float("nan"), -1.0, "5", True, None):
        with pytest.raises(ConfigError, match="the prior must be a finite number"):
            mf.onboard("delta", probe("delta", "wins"), prior=prior)


@pytest.mark.parametrize("weight", [float("nan"), 0.0, -1.0, float("inf")])
def test_onboarding_refuses_battles_of_no_weight_as_fit_does(mf, weight):
    # Built in code, they skipped the readers' checks: the new model's vector came out NaN (or the
    # average's) and it was predicted 0.5 on every prompt, without a word.
    battles = probe("delta", "wins")
    battles[7] = dataclasses.replace(battles[7], weight=weight)
    with pytest.raises(DataError, match=r"battle 7 has weight .*: a weight is a positive finite number"):
        mf.onboard("delta", battles)
    with pytest.raises(DataError, match="battle 0 is a dict, not an lmroute Battle"):
        mf.onboard("delta", [{"prompt": "x", "model_a": "delta", "model_b": "alpha", "winner": "model_a"}])


def test_a_probe_of_ties_only_says_the_router_drops_ties():
    # It asked for known models' scores beside the new model's, which every battle had.
    config = {**FAST, "ties": "drop"}
    drops = MFRouter(embedder=HashEmbedder(64), **config, **PAIR).fit(battles(0, 60, MODELS))
    ties = [Battle(f"x{i}", "delta", "alpha", "tie") for i in range(2)]
    with pytest.raises(DataError, match="all 2 battles of 'delta' against models this router knows are ties"):
        drops.onboard("delta", ties)


@pytest.mark.parametrize("name", ["sw_ranking", "length"])
def test_routers_that_cannot_onboard_do_not_claim_they_can(name):
    router = get_router_class(name)()
    with pytest.raises(ConfigError, match="only mf learns") as error:
        router.onboard("new", [Battle("x", "new", "old", "model_a")])
    assert "(mf, sw_ranking)" not in str(error.value)
