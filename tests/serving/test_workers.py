"""``lmroute serve --workers N``: several processes share the port, and /metrics counts them all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest
from serve_process import get_text, metric_value, running_serve

from lmroute.exceptions import ConfigError
from lmroute.routers.length import LengthRouter
from lmroute.serving.app import serve, worker_config_json
from lmroute.serving.config import ServeConfig

pytestmark = pytest.mark.network_loopback


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts worker processes in /proc")
def test_two_workers_answer_on_one_port_and_share_their_metrics(upstreams, tmp_path):
    config = upstreams.config()
    argv = [sys.executable, "-m", "lmroute.cli", "serve", "--routers", "length", "--workers", "2"]
    for tier in ("strong", "weak"):
        argv += [
            f"--{tier}-base-url",
            getattr(config, tier).base_url,
            f"--{tier}-model",
            getattr(config, tier).model,
        ]
    env = {**os.environ, "LMROUTE_API_KEYS": ""}
    command = [*argv, "--log-level", "warning"]
    with running_serve(lambda port: [*command, "--port", str(port)], env=env, log_dir=tmp_path) as server:
        assert len(_children(server.process.pid)) >= 2, server.output()  # uvicorn's two workers
        body = {"model": "router-length-0.9", "messages": [{"role": "user", "content": "hi"}]}
        # A fresh connection per request, so the kernel spreads them over both workers.
        statuses = [
            httpx.post(
                f"{server.base_url}/chat/completions", json=body, trust_env=False, timeout=30
            ).status_code
            for _ in range(30)
        ]
        assert statuses == [200] * 30
        assert len(upstreams.weak.requests) == 30 and not upstreams.strong.requests
        share = {**body, "model": "router-length-share-0.5"}
        for _ in range(10):
            response = httpx.post(
                f"{server.base_url}/chat/completions", json=share, trust_env=False, timeout=30
            )
            assert response.status_code == 200
        # Whichever worker answers /metrics, it counts the requests of both, and shows its own
        # control hub's families (the control state is per worker).
        for _ in range(3):
            text = get_text(f"{server.url}/metrics")
            counted = metric_value(text, "lmroute_requests_total", endpoint="chat", status="200")
            assert counted == 40
            for family in (
                "lmroute_control_threshold",
                "lmroute_control_decisions_total",
                "lmroute_drift_drifted",
            ):
                assert f"# TYPE {family} " in text, text


def test_several_workers_refuse_one_control_state_file(upstreams, tmp_path):
    config = upstreams.config(server={"workers": 2}, control={"state_file": str(tmp_path / "control.json")})
    with pytest.raises(ConfigError, match=r"control\.state_file needs a single server process"):
        serve(config)


def test_several_workers_need_routers_they_can_load_themselves(upstreams):
    config = upstreams.config(server={"workers": 2})
    with pytest.raises(ConfigError, match="several workers"):
        serve(config, routers={"length": LengthRouter()})


def test_workers_get_the_whole_config_with_the_server_keys():
    config = ServeConfig.model_validate(
        {
            "strong": {"base_url": "http://127.0.0.1:1/v1", "model": "s"},
            "weak": {"base_url": "http://127.0.0.1:2/v1", "model": "w"},
            "routers": ["length"],
            "server": {"workers": 3, "api_keys": ["k1", "k2"]},
        }
    )
    again = ServeConfig.model_validate_json(worker_config_json(config))
    assert again.server.workers == 3 and again.routers == config.routers
    assert [k.get_secret_value() for k in again.server.api_keys] == ["k1", "k2"]
