"""A router folder damaged by hand or by a tool: a CheckpointError naming it, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.data.battles import Battle
from lmroute.exceptions import CheckpointError
from lmroute.registry import load_router
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter
from lmroute.routers.sw_ranking import SWRankingRouter


@pytest.mark.parametrize("metadata", [[1, 2], "trained on arena", 3])
def test_metadata_that_is_not_an_object_is_a_checkpoint_error(tmp_path, metadata):
    """It was given to dict(): TypeError or ValueError tracebacks."""
    folder = LengthRouter().save(tmp_path / "r")
    manifest = json.loads((folder / "config.json").read_text())
    manifest["metadata"] = metadata
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"config\.json: 'metadata' must be an object"):
        load_router(folder)


def _sw_ranking(tmp_path, **options):
    battles = [
        Battle(f"{topic} {i}", a, b, "model_a")
        for i in range(6)
        for topic, (a, b) in (("prove integral", ("big", "small")), ("hello joke", ("small", "mid")))
    ]
    router = SWRankingRouter(
        embedder=HashEmbedder(32), strong_model="big", weak_model="small", num_tiers=3, **options
    )
    return router.fit(battles).save(tmp_path / "sw")


def _mf(tmp_path, **options):
    battles = [
        Battle(f"{topic} {i}", a, b, "model_a")
        for i in range(6)
        for topic, (a, b) in (("prove integral", ("big", "small")), ("hello joke", ("small", "mid")))
    ]
    router = MFRouter(
        embedder=HashEmbedder(32), strong_model="big", weak_model="small", dim=4, epochs=2, **options
    )
    return router.fit(battles).save(tmp_path / "mf")


def _rewrite_manifest(folder, change):
    manifest = json.loads((folder / "config.json").read_text())
    change(manifest)
    (folder / "config.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("save", [_mf, _sw_ranking], ids=["mf", "sw_ranking"])
@pytest.mark.parametrize("models", [["big", "big", "small"], ["big", "", "small"]], ids=["twice", "empty"])
def test_a_vocabulary_that_names_a_model_twice_or_not_at_all_is_refused(tmp_path, save, models):
    """A name listed twice loaded, and was looked up as its last row: another model's weights."""
    folder = save(tmp_path)
    _rewrite_manifest(folder, lambda m: m["metadata"].update(models=models))
    with pytest.raises(CheckpointError, match=r"metadata\.models"):
        load_router(folder)


def _rewrite_weights(folder, change):
    """Change the arrays and drop the checksum, as a tool rewriting the weights would."""
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / "weights.safetensors"))
    change(arrays)
    save_file(arrays, str(folder / "weights.safetensors"))
    manifest = json.loads((folder / "config.json").read_text())
    manifest["weights"]["sha256"] = None
    (folder / "config.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "change",
    [
        # a scalar: IndexError when loaded
        lambda a: a.update(prompt_embeddings=np.array(1.0, dtype=np.float16)),
        # counts that cannot be weighted: ValueError at the first score, in a server at a request
        lambda a: a["entry_amount"].fill(np.nan),
        lambda a: a["entry_amount"].__imul__(-1.0),
        lambda a: a["prompt_embeddings"].fill(np.inf),
        # a MemoryError traceback at the first score: the count matrices are (tiers + 1)² wide
        lambda a: a["model_tiers"].__iadd__(10**6),
        lambda a: a["model_tiers"].__imul__(2),
        # cast to 0 and 1, or to other numbers: other battles' counts, silently
        lambda a: a.update(entry_cell=a["entry_cell"].astype(bool)),
        lambda a: a.update(entry_prompt=a["entry_prompt"].astype(np.float32)),
        lambda a: a.update(prompt_embeddings=a["prompt_embeddings"].astype(np.int64)),
    ],
    ids=[
        "scalar-embeddings",
        "nan-counts",
        "negative-counts",
        "infinite-embeddings",
        "huge-tiers",
        "tier-gaps",
        "boolean-cells",
        "float-prompt-indices",
        "integer-embeddings",
    ],
)
def test_sw_ranking_arrays_that_cannot_score_are_refused_when_loaded(tmp_path, change):
    folder = _sw_ranking(tmp_path)
    _rewrite_weights(folder, change)
    with pytest.raises(CheckpointError, match="sw_ranking arrays are inconsistent"):
        SWRankingRouter.load(folder)


