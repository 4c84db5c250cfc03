"""The package surface: cheap import without torch, the public API, registry and router files."""

import json
import subprocess
import sys

import numpy as np
import pytest

import lmroute
from lmroute import CheckpointError, ConfigError, UnknownRouterError, load_router
from lmroute.routers.length import LengthRouter
from lmroute.routers.random import RandomRouter


def test_import_is_cheap_and_torch_free():
    code = (
        "import sys, time; t = time.perf_counter(); import lmroute; "
        "print(time.perf_counter() - t, 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    # The best of a few runs: a cold disk cache or a busy machine slows one run, not the import.
    command = [sys.executable, "-c", code]
    runs = [
        subprocess.run(command, capture_output=True, text=True, check=True).stdout.split() for _ in range(5)
    ]
    assert all(torch == "False" and mpl == "False" for _, torch, mpl in runs)
    assert min(float(seconds) for seconds, _, _ in runs) < 0.3


def test_public_api_matches_all():
    for name in lmroute.__all__:
        assert hasattr(lmroute, name), name
    public = {n for n in dir(lmroute) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(lmroute.__all__)


def test_random_is_seeded_and_batch_independent():
    prompts = [f"prompt {i}" for i in range(100)]
    a = RandomRouter(seed=3).score(prompts)
    assert np.array_equal(a, RandomRouter(seed=3).score(prompts))
    assert np.array_equal(a[10:20], RandomRouter(seed=3).score(prompts[10:20]))
    assert not np.array_equal(a, RandomRouter(seed=4).score(prompts))
    assert ((a >= 0) & (a < 1)).all() and 0.35 < a.mean() < 0.65


def test_length_increases_with_length():
    scores = LengthRouter().score(["a", "ab" * 10, "abc" * 100])
    assert (np.diff(scores) > 0).all() and scores.max() < 1
    assert LengthRouter().route("x" * 600, 0.5) == "strong"
    assert LengthRouter().route("x", 0.5) == "weak"


def test_route_and_score_validate_input():
    router = LengthRouter()
    for bad in (1.5, -0.1, "abc", None, True):
        with pytest.raises(ConfigError):
            router.route("hi", bad)
    with pytest.raises(ConfigError, match="sequence of prompts"):
        router.score("a single string")
    with pytest.raises(ConfigError, match="prompt 1 is int"):
        router.score(["ok", 3])
    # a TypeError traceback from list(), or for bytes "prompt 0 is int"
    for bad in (None, 3, b"a single string"):
        with pytest.raises(ConfigError, match="sequence of prompts"):
            router.score(bad)
    assert router.score([]).shape == (0,)
    with pytest.raises(ConfigError, match="half_length"):
        LengthRouter(half_length=-1)
    with pytest.raises(ConfigError, match="unknown_option"):
        LengthRouter(unknown_option=1)


def test_routers_that_embed_nothing_take_no_embedder():
    from _fake_embedder import HashEmbedder

    router = LengthRouter()
    assert router.embedder_name is None
    with pytest.raises(ConfigError, match="embeds no prompts"):
        router.use_embedder(HashEmbedder())


def test_registry_and_load_router(tmp_path):
    assert {"random", "length"} <= set(lmroute.router_names())
    assert isinstance(load_router("length"), LengthRouter)
    with pytest.raises(UnknownRouterError, match=r"known routers: .*length"):
        load_router("lenght")
    with pytest.raises(UnknownRouterError, match="not a router directory"):
        load_router(str(tmp_path))


def test_a_router_is_named_from_its_spec(tmp_path, monkeypatch):
    import lmroute.registry
    from lmroute.registry import report_name, serving_name

    saved = str(LengthRouter().save(tmp_path / "saved"))
    router = load_router(saved)
    assert report_name(saved, router) == saved  # a table keeps two saved routers of a kind apart
    assert serving_name(saved, router) == "length"  # served under the router saved in it
    monkeypatch.setitem(lmroute.registry._ROUTERS, "short", LengthRouter)
    router = load_router("short")
    assert report_name("short", router) == "length"
    assert serving_name("short", router) == "short"  # served under the name it was registered as


def test_save_load_round_trip_and_validation(tmp_path):
    saved = LengthRouter(half_length=80).save(tmp_path / "r")
    loaded = load_router(str(saved))
    prompts = ["short", "a much longer prompt " * 9]
    assert np.array_equal(loaded.score(prompts), LengthRouter(half_length=80).score(prompts))
    manifest = json.loads((saved / "config.json").read_text())
    assert manifest["router"] == "length" and manifest["config"] == {"half_length": 80.0}

    manifest["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="upgrade lmroute"):
        load_router(str(saved))
    # true (an int to Python), 0 or -3 loaded as version 1; "1" and 1.0 were told to upgrade lmroute
    for version in (True, 0, -3, "1", 1.0):
        manifest["format_version"] = version
        (saved / "config.json").write_text(json.dumps(manifest))
        with pytest.raises(CheckpointError, match="which no lmroute writes"):
            load_router(str(saved))
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_router(str(saved))
    (saved / "config.json").write_text('{"format_version": 1' + "0" * 5000 + "}")  # int() refuses it
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_router(str(saved))


class _Weighted(lmroute.Router):
    name = "weighted-test"

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.w = np.array([0.25, 0.75])

    def _score(self, prompts):
        return np.full(len(prompts), self.w[1])

    def _arrays(self):
        return {"w": self.w}

    def _load_arrays(self, arrays):
        if set(arrays) != {"w"}:
            raise CheckpointError("bad arrays")
        self.w = arrays["w"]


def test_weights_checksum_detects_corruption(tmp_path):
    lmroute.register_router("weighted-test", _Weighted)
    saved = _Weighted().save(tmp_path / "w")
    assert load_router(str(saved)).score(["x"])[0] == 0.75
    weights = saved / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_router(str(saved))
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_router(str(saved))


def test_seeds_and_lengths_that_cannot_score_are_config_errors():
    # the seed salts the hash as 8 bytes: a larger one raised OverflowError when scoring
    with pytest.raises(ConfigError, match="seed"):
        RandomRouter(seed=2**64)
    with pytest.raises(ConfigError, match="seed"):
        RandomRouter().with_seed(-(2**63) - 1)
    assert RandomRouter(seed=2**63 - 1).score(["x"]).shape == (1,)
    # an infinite half length scores every prompt 0
    with pytest.raises(ConfigError, match="half_length"):
        LengthRouter(half_length=float("inf"))
