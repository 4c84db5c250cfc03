"""Drift detection of ``lmroute serve --ray`` watches the prompt embeddings as ``lmroute serve``
does (docs/control.md): the scoring replica's routers record the summaries of the embeddings they
compute and send them back with the scores. Without them an embedding router was watched on its
scores alone, ``embedding_shift`` null in ``/v1/status``. The ingress is built as Ray Serve builds
it (``_ray_ingress``: no Ray cluster needed)."""

from __future__ import annotations

import numpy as np
import pytest
from _fake_embedder import HashEmbedder
from _ray_ingress import ingress_app, scorer_of
from starlette.testclient import TestClient

import lmroute.embeddings
from lmroute.data.battles import Battle
from lmroute.routers.mf import MFRouter
from lmroute.serving.app import create_app
from lmroute.serving.config import build_config

UPSTREAM = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}  # no model is called: /v1/route only


@pytest.fixture
def mf_dir(tmp_path, monkeypatch):
    """A saved mf router whose embedder (fake-hash) ``get_embedder`` builds, as a server loads it."""
    monkeypatch.setattr(lmroute.embeddings, "get_embedder", lambda name, **options: HashEmbedder(64))
    rng = np.random.default_rng(0)
    battles = [
        Battle(f"w{rng.integers(40)} question {i}", "strong", "weak", "model_a" if i % 3 else "model_b")
        for i in range(300)
    ]
    fast = {"dim": 8, "epochs": 5, "batch_size": 32, "lr": 1e-2, "noise": 0.02, "ties": "half"}
    router = MFRouter(embedder=HashEmbedder(64), strong_model="strong", weak_model="weak", **fast).fit(
        battles
    )
    return router.save(tmp_path / "mf")


def test_drift_watches_the_prompt_embeddings_on_ray_as_in_lmroute_serve(mf_dir, tmp_path):
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("".join(f"w{i % 40} question {i}\n" for i in range(60)))
    config = build_config(
        overrides={
            "strong": {**UPSTREAM, "model": "strong"},
            "weak": {**UPSTREAM, "model": "weak"},
            "routers": [str(mf_dir)],
            "control": {"calibration_prompts": str(calibration), "drift": {"span": 10}},
        }
    )
    # Other words than the calibration's: the embeddings move.
    traffic = [f"recipe soup kitchen {i}" for i in range(30)]
    drift = []
    for app in (create_app(config), ingress_app(config, scorer_of([str(mf_dir)]))):
        with TestClient(app) as client:
            for prompt in traffic:
                response = client.post("/v1/route", json={"model": "router-mf-0.5", "prompt": prompt})
                assert response.status_code == 200, response.text
            drift.append(client.get("/v1/status").json()["drift"])
    served, on_ray = drift
    assert served["mf"]["embedding_shift"] is not None  # lmroute serve watches the embeddings
    assert on_ray == served
