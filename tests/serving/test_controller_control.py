"""The Controller holds target modes with the server's control code, and keeps its state file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from lmroute import ConfigError, Controller
from lmroute.routers.length import LengthRouter


def tiers(upstreams):
    return {
        "strong": {"base_url": upstreams.urls["strong"], "model": "big-model", "max_retries": 0},
        "weak": {"base_url": upstreams.urls["weak"], "model": "small-model", "max_retries": 0},
    }


def test_the_controller_holds_a_share_and_saves_its_state(upstreams, tmp_path):
    lengths = np.random.default_rng(0).integers(10, 4000, size=500)
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("".join("x" * int(k) + "\n" for k in lengths[:200]))
    state = tmp_path / "state.json"
    control = {"calibration_prompts": str(calibration), "state_file": str(state)}
    with Controller(routers={"length": LengthRouter()}, control=control, **tiers(upstreams)) as c:
        decisions = [c.route("x" * int(k), model="router-length-share-0.25") for k in lengths[200:]]
        answer = c.chat.completions.create(
            model="router-length-share-0.25", messages=[{"role": "user", "content": "hi"}]
        )
        status = c.status()
    assert abs(np.mean([d.tier == "strong" for d in decisions]) - 0.25) < 0.05
    assert answer.lmroute["target"] == {"mode": "share", "value": 0.25}
    assert 0 < answer.lmroute["threshold"] < 1
    [controller] = status["controllers"]
    assert controller["decisions"] == 301
    assert json.loads(state.read_text())["controllers"][0]["controller"]["decisions"] == 301
    with Controller(routers={"length": LengthRouter()}, control=control, **tiers(upstreams)) as again:
        assert again.status()["state"]["restored"] is True
        assert again.status()["controllers"][0]["decisions"] == 301


def test_the_status_is_read_on_the_thread_that_decides(upstreams, monkeypatch):
    # Controllers are created and moved on the Controller's event loop; reading them from the
    # caller's thread while other threads route raced with that ("dictionary changed size").
    import threading

    from lmroute.control.hub import ControlHub

    seen = []
    status = ControlHub.status
    monkeypatch.setattr(
        ControlHub, "status", lambda self: seen.append(threading.current_thread()) or status(self)
    )
    with Controller(routers={"length": LengthRouter()}, **tiers(upstreams)) as c:
        c.route("hello", model="router-length-share-0.3")
        assert c.status()["controllers"][0]["decisions"] == 1
        assert seen == [c._thread]


def test_a_missing_calibration_file_names_its_key(upstreams, tmp_path):
    # The server named the key (control.calibration_prompts) before it started; the Controller said
    # only "FILE does not exist", as a DataError, which left the user to guess which setting it was.
    missing = tmp_path / "absent.jsonl"
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {**tiers(upstreams), "routers": ["length"], "control": {"calibration_prompts": str(missing)}}
        )
    )
    message = f"control.calibration_prompts: {missing} does not exist"
    with pytest.raises(ConfigError, match=re.escape(message)):
        Controller.from_config(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Controller(
            routers={"length": LengthRouter()},
            control={"calibration_prompts": str(missing)},
            **tiers(upstreams),
        )


def test_a_bad_control_option_names_its_section(upstreams):
    # "invalid controller options: stat_file: ..." said not that the key was one of control=.
    with pytest.raises(ConfigError, match=r"^invalid controller options: control\.stat_file: Extra inputs"):
        Controller(routers={"length": LengthRouter()}, control={"stat_file": "x.json"}, **tiers(upstreams))