def test_a_bert_head_that_is_a_scalar_is_refused(tmp_path):
    """An IndexError when loaded (its first dimension, the head's outputs, was read unchecked)."""
    from lmroute.routers.bert import BertRouter

    router = BertRouter(preset="fast")
    router._state = {"head.weight": np.zeros((3, 384), np.float32), "head.bias": np.zeros(3, np.float32)}
    folder = router.save(tmp_path / "bert")
    _rewrite_weights(folder, lambda a: a.update({"head.weight": np.array(1.0, dtype=np.float32)}))
    with pytest.raises(CheckpointError, match=r"lacks head\.weight for a three_way head"):
        load_router(folder)


def test_an_onnx_entry_that_is_not_an_object_is_refused_when_loaded(tmp_path):
    """It loaded, then the first score (in a server, a request) was an AttributeError traceback."""
    from lmroute.routers.bert import BertRouter

    router = BertRouter(preset="fast")
    router._state = {"head.weight": np.zeros((3, 384), np.float32), "head.bias": np.zeros(3, np.float32)}
    router.metadata = {"onnx": "model.onnx"}
    folder = router.save(tmp_path / "bert")
    with pytest.raises(CheckpointError, match=r"config\.json: metadata\.onnx must be an object"):
        load_router(folder)


@pytest.mark.parametrize("stats", [[3.0, 0.0], [np.nan, 1.0], [3.0, np.inf]], ids=["no-spread", "nan", "inf"])
@pytest.mark.parametrize(
    "save",
    [
        lambda tmp_path: _mf(tmp_path, length_feature=True),
        lambda tmp_path: _sw_ranking(tmp_path, length_weight=0.5),
    ],
    ids=["mf", "sw_ranking"],
)
def test_length_statistics_that_cannot_standardise_a_length_are_refused(tmp_path, save, stats):
    """They loaded; then mf scored 0.5 on every prompt, sw_ranking raised a ValueError at every score."""
    folder = save(tmp_path)
    _rewrite_weights(folder, lambda a: a.update(length_stats=np.array(stats)))
    with pytest.raises(CheckpointError, match="length_stats must be a finite mean and a positive spread"):
        load_router(folder)


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a["model_embeddings"].fill(np.nan),
        lambda a: a["text_proj"].fill(np.inf),
        lambda a: a["classifier"].__setitem__((0, 0), -np.inf),
        lambda a: a.update(classifier=a["classifier"].astype(np.int64)),
        lambda a: a.update(hidden_bias=np.ones_like(a["hidden_bias"], dtype=bool)),
    ],
    ids=["nan", "inf", "one-minus-inf", "integers", "booleans"],
)
def test_mf_weights_that_are_not_finite_numbers_are_refused_when_loaded(tmp_path, change):
    """They loaded, and the router scored 0.5 on every prompt without a word."""
    folder = _mf(tmp_path, hidden=3)
    _rewrite_weights(folder, change)
    with pytest.raises(CheckpointError, match="must be finite floating-point numbers"):
        load_router(folder)


@pytest.mark.parametrize("dtype", ["BF16", "F8_E4M3"])
def test_weights_of_a_type_numpy_cannot_read_are_a_checkpoint_error(tmp_path, dtype):
    """Weights a torch tool converted to bfloat16 or float8 were a TypeError or AttributeError
    traceback. Once ml_dtypes is imported (by torch or onnx) numpy reads bfloat16, as a type that
    is not a float to numpy: mf refuses it then."""
    from safetensors.numpy import load_file

    folder = _mf(tmp_path)
    arrays = load_file(str(folder / "weights.safetensors"))
    header, data = {}, b""
    for key, array in arrays.items():
        if dtype == "BF16":  # the upper half of each float32
            raw = (array.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            raw = bytes(array.size)
        header[key] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header)
    text += " " * (-len(text) % 8)
    (folder / "weights.safetensors").write_bytes(len(text).to_bytes(8, "little") + text.encode() + data)
    _rewrite_manifest(folder, lambda m: m["weights"].update(sha256=None))
    with pytest.raises(
        CheckpointError,
        match=r"arrays of a type numpy cannot read .*: save them as float32|must be finite floating-point",
    ):
        load_router(folder)


@pytest.mark.parametrize("name", ["config.json", "weights.safetensors"])
def test_a_router_file_that_cannot_be_read_is_a_checkpoint_error(tmp_path, monkeypatch, name):
    """A file another user saved as 0600 was a PermissionError traceback (as root, every file reads:
    the denial is made here)."""
    folder = _sw_ranking(tmp_path)
    opened = Path.open

    def deny(path, *args, **kwargs):
        if path.name == name:
            raise PermissionError(13, "Permission denied")
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(CheckpointError, match=f"cannot read .*{name}: Permission denied"):
        load_router(folder)
