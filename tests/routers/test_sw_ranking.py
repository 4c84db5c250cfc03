"""sw_ranking: equals the reference's per-query weighted regression, learns, saves, maps models."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from _bradley_terry_reference import direct_logistic_fit, reference_design
from _fake_embedder import HashEmbedder

from lmroute.data.battles import Battle
from lmroute.exceptions import CheckpointError, ConfigError, DataError, UnknownModelError
from lmroute.registry import get_router_class
from lmroute.routers import _embedding_pair
from lmroute.routers.sw_ranking import SWRankingRouter
from lmroute.training import bradley_terry as bt

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
MODELS = [STRONG, "claude-2", WEAK, "llama-2-13b", "vicuna-7b", "alpaca-13b"]
WORDS = [
    "proof",
    "integral",
    "derive",
    "code",
    "bug",
    "sql",
    "poem",
    "story",
    "hello",
    "joke",
    "translate",
    "recipe",
    "travel",
]


def random_arena(seed: int, n: int) -> list[Battle]:
    """Battles between MODELS (better ones first) on random word prompts, with ties."""
    rng = np.random.default_rng(seed)
    strength = np.linspace(1.5, -1.5, len(MODELS))
    battles = []
    for i in range(n):
        words = rng.choice(WORDS, size=rng.integers(2, 6))
        a, b = rng.choice(len(MODELS), size=2, replace=False)
        u = rng.random()
        p_a = 1 / (1 + math.exp(-(strength[a] - strength[b])))
        if u < 0.2:
            winner = "tie" if u < 0.15 else "tie (bothbad)"
        else:
            winner = "model_a" if rng.random() < p_a else "model_b"
        battles.append(Battle(f"{' '.join(words)} #{i % 97}", MODELS[a], MODELS[b], winner))
    return battles


def skill_battles(seed: int, n: int) -> list[Battle]:
    """The strong model wins hard prompts; on easy ones it only ties with the weak model."""
    rng = np.random.default_rng(seed)
    battles = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = f"{'prove derive integral' if hard else 'hello chat joke'} {rng.choice(WORDS)} {i}"
        a, b = rng.permutation([STRONG, WEAK, "llama-2-13b"])[:2]
        if {a, b} == {STRONG, WEAK}:
            winner = ("model_a" if a == STRONG else "model_b") if hard else "tie"
        else:
            loser = "llama-2-13b"
            winner = "model_b" if a == loser else "model_a"
        battles.append(Battle(prompt, a, b, winner))
    return battles


def reference_score(battles, router, embedder, query, *, same_tier="anchor"):
    """What RouteLLM's SWRankingRouter computes for one query: a full weighted regression."""
    tiers = router.metadata["tiers"]
    a = np.array([tiers[x.model_a] for x in battles])
    b = np.array([tiers[x.model_b] for x in battles])
    outcome = bt.outcome_codes([x.winner for x in battles])
    emb = embedder.embed([x.prompt for x in battles]).astype(np.float64)
    q = embedder.embed([query])[0].astype(np.float64)
    sims = emb @ q / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    weights = 10 * 10 ** (sims / sims.max())
    if same_tier == "drop":
        keep = a != b
        a, b, outcome, weights = a[keep], b[keep], outcome[keep], weights[keep]
    coef = direct_logistic_fit(*reference_design(a, b, outcome, max(tiers.values()) + 1, weights))
    s, w = tiers[router.config.strong_model], tiers[router.config.weak_model]
    weak_win = 1 / (1 + 10 ** ((400 * coef[s] - 400 * coef[w]) / 400))
    return 1 - weak_win


@pytest.mark.parametrize("same_tier", ["anchor", "drop"])
def test_scores_equal_the_direct_weighted_fit(same_tier):
    battles = random_arena(0, 600)
    embedder = HashEmbedder(32)
    router = SWRankingRouter(
        embedder=embedder, num_tiers=4, l2=0.0, embedding_dtype="float32", same_tier_battles=same_tier
    ).fit(battles)
    assert len(set(router.metadata["tiers"].values())) == 4  # some tiers hold two models
    queries = ["proof integral code", "poem story joke hello", "travel recipe", "bug sql #5", "zzz"]
    expected = [reference_score(battles, router, embedder, q, same_tier=same_tier) for q in queries]
    np.testing.assert_allclose(router.score(queries), expected, atol=1e-4)
    assert np.ptp(expected) > 0.01  # the weighting changes the answer


