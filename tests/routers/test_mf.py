"""mf: learns from battles, scores with numpy like the reference's torch model, saves, maps models."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.data.battles import Battle
from lmroute.exceptions import CheckpointError, ConfigError, DataError, UnknownModelError
from lmroute.registry import get_router_class
from lmroute.routers import _embedding_pair
from lmroute.routers.mf import MFRouter

STRONG, WEAK, OTHER = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "llama-2-13b"
FAST = {"dim": 16, "epochs": 25, "batch_size": 32, "lr": 1e-2, "noise": 0.02}
HARD = ["prove derive integral of this", "derive and prove the integral bound"]
EASY = ["hello chat joke please", "tell a joke and chat hello"]
TESTS = Path(__file__).resolve().parents[1]


def skill_battles(seed: int, n: int) -> list[Battle]:
    """The strong model wins hard prompts, the weak one easy prompts; both beat OTHER; some ties."""
    rng = np.random.default_rng(seed)
    battles = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = f"{'prove derive integral' if hard else 'hello chat joke'} w{rng.integers(40)} {i}"
        a, b = (str(m) for m in rng.permutation([STRONG, WEAK, OTHER])[:2])
        if i % 10 == 9:
            winner = "tie"
        elif {a, b} == {STRONG, WEAK}:
            winner = "model_a" if a == (STRONG if hard else WEAK) else "model_b"
        else:
            winner = "model_b" if a == OTHER else "model_a"
        battles.append(Battle(prompt, a, b, winner))
    return battles


@pytest.fixture(scope="module")
def trained() -> MFRouter:
    return MFRouter(embedder=HashEmbedder(64), **FAST).fit(skill_battles(0, 400))


def test_learns_which_prompts_need_the_strong_model(trained):
    assert trained.score(HARD).min() > 0.8 and trained.score(EASY).max() < 0.2
    assert trained.metadata["battles"] == {
        "used": 360,
        "ties_dropped": 40,
        "self_battles_dropped": 0,
        "prompts": 360,
    }
    assert trained.metadata["final_epoch"]["held_out_accuracy"] > 0.9


def test_scores_equal_the_reference_torch_forward(trained):
    torch = pytest.importorskip("torch")
    # RouteLLM's MFModel: logit(m) = classifier(normalize(P[m]) * text_proj(q)); sigmoid of the gap
    arrays = trained._arrays()
    P = torch.from_numpy(arrays["model_embeddings"][0])
    W = torch.from_numpy(arrays["text_proj"][0])
    c = torch.from_numpy(arrays["classifier"][0])
    q = torch.from_numpy(HashEmbedder(64).embed(HARD + EASY))
    s, w = trained.models.index(STRONG), trained.models.index(WEAK)
    logits = [(torch.nn.functional.normalize(P[[m]], dim=1) * (q @ W.T)) @ c for m in (s, w)]
    expected = torch.sigmoid(logits[0] - logits[1]).numpy()
    np.testing.assert_allclose(trained.score(HARD + EASY), expected, atol=1e-6)


def test_training_prints_held_out_loss_and_is_seeded(capsys):
    battles = skill_battles(1, 120)
    options = {**FAST, "epochs": 3}
    first = MFRouter(embedder=HashEmbedder(64), **options).fit(battles, progress=True)
    err = capsys.readouterr().err
    assert "mf epoch 3/3: train loss" in err and "held-out loss" in err
    again = MFRouter(embedder=HashEmbedder(64), **options).fit(battles)
    other = MFRouter(embedder=HashEmbedder(64), **options, seed=7).fit(battles)
    for name, array in first._arrays().items():
        np.testing.assert_array_equal(array, again._arrays()[name])
    assert not np.array_equal(first._arrays()["text_proj"], other._arrays()["text_proj"])


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "mf")
    manifest = json.loads((tmp_path / "mf" / "config.json").read_text())
    assert manifest["metadata"]["models"] == [STRONG, OTHER, WEAK]
    assert manifest["config"]["embedder"] == "fake-hash" and manifest["config"]["dim"] == 16
    loaded = MFRouter.load(tmp_path / "mf", embedder=HashEmbedder(64))
    np.testing.assert_array_equal(loaded.score(HARD + EASY), trained.score(HARD + EASY))
    with pytest.raises(ConfigError, match="trained with embedder 'fake-hash'"):
        MFRouter.load(tmp_path / "mf", embedder=HashEmbedder(64, name="minilm"))
    with pytest.raises(ConfigError, match="gives 32-d vectors but this mf router was trained on 64-d"):
        MFRouter.load(tmp_path / "mf", embedder=HashEmbedder(32)).score(["x"])


def test_weights_of_the_wrong_shape_are_refused_by_name(trained, tmp_path):
    from safetensors.numpy import load_file, save_file

    trained.save(tmp_path / "mf")
    path = tmp_path / "mf" / "weights.safetensors"
    arrays = load_file(str(path))
    arrays["classifier"] = arrays["classifier"][:, :-1]
    save_file(arrays, str(path))
    manifest = json.loads((tmp_path / "mf" / "config.json").read_text())
    manifest["weights"]["sha256"] = None
    (tmp_path / "mf" / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match=r"mf weights \(members=1, dim=16\) do not fit: classifier \(1, 15\)"
    ):
        MFRouter.load(tmp_path / "mf", embedder=HashEmbedder(64))


def test_a_saved_router_is_handed_its_embedder_publicly(trained, tmp_path):
    loaded = MFRouter.load(trained.save(tmp_path / "mf"))
    assert loaded.embedder_name == "fake-hash"
    with pytest.raises(ConfigError, match="trained with embedder 'fake-hash'; embedder 'minilm'"):
        loaded.use_embedder(HashEmbedder(64, name="minilm"))
    embedder = HashEmbedder(64)
    loaded.use_embedder(embedder)
    assert loaded.embedder is embedder
    np.testing.assert_array_equal(loaded.score(HARD + EASY), trained.score(HARD + EASY))
    assert embedder.calls == 1


def test_scoring_needs_no_torch(trained, tmp_path):
    trained.save(tmp_path / "mf")
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(TESTS)!r})
        from _fake_embedder import HashEmbedder
        from lmroute.registry import get_router_class
        router = get_router_class("mf").load({str(tmp_path / "mf")!r}, embedder=HashEmbedder(64))
        scores = router.score({HARD + EASY!r})
        print(json.dumps({{"torch": "torch" in sys.modules, "scores": scores.tolist()}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout)
    assert result["torch"] is False
    np.testing.assert_array_equal(result["scores"], trained.score(HARD + EASY))


def test_unknown_models_are_named_with_the_known_ones(trained):
    with pytest.raises(
        UnknownModelError, match=r"weak_model 'mixtral' .*known models: gpt-4-1106-preview, llama"
    ):
        MFRouter(embedder=HashEmbedder(64), weak_model="mixtral", **FAST).fit(skill_battles(2, 50))
    with pytest.raises(UnknownModelError, match="strong_model 'gpt-5'"):
        trained.with_models(strong_model="gpt-5")
    for blank in ("", " "):  # not "keep the trained pair": a name was given and it names nothing
        with pytest.raises(ConfigError, match="weak_model must be a model name"):
            trained.with_models(weak_model=blank)


def test_a_deployed_pair_maps_onto_training_models(trained):
    swapped = trained.with_models(strong_model=WEAK, weak_model=STRONG)
    np.testing.assert_allclose(swapped.score(HARD + EASY), 1 - trained.score(HARD + EASY), atol=1e-12)
    assert trained.with_models(weak_model=OTHER).score(HARD + EASY).min() > 0.5
    assert trained.config.weak_model == WEAK  # the original is unchanged
    # the pair does not change training: a router trained for another pair scores like the mapped one
    direct = MFRouter(embedder=HashEmbedder(64), **FAST, weak_model=OTHER).fit(skill_battles(0, 400))
    np.testing.assert_array_equal(direct.score(EASY), trained.with_models(weak_model=OTHER).score(EASY))


def test_untrained_router_and_bad_data():
    with pytest.raises(ConfigError, match="not trained"):
        MFRouter(embedder=HashEmbedder(64)).score(["x"])
    with pytest.raises(DataError, match="no decisive battles"):
        MFRouter(embedder=HashEmbedder(64), **FAST).fit([Battle("p", STRONG, WEAK, "tie")])
    with pytest.raises(ConfigError, match="invalid options for router 'mf'"):
        MFRouter(dim=0)
    # numpy's generator refused it with a ValueError traceback once the prompts were embedded
    with pytest.raises(ConfigError, match="seed: Input should be greater than or equal to 0"):
        MFRouter(seed=-1)


def test_training_that_diverges_is_an_error_not_a_router_of_nan_weights():
    """A finite but huge learning rate trained NaN weights that were saved and scored 0.5 everywhere."""
    router = MFRouter(embedder=HashEmbedder(64), **{**FAST, "epochs": 5, "lr": 1e30})
    with pytest.raises(ConfigError, match=r"mf training diverged: .* lower lr \(now 1e\+30\)"):
        router.fit(skill_battles(0, 100))
    assert not hasattr(router, "_text_proj")  # left untrained, as any failed fit leaves it


def test_pretrained_loads_the_shipped_checkpoint(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(_embedding_pair.resources, "files", lambda package: tmp_path)
    with pytest.raises(CheckpointError, match="no shipped mf checkpoint"):
        get_router_class("mf").pretrained()
    trained.save(tmp_path / "checkpoints" / "mf")
    shipped = MFRouter.pretrained(embedder=HashEmbedder(64), weak_model=OTHER)
    np.testing.assert_array_equal(shipped.score(HARD), trained.with_models(weak_model=OTHER).score(HARD))


def test_length_feature_and_half_ties_learn_and_round_trip(tmp_path):
    """Long prompts need the strong model; easy short ones tie (both right): gain tracks length."""
    rng = np.random.default_rng(3)
    battles = []
    for i in range(300):
        long = i % 2 == 0
        prompt = f"question {i} " + ("with many more words to read " * 8 if long else "")
        a, b = (str(m) for m in rng.permutation([STRONG, WEAK]))
        winner = ("model_a" if a == STRONG else "model_b") if long else "tie"
        battles.append(Battle(prompt, a, b, winner))
    router = MFRouter(embedder=HashEmbedder(32), length_feature=True, ties="half", **FAST).fit(battles)
    assert router.metadata["battles"]["ties_dropped"] == 0
    long_prompt = "question 999 " + "with many more words to read " * 8
    long_score, short_score = router.score([long_prompt, "question 999 "])
    assert long_score > 0.7 and 0.3 < short_score < 0.7  # a tie learns a coin flip, not a loss
    saved = router.save(tmp_path / "mf")
    loaded = MFRouter.load(saved, embedder=HashEmbedder(32))
    prompts = ["a", "b " * 300, "prove it"]
    assert np.array_equal(loaded.score(prompts), router.score(prompts))


def test_weights_scale_each_battles_loss():
    """The strong model wins big on half of the hard prompts' battles and loses narrowly on the
    rest: unweighted it is a coin flip, weighted by margin the strong model is worth calling."""
    rng = np.random.default_rng(4)
    battles = []
    for i in range(400):
        a, b = (str(m) for m in rng.permutation([STRONG, WEAK]))
        strong_won = i % 2 == 0
        winner = "model_a" if (a == STRONG) == strong_won else "model_b"
        battles.append(
            Battle(
                f"prove derive integral w{rng.integers(40)} {i}",
                a,
                b,
                winner,
                weight=3.0 if strong_won else 0.5,
            )
        )
    unweighted = [dataclasses.replace(b, weight=1.0) for b in battles]
    options = {"embedder": HashEmbedder(64), "held_out_fraction": 0.0, **FAST}
    weighted_score = MFRouter(**options).fit(battles).score(HARD).mean()
    plain_score = MFRouter(**options).fit(unweighted).score(HARD).mean()
    assert weighted_score > 0.75 and abs(plain_score - 0.5) < 0.15


def xor_battles(n: int) -> list[Battle]:
    """The strong model wins prompts with exactly one of two words: no linear router can learn it."""
    rng = np.random.default_rng(5)
    battles = []
    for i in range(n):
        alpha, beta = i % 2 == 0, i % 4 < 2
        words = [*(["alpha"] if alpha else []), *(["beta"] if beta else []), f"w{rng.integers(30)}"]
        prompt = " ".join(words)
        a, b = (str(m) for m in rng.permutation([STRONG, WEAK]))
        winner = "model_a" if (a == STRONG) == (alpha != beta) else "model_b"
        battles.append(Battle(prompt, a, b, winner))
    return battles


def test_hidden_layer_learns_what_a_linear_router_cannot_and_round_trips(tmp_path):
    battles, held = xor_battles(600), xor_battles(40)
    truth = np.array([("alpha" in b.prompt) != ("beta" in b.prompt) for b in held])
    options = {**FAST, "epochs": 40, "held_out_fraction": 0.0}

    def accuracy(router: MFRouter) -> float:
        return float(((router.score([b.prompt for b in held]) > 0.5) == truth).mean())

    mlp = MFRouter(embedder=HashEmbedder(256), hidden=32, **options).fit(battles)
    linear = MFRouter(embedder=HashEmbedder(256), **options).fit(battles)
    assert accuracy(mlp) > 0.95 and accuracy(linear) < 0.8
    loaded = MFRouter.load(mlp.save(tmp_path / "mf"), embedder=HashEmbedder(256))
    prompts = ["alpha", "beta", "alpha beta", "w3", "b " * 300]
    assert np.array_equal(loaded.score(prompts), mlp.score(prompts))


@pytest.mark.parametrize("hidden", [0, 8])
def test_members_average_the_logits_of_fits_from_consecutive_seeds(hidden, tmp_path):
    battles, options = skill_battles(2, 200), {**FAST, "epochs": 5, "hidden": hidden}
    ensemble = MFRouter(embedder=HashEmbedder(64), members=3, seed=5, **options).fit(battles)
    singles = [MFRouter(embedder=HashEmbedder(64), seed=s, **options).fit(battles) for s in (5, 6, 7)]
    prompts = HARD + EASY + ["something else entirely"]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expected = 1 / (1 + np.exp(-np.mean([logit(r.score(prompts)) for r in singles], axis=0)))
    np.testing.assert_allclose(ensemble.score(prompts), expected, rtol=1e-6)
    loaded = MFRouter.load(ensemble.save(tmp_path / "mf"), embedder=HashEmbedder(64))
    assert np.array_equal(loaded.score(prompts), ensemble.score(prompts))
    assert loaded._arrays()["text_proj"].shape[0] == 3
