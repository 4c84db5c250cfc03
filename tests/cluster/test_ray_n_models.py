"""The N-model modes (``router-mf-lambda-0``) of ``lmroute serve --ray``: the ingress's stand-in
routers predict each model's quality through the scoring deployment, as the routers of ``lmroute
serve`` do (they had no vocabulary, so every such request was a 400 saying the router "scores only
two models"). The ingress is built as Ray Serve builds it (``_ray_ingress``: no Ray cluster needed)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from _fake_embedder import HashEmbedder
from _ray_ingress import ingress_app, scorer_holding
from fake_openai import serve_in_thread
from starlette.testclient import TestClient

from lmroute.data.battles import Battle
from lmroute.exceptions import ConfigError
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter
from lmroute.serving.config import build_config
from lmroute.shrinkage import QualityShrinkage

# serving name -> vocabulary name, USD per 1M tokens; alpha is the best model (as tests/serving/test_fleet.py)
PRICED = {"frontier": ("alpha", 5.0), "middle": ("beta", 0.5), "local": ("gamma", 0.0)}
VOCABULARY = ["alpha", "beta", "gamma"]
PROMPT = "hello joke chat w1 7"


@pytest.fixture(scope="module")
def mf() -> MFRouter:
    """An mf router that learned alpha > beta > gamma on every prompt."""
    rng = np.random.default_rng(0)
    battles = []
    for i in range(600):
        a, b = (str(m) for m in rng.choice(VOCABULARY, size=2, replace=False))
        winner = "model_a" if VOCABULARY.index(a) < VOCABULARY.index(b) else "model_b"
        battles.append(Battle(f"hello joke chat w{rng.integers(40)} {i}", a, b, winner))
    fast = {"dim": 16, "epochs": 25, "batch_size": 32, "lr": 1e-2, "noise": 0.02, "ties": "half"}
    return MFRouter(embedder=HashEmbedder(64), strong_model="alpha", weak_model="gamma", **fast).fit(battles)


def _models():
    return [
        {
            "name": name,
            "base_url": "http://127.0.0.1:9/v1",  # no model is called: /v1/route only
            "model": f"{name}-upstream",
            "vocabulary": vocabulary,
            "price": {"input_per_1m": price, "output_per_1m": price},
        }
        for name, (vocabulary, price) in PRICED.items()
    ]


def test_the_n_model_modes_predict_quality_through_the_scorer(mf):
    config = build_config(overrides={"models": _models(), "routers": ["mf", "length"]})
    app = ingress_app(config, scorer_holding({"mf": mf, "length": LengthRouter()}))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        response = client.post("/v1/route", json={"model": "router-mf-lambda-0", "prompt": PROMPT})
        assert response.status_code == 200, response.text
        info = response.json()
        assert info["decision"] == "frontier"
        quality = [c["predicted_quality"] for c in info["candidates"]]
        np.testing.assert_allclose(quality, mf.predict_quality([PROMPT], VOCABULARY)[0], rtol=1e-12)
        assert [c["model"] for c in info["candidates"]] == list(PRICED)
        # A router without a vocabulary still says so, as in lmroute serve.
        response = client.post("/v1/route", json={"model": "router-length-lambda-0", "prompt": PROMPT})
        assert response.status_code == 400 and "scores only two models" in response.text
        # The two-model modes score through the scorer as before.
        response = client.post("/v1/route", json={"model": "router-length-0.5", "prompt": PROMPT})
        assert response.status_code == 200, response.text


def test_a_shrinkage_that_misses_a_model_stops_the_ingress_as_it_stops_lmroute_serve(mf):
    """A router whose quality shrinkage (``lmroute shrink``) was fitted on some of the models only:
    ``lmroute serve`` refuses to start; the ingress started, and every N-model request failed in
    the scorer and went by price, with no predicted quality."""
    shrinkage = QualityShrinkage(("alpha", "beta"), np.array([0.7, 0.5]), np.array([0.6, 0.5]), 0.5)
    config = build_config(overrides={"models": _models(), "routers": ["mf"]})
    app = ingress_app(config, scorer_holding({"mf": mf.with_shrinkage(shrinkage)}))
    refused = pytest.raises(ConfigError, match="shrinkage was fitted on alpha, beta; it cannot put gamma")
    with refused, TestClient(app):
        pass
