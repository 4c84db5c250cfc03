"""The upstream keys of ``lmroute serve --ray``: every model's variable, the N models' of a config
with ``models:`` too, is checked where the command runs and goes to the ingress replicas (no Ray
cluster needed: the deployment is not run)."""

from __future__ import annotations

import pytest

from lmroute.cluster.config import RayConfig
from lmroute.exceptions import ConfigError
from lmroute.serving.config import build_config

serve_module = pytest.importorskip("lmroute.cluster.serve")

PRICES = {"alpha": 10.0, "beta": 3.0, "gamma": 1.0}  # beta: neither the strong nor the weak model


def _config(server_keys=None):
    models = [
        {
            "name": name,
            "base_url": "http://127.0.0.1:9/v1",
            "model": name,
            "api_key_env": f"LMR_TEST_KEY_{name.upper()}",
            "price": {"input_per_1m": price, "output_per_1m": price},
        }
        for name, price in PRICES.items()
    ]
    return build_config(overrides={"models": models, "routers": ["length"]}, api_keys=server_keys)


def test_every_models_key_goes_to_the_ingress_replicas(monkeypatch, ingress):
    for name in PRICES:
        monkeypatch.setenv(f"LMR_TEST_KEY_{name.upper()}", f"key-of-{name}")
    options = ingress.options
    assert serve_module.build_application(_config(), RayConfig()) == "the application"
    assert options["ray_actor_options"]["runtime_env"]["env_vars"] == {
        f"LMR_TEST_KEY_{name.upper()}": f"key-of-{name}" for name in PRICES
    }


@pytest.mark.usefixtures("ray_not_started")
def test_a_models_unset_key_is_an_error_before_ray_starts(monkeypatch):
    monkeypatch.setenv("LMR_TEST_KEY_ALPHA", "a")
    monkeypatch.setenv("LMR_TEST_KEY_GAMMA", "g")
    monkeypatch.delenv("LMR_TEST_KEY_BETA", raising=False)
    with pytest.raises(ConfigError, match="LMR_TEST_KEY_BETA"):
        serve_module.run_serve(_config(), RayConfig(), blocking=False)


def test_the_servers_keys_are_a_constructor_argument_not_in_the_deployment_options(monkeypatch, ingress):
    # docs/ray.md: Ray shows a deployment's options (runtime_env included) on the dashboard and in
    # `ray list actors --detail`, not its constructor's arguments.
    import json

    for name in PRICES:
        monkeypatch.setenv(f"LMR_TEST_KEY_{name.upper()}", f"key-of-{name}")
    options, bound = ingress.options, ingress.bound
    serve_module.build_application(_config(["the-servers-key"]), RayConfig())
    assert "the-servers-key" not in json.dumps(options)
    assert json.loads(bound[0])["server"]["api_keys"] == ["the-servers-key"]