def test_default_config_stays_close_to_the_reference():
    battles = random_arena(1, 400)
    embedder = HashEmbedder(32)
    exact = SWRankingRouter(embedder=embedder, num_tiers=4, l2=0.0, embedding_dtype="float32").fit(battles)
    default = SWRankingRouter(embedder=embedder, num_tiers=4).fit(battles)
    queries = ["proof integral code", "poem story joke hello", "travel recipe sql"]
    np.testing.assert_allclose(default.score(queries), exact.score(queries), atol=1e-3)


def test_learns_which_prompts_need_the_strong_model():
    router = SWRankingRouter(embedder=HashEmbedder(64)).fit(skill_battles(0, 400))
    hard = router.score(["prove derive integral of this", "derive and prove the integral bound"])
    easy = router.score(["hello chat joke please", "tell a joke and chat hello"])
    assert hard.min() > 0.85 and easy.max() < 0.65  # a tie on easy prompts is a 0.5 win rate


def test_length_weight_lets_prompt_length_decide_and_round_trips(tmp_path):
    """The strong model wins long prompts and ties short ones; the words say nothing."""
    rng = np.random.default_rng(4)
    battles = []
    for i in range(300):
        long = i % 2 == 0
        prompt = " ".join(rng.choice(WORDS, size=40 if long else 3)) + f" {i}"
        a, b = (str(m) for m in rng.permutation([STRONG, WEAK, "llama-2-13b"])[:2])
        if {a, b} == {STRONG, WEAK}:
            winner = ("model_a" if a == STRONG else "model_b") if long else "tie"
        else:
            winner = "model_b" if a == "llama-2-13b" else "model_a"
        battles.append(Battle(prompt, a, b, winner))
    queries = [" ".join(rng.choice(WORDS, size=40)), " ".join(rng.choice(WORDS, size=3))]
    options = {"num_tiers": 3, "similarity_base": 1000}
    plain = SWRankingRouter(embedder=HashEmbedder(32), **options).fit(battles)
    with_length = SWRankingRouter(embedder=HashEmbedder(32), length_weight=1.0, **options).fit(battles)
    long_score, short_score = with_length.score(queries)
    assert long_score > 0.95 and short_score < 0.55  # short prompts: the learned tie, 0.5
    assert plain.score(queries)[1] > 0.65  # without length, long prompts' wins leak into short ones
    loaded = SWRankingRouter.load(with_length.save(tmp_path / "sw"), embedder=HashEmbedder(32))
    np.testing.assert_array_equal(loaded.score(queries), with_length.score(queries))


def test_a_battle_of_weight_k_counts_as_k_copies():
    battles = random_arena(7, 200)
    weights = [1.0 + i % 3 for i in range(len(battles))]  # 1, 2 or 3
    weighted = [dataclasses.replace(b, weight=w) for b, w in zip(battles, weights, strict=True)]
    copies = [b for b, w in zip(battles, weights, strict=True) for _ in range(int(w))]
    options = {"num_tiers": 4, "embedding_dtype": "float32"}
    queries = ["proof integral", "poem joke hello", "code sql bug travel"]
    by_weight = SWRankingRouter(embedder=HashEmbedder(32), **options).fit(weighted).score(queries)
    by_copies = SWRankingRouter(embedder=HashEmbedder(32), **options).fit(copies).score(queries)
    np.testing.assert_allclose(by_weight, by_copies, atol=1e-10)
    plain = SWRankingRouter(embedder=HashEmbedder(32), **options).fit(battles).score(queries)
    assert np.abs(plain - by_weight).max() > 1e-3


