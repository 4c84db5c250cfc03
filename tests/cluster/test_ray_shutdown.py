"""What in-flight requests get when ``lmroute serve --ray`` stops: ``server.graceful_shutdown``, as
``lmroute serve`` gives them (no Ray cluster needed: the deployment is not run)."""

from __future__ import annotations

import pytest

from lmroute.cluster.config import RayConfig
from lmroute.serving.config import build_config

serve_module = pytest.importorskip("lmroute.cluster.serve")


@pytest.mark.parametrize("seconds", [0.0, 120.0])
def test_the_ingress_replicas_get_the_configs_graceful_shutdown(ingress, seconds):
    """The ingress kept Ray Serve's 20 s: a stream longer than that was cut when the command
    stopped, however long server.graceful_shutdown gave it (and 0 still waited)."""
    upstream = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}
    overrides = {"routers": ["length"], "server": {"graceful_shutdown": seconds}}
    overrides |= {"strong": {**upstream, "model": "strong"}, "weak": {**upstream, "model": "weak"}}
    config = build_config(overrides=overrides)
    serve_module.build_application(config, RayConfig())
    assert ingress.options["graceful_shutdown_timeout_s"] == seconds
    ingress.deployment.options(**ingress.options)  # options Ray Serve takes
