"""Local base-model directories for the classifier routers: tiny random models, so each test takes
seconds. A directory the router cannot use is refused with a ConfigError naming the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lmroute.data.battles import Battle
from lmroute.exceptions import ConfigError
from lmroute.networks.base_models import MINILM, resolve_encoder
from lmroute.routers.bert import BertRouter
from lmroute.routers.causal_llm import CausalLLMRouter

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def battles() -> list[Battle]:
    return [
        Battle(f"question {i} " + "prove it " * (i % 20), STRONG, WEAK, "model_a" if i % 2 else "model_b")
        for i in range(24)
    ]


@pytest.fixture(scope="module")
def tokenizer_file() -> Path:
    return resolve_encoder(MINILM).path / "tokenizer.json"


def _saved(model: transformers.PreTrainedModel, folder: Path, tokenizer_file: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(tokenizer_file, folder / "tokenizer.json")
    return folder


def tiny_bert(folder: Path, tokenizer_file: Path, *, positions: int) -> Path:
    """A 2-layer random BERT reading at most ``positions`` tokens, with MiniLM's tokenizer."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=positions,
    )
    return _saved(transformers.BertModel(config), folder, tokenizer_file)


def test_max_length_beyond_the_encoders_positions_is_refused_before_training(tmp_path, tokenizer_file):
    encoder = tiny_bert(tmp_path / "bert32", tokenizer_file, positions=32)
    options = {"encoder": str(encoder), "trainable_layers": 1, "epochs": 1, "precision": "float32"}
    with pytest.raises(ConfigError, match=r"max_length=64.* at most 32"):
        BertRouter(max_length=64, **options).fit(battles())
    scores = BertRouter(max_length=32, **options).fit(battles()).score(["word " * 100, "", "hi"])
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("damage", ["unknown model_type", "no model_type", "truncated weights"])
@pytest.mark.parametrize("router", [BertRouter, CausalLLMRouter])
def test_a_directory_transformers_cannot_read_is_a_config_error(router, damage, tmp_path, tokenizer_file):
    folder = tiny_bert(tmp_path / "model", tokenizer_file, positions=64)
    if damage == "unknown model_type":
        (folder / "config.json").write_text('{"model_type": "not-a-model"}')
    elif damage == "no model_type":
        (folder / "config.json").write_text("{}")
    else:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:3000])
    if router is BertRouter:
        created = BertRouter(encoder=str(folder), epochs=1, precision="float32")
    else:
        created = CausalLLMRouter(base_model=str(folder), num_layers=None, epochs=1, precision="float32")
    with pytest.raises(ConfigError, match=rf"{folder} cannot be loaded as a"):
        created.fit(battles())


def tiny_llama(folder: Path, tokenizer_file: Path) -> Path:
    """A 2-layer random Llama-style decoder, with MiniLM's tokenizer (its labels are one token each)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        tie_word_embeddings=True,
    )
    return _saved(transformers.LlamaForCausalLM(config), folder, tokenizer_file)


def test_a_template_with_nothing_around_the_prompt_is_refused(tmp_path, tokenizer_file):
    model = str(tiny_llama(tmp_path / "llama", tokenizer_file))
    options = {"base_model": model, "num_layers": None, "epochs": 0, "precision": "float32"}
    with pytest.raises(ConfigError, match=r"template.*around \{prompt\}"):
        CausalLLMRouter(template="{prompt}", **options).fit(battles()).score([""])
    scores = CausalLLMRouter(template="{prompt}\n", **options).fit(battles()).score(["", "hi"])
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize(
    "router, options, message",
    [
        ("bert", {"max_length": 64}, r"max_length=64, but .* at most 32 tokens"),
        ("bert", {"trainable_layers": 3}, r"trainable_layers=3, but .* only 2 layers"),
        ("bert", {"encoder": MINILM, "trainable_layers": 7}, r"trainable_layers=7, but .* only 6 layers"),
        ("causal_llm", {"num_layers": 3}, r"num_layers=3, but .* has 2 layers"),
        ("causal_llm", {"num_layers": None, "trainable_layers": 3}, r"trainable_layers=3, but .* 2 layers"),
    ],
)
def test_options_beyond_the_base_models_size_are_refused_before_loading_data(
    router, options, message, tmp_path, tokenizer_file
):
    from lmroute.workflows.train import train_router

    if router == "bert":
        options = {"encoder": str(tiny_bert(tmp_path / "bert", tokenizer_file, positions=32)), **options}
    else:
        options = {"base_model": str(tiny_llama(tmp_path / "llama", tokenizer_file)), **options}
    with pytest.raises(ConfigError, match=message):
        train_router(router, [f"battles:{tmp_path / 'not-read.jsonl'}"], options=options, progress=False)


def test_an_instruction_holding_a_prompt_slot_is_refused(tmp_path, tokenizer_file):
    model = str(tiny_llama(tmp_path / "llama", tokenizer_file))
    with pytest.raises(ConfigError, match=r"instruction must not contain \{prompt\}"):
        instruction = "Is {prompt} hard? Answer strong or weak."
        CausalLLMRouter(base_model=model, num_layers=None, epochs=0, instruction=instruction).fit(battles())