def test_batches_do_not_change_scores():
    router = SWRankingRouter(embedder=HashEmbedder(32), num_tiers=4).fit(random_arena(2, 300))
    queries = [f"{w} proof" for w in WORDS]
    together = router.score(queries)
    alone = np.array([router.score([q])[0] for q in queries])
    np.testing.assert_allclose(together, alone, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_save_load_round_trip(tmp_path, dtype):
    embedder = HashEmbedder(32)
    battles = random_arena(3, 300)
    router = SWRankingRouter(embedder=embedder, num_tiers=4, embedding_dtype=dtype).fit(battles)
    queries = ["proof integral", "hello joke", "recipe"]
    router.save(tmp_path / "sw")
    manifest = json.loads((tmp_path / "sw" / "config.json").read_text())
    assert manifest["metadata"]["models"] == sorted(MODELS)
    assert manifest["config"]["embedder"] == "fake-hash"
    loaded = SWRankingRouter.load(tmp_path / "sw", embedder=embedder)
    np.testing.assert_array_equal(loaded.score(queries), router.score(queries))
    exact = SWRankingRouter(embedder=embedder, num_tiers=4, embedding_dtype="float32").fit(battles)
    np.testing.assert_allclose(loaded.score(queries), exact.score(queries), atol=1e-3)
    with pytest.raises(ConfigError, match="trained with embedder 'fake-hash'"):
        SWRankingRouter.load(tmp_path / "sw", embedder=HashEmbedder(32, name="other"))


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_a_round_trip_scores_bit_for_bit_and_saves_the_same_file(tmp_path, dtype):
    """float32 embeddings were normalised in place in the array that is saved: a loaded router
    scored ~1e-8 apart, and every save and load normalised them once more."""
    router = SWRankingRouter(embedder=HashEmbedder(32), num_tiers=4, embedding_dtype=dtype, length_weight=0.5)
    router.fit(random_arena(3, 300))
    queries = ["proof integral", "hello joke", "recipe", "code sql bug travel " * 20]
    loaded = SWRankingRouter.load(router.save(tmp_path / "a"), embedder=HashEmbedder(32))
    np.testing.assert_array_equal(loaded.score(queries), router.score(queries))
    quality = router.predict_quality(queries, MODELS)
    np.testing.assert_array_equal(loaded.predict_quality(queries, MODELS), quality)
    loaded.save(tmp_path / "b")
    weights = [(tmp_path / folder / "weights.safetensors").read_bytes() for folder in ("a", "b")]
    assert weights[0] == weights[1]


def test_inconsistent_weights_are_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    router = SWRankingRouter(embedder=HashEmbedder(32), num_tiers=4).fit(random_arena(3, 100))
    path = router.save(tmp_path / "sw") / "weights.safetensors"
    arrays = load_file(str(path))
    arrays["entry_prompt"][0] = 10**6
    save_file(arrays, str(path))
    manifest = json.loads((tmp_path / "sw" / "config.json").read_text())
    manifest["weights"]["sha256"] = None
    (tmp_path / "sw" / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="inconsistent"):
        SWRankingRouter.load(tmp_path / "sw")


def test_unknown_models_are_named_with_the_known_ones():
    battles = random_arena(4, 100)
    with pytest.raises(UnknownModelError, match=r"strong_model 'gpt-5' .*known models: alpaca-13b, claude-2"):
        SWRankingRouter(embedder=HashEmbedder(), strong_model="gpt-5").fit(battles)
    router = SWRankingRouter(embedder=HashEmbedder(), num_tiers=6).fit(battles)
    with pytest.raises(UnknownModelError, match="weak_model 'mixtral'"):
        router.with_models(weak_model="mixtral")


def test_a_deployed_pair_maps_onto_training_models():
    battles = random_arena(5, 300)
    embedder = HashEmbedder(32)
    mapped = SWRankingRouter(embedder=embedder, num_tiers=6).fit(battles)
    mapped = mapped.with_models(strong_model="claude-2", weak_model="vicuna-7b")
    direct = SWRankingRouter(embedder=embedder, num_tiers=6, strong_model="claude-2", weak_model="vicuna-7b")
    queries = ["proof integral", "hello joke"]
    np.testing.assert_array_equal(mapped.score(queries), direct.fit(battles).score(queries))
    assert mapped.score(queries).mean() > 0.6  # claude-2 is the second best model, vicuna-7b the fifth


def test_one_tier_for_both_models_is_an_error(caplog):
    router = SWRankingRouter(embedder=HashEmbedder(), num_tiers=2).fit(random_arena(6, 200))
    tiers = router.metadata["tiers"]
    same = [m for m in MODELS if tiers[m] == tiers[STRONG] and m != STRONG]
    with pytest.raises(ConfigError, match="same Elo tier"):
        router.with_models(weak_model=same[0]).score(["x"])
    assert "fall in one Elo tier of 2" in caplog.text
    caplog.clear()
    SWRankingRouter(embedder=HashEmbedder(), num_tiers=6).fit(random_arena(6, 200))
    assert not caplog.records


def test_embedder_option_must_agree_with_the_embedder_given():
    with pytest.raises(ConfigError, match="configured for embedder 'minilm'"):
        SWRankingRouter({"embedder": "minilm"}, embedder=HashEmbedder())
    assert SWRankingRouter(embedder=HashEmbedder()).config.embedder == "fake-hash"


def test_untrained_router_and_bad_data():
    with pytest.raises(ConfigError, match="not trained"):
        SWRankingRouter(embedder=HashEmbedder()).score(["x"])
    with pytest.raises(DataError, match="two different models"):
        SWRankingRouter(embedder=HashEmbedder()).fit([Battle("p", STRONG, STRONG, "tie")])


def test_a_similarity_base_whose_weights_overflow_is_refused():
    """similarity_base=1e39 trained, then every score was a ValueError: its float32 weights were inf."""
    with pytest.raises(ConfigError, match="similarity_base"):
        SWRankingRouter(embedder=HashEmbedder(32), similarity_base=1e39)
    router = SWRankingRouter(embedder=HashEmbedder(32), num_tiers=4, similarity_base=1e38)
    assert np.isfinite(router.fit(random_arena(2, 100)).score(["proof integral"])).all()


def test_pretrained_loads_the_shipped_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(_embedding_pair.resources, "files", lambda package: tmp_path)
    with pytest.raises(CheckpointError, match="no shipped sw_ranking checkpoint"):
        SWRankingRouter.pretrained()
    embedder = HashEmbedder(32)
    SWRankingRouter(embedder=embedder, num_tiers=6).fit(random_arena(7, 200)).save(
        tmp_path / "checkpoints" / "sw_ranking"
    )
    shipped = get_router_class("sw_ranking").pretrained(embedder=embedder, weak_model="vicuna-7b")
    assert shipped.config.weak_model == "vicuna-7b" and shipped.score(["proof"]).shape == (1,)
    with pytest.raises(ConfigError, match="takes only strong_model, weak_model, long_prompts and embedder"):
        SWRankingRouter.pretrained(num_tiers=3)


@pytest.mark.parametrize("dtype", ["float16", "float32", "int8"])
def test_a_large_length_weight_trains_and_length_decides(tmp_path, dtype):
    """length_weight=1e4 made a long prompt's length column overflow float16 storage (inf), and
    training ended in a CheckpointError calling the arrays inconsistent; the embeddings are now
    stored at unit length. A weight past float32's reach is refused."""
    battles = random_arena(3, 300)
    battles = [dataclasses.replace(battles[0], prompt=battles[0].prompt + " word" * 2000), *battles[1:]]
    router = SWRankingRouter(embedder=HashEmbedder(32), num_tiers=4, length_weight=1e4, embedding_dtype=dtype)
    queries = ["proof integral", "hello joke", "word " * 3000]
    scores = router.fit(battles).score(queries)
    assert np.isfinite(scores).all()
    # the lengths decide: the two short prompts score alike, the long one as the long battle's prompt
    assert scores[0] == pytest.approx(scores[1], abs=1e-6) and abs(scores[2] - scores[0]) > 1e-3
    loaded = SWRankingRouter.load(router.save(tmp_path / "sw"), embedder=HashEmbedder(32))
    np.testing.assert_array_equal(loaded.score(queries), scores)
    with pytest.raises(ConfigError, match="length_weight"):
        SWRankingRouter(embedder=HashEmbedder(32), length_weight=1e20)
