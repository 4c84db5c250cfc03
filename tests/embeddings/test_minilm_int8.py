"""The int8 MiniLM (``minilm-int8``): built once into the cache, close to fp32, rebuilt when damaged."""

import json
import logging

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.embeddings import approximated, get_embedder
from lmroute.embeddings.cache import CachedEmbedder
from lmroute.embeddings.minilm import DIM, OnnxMiniLM, default_model_dir
from lmroute.embeddings.minilm_onnx import QUANT_VERSION, onnx_model_path
from lmroute.exceptions import ConfigError
from lmroute.routers.mf import MFRouter

pytestmark = pytest.mark.usefixtures("shared_onnx_cache")


@pytest.fixture(scope="module")
def prompts(data_dir):
    lines = (data_dir / "arena-hard" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = [json.loads(line)["prompt"] for line in lines[::13]][:30]
    return [*chosen, "hi", "What is the capital of France?", "Grüße aus Köln 👋 — 東京", "lorem ipsum " * 400]


@pytest.fixture(scope="module")
def fp32_vectors(prompts):
    return OnnxMiniLM().embed(prompts)


@pytest.fixture(scope="module")
def int8_vectors(prompts):
    return OnnxMiniLM(precision="int8").embed(prompts)


def test_int8_vectors_are_close_to_fp32(fp32_vectors, int8_vectors):
    assert int8_vectors.shape == fp32_vectors.shape and int8_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8_vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(int8_vectors * fp32_vectors, axis=1)
    assert cosine.min() >= 0.98 and cosine.mean() >= 0.99, (cosine.min(), cosine.mean())
    # quantised, not a copy of the fp32 graph; and distinct prompts stay apart
    assert cosine.max() < 0.99999
    assert np.sum(int8_vectors[0] * int8_vectors[1]) < 0.99


def test_int8_rows_do_not_depend_on_batching(prompts, int8_vectors):
    # one text per call: dynamic quantisation's per-call scale sees that text only
    one_by_one = np.concatenate([OnnxMiniLM(precision="int8").embed([p]) for p in prompts[:4] + prompts[-2:]])
    np.testing.assert_array_equal(one_by_one, np.concatenate([int8_vectors[:4], int8_vectors[-2:]]))
    assert OnnxMiniLM(precision="int8").batch_size == 1 and OnnxMiniLM().batch_size == 8


def test_int8_calls_side_by_side_give_the_vectors_of_one_thread(prompts, int8_vectors):
    one_thread = OnnxMiniLM(precision="int8", threads=1)
    np.testing.assert_array_equal(one_thread.embed(prompts), int8_vectors)
    side_by_side = OnnxMiniLM(precision="int8", threads=2)
    np.testing.assert_array_equal(side_by_side.embed(prompts), int8_vectors)
    assert one_thread._pool is None and side_by_side._pool is not None


def test_int8_is_its_own_embedder_with_its_own_disk_cache():
    int8 = get_embedder("minilm-int8")
    assert isinstance(int8, CachedEmbedder) and isinstance(int8.inner, OnnxMiniLM)
    assert int8.name == "minilm-int8" and int8.inner.precision == "int8" and int8.dim == DIM
    assert int8.path != get_embedder("minilm").path  # and keys hash the name with the text
    assert get_embedder("minilm-onnx", cache=False).name == "minilm"
    assert approximated("minilm-int8") == "minilm" == approximated("minilm")
    assert approximated("openai:text-embedding-3-small") == "openai:text-embedding-3-small"
    with pytest.raises(ConfigError, match="precision must be one of fp32, int8, got 'int4'"):
        OnnxMiniLM(precision="int4")
    with pytest.raises(ConfigError, match="precision must be one of fp32, int8"):
        onnx_model_path(default_model_dir(), "fp16")


def test_int8_graph_keeps_block_wise_int8_weights_for_the_output_projections():
    import onnx

    graph = onnx.load(str(onnx_model_path(default_model_dir(), "int8"))).graph
    blockwise = [node for node in graph.node if node.op_type == "MatMulNBits"]
    # attention and feed-forward output projection of each of the 6 layers
    assert len(blockwise) == 12
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in blockwise[0].attribute}
    assert attributes["bits"] == 8 and attributes["block_size"] == 128 and attributes["accuracy_level"] == 4
    weights = {t.name: t for t in graph.initializer}
    assert all(weights[node.input[1]].data_type == onnx.TensorProto.UINT8 for node in blockwise)
    # every other weight product is dynamically quantised; no float weight matrix is left
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) == 24
    assert not [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def test_int8_vectors_are_cached_under_the_quantisation_version():
    # a new int8 graph gives other vectors under the same embedder name: the disk cache must not
    # serve the old ones
    assert OnnxMiniLM(precision="int8").cache_name == f"minilm-int8-q{QUANT_VERSION}"
    assert OnnxMiniLM().cache_name == "minilm"
    cached = get_embedder("minilm-int8")
    assert cached.path.name.startswith(f"minilm-int8-q{QUANT_VERSION}-")
    assert cached.key("x") != CachedEmbedder(HashEmbedder(384, name="minilm-int8")).key("x")


def test_int8_file_is_built_once_beside_fp32_and_rebuilt_when_damaged(cache_dir, caplog):
    folder = cache_dir / "onnx"
    folder.mkdir(parents=True)
    (folder / "all-MiniLM-L6-v2-int8-q0-g1-0123456789abcdef.onnx").write_bytes(b"an old int8 graph")
    fp32_path = onnx_model_path(default_model_dir())
    expected = OnnxMiniLM(precision="int8").embed(["hello", "world"])
    path = onnx_model_path(default_model_dir(), "int8")
    # the stale int8 file is gone, the fp32 file stays; int8 is a quarter to a half of fp32's size
    assert sorted(folder.glob("*.onnx")) == sorted([fp32_path, path])
    assert path.stat().st_size < 0.5 * fp32_path.stat().st_size
    stamp = path.stat().st_mtime_ns
    np.testing.assert_allclose(OnnxMiniLM(precision="int8").embed(["hello", "world"]), expected, atol=1e-6)
    assert path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    path.write_bytes(path.read_bytes()[:5000])
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.minilm"):
        np.testing.assert_allclose(
            OnnxMiniLM(precision="int8").embed(["hello", "world"]), expected, atol=1e-6
        )
    assert "could not be loaded" in caplog.text and str(path) in caplog.text
    assert fp32_path.is_file()  # rebuilding int8 left the fp32 file alone
    assert not list(folder.glob(".*"))  # no temporary files left behind


def test_a_file_that_stays_unloadable_after_rebuilding_is_a_config_error(tmp_path, monkeypatch):
    def always_damaged(model_dir, precision="fp32"):
        bad = tmp_path / f"{precision}.onnx"
        bad.write_bytes(b"not an ONNX graph")
        return bad

    monkeypatch.setattr("lmroute.embeddings.minilm.onnx_model_path", always_damaged)
    with pytest.raises(ConfigError, match=r"the rebuilt MiniLM ONNX file .*int8\.onnx cannot be loaded"):
        OnnxMiniLM(precision="int8").embed(["x"])


def test_unwritable_cache_builds_the_int8_graph_in_memory(cache_dir, int8_vectors, prompts, caplog):
    cache_dir.mkdir()
    (cache_dir / "onnx").write_text("a file where a folder should be")
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.minilm"):
        out = OnnxMiniLM(precision="int8").embed(prompts[:2])
    np.testing.assert_allclose(out, int8_vectors[:2], atol=1e-5)
    assert "building it in memory" in caplog.text


def test_routers_take_the_int8_copy_of_their_embedder_and_back():
    shipped = MFRouter.pretrained()
    assert shipped.embedder_name == "minilm-int8"  # the shipped default: APGR within 0.005 of fp32
    MFRouter.pretrained(embedder=HashEmbedder(384, name="minilm"))  # the fp32 vectors it was trained on
    trained_fp32 = MFRouter({"embedder": "minilm"})
    trained_fp32.use_embedder(HashEmbedder(384, name="minilm-int8"))
    assert trained_fp32.embedder.name == "minilm-int8"
    with pytest.raises(ConfigError, match="trained with embedder 'minilm-int8'; embedder 'fake-hash'"):
        shipped.use_embedder(HashEmbedder(384))


def test_a_tokenizer_without_cls_or_sep_is_a_config_error(tmp_path):
    source = default_model_dir()
    for name in ("config.json", "sentence_bert_config.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "model.safetensors").symlink_to(source / "model.safetensors")
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["post_processor"] = None
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] != "[CLS]"]
    del tokenizer["model"]["vocab"]["[CLS]"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"has no \[CLS\] or \[SEP\] token"):
        OnnxMiniLM(model_dir=tmp_path, precision="int8").embed(["x"])
