"""Relative paths of ``lmroute serve --ray``: the replicas run in the folder where ``ray start`` ran,
not in the command's, so the paths of the config and of ``--routers`` go to them made absolute from
the command's folder, where ``lmroute serve`` reads them and ``--ray`` checks them (they went as
given: the replicas read or wrote other files, or found none). No Ray cluster needed."""

from __future__ import annotations

import json

import pytest

from lmroute.cluster.config import RayConfig
from lmroute.serving.config import build_config

serve_module = pytest.importorskip("lmroute.cluster.serve")

UPSTREAMS = {tier: {"base_url": "http://127.0.0.1:9/v1", "model": tier} for tier in ("strong", "weak")}


def _bound(monkeypatch, name):
    bound: list = []

    class Deployment:
        @staticmethod
        def options(**given):
            return Deployment

        @staticmethod
        def bind(*args):
            bound.extend(args)
            return name

    monkeypatch.setattr(serve_module, name, Deployment)
    return bound


def test_relative_paths_go_to_the_replicas_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lmroute.registry import load_router

    load_router("length").save(tmp_path / "saved")
    (tmp_path / "mf").mkdir()  # a folder that holds no router: "mf" is still the registered router
    scorer = _bound(monkeypatch, "Scorer")
    ingress = _bound(monkeypatch, "Ingress")
    routers = ["mf", "fast=mf", "saved", "alias=routers/other", "/abs/router", "named=/abs/dir"]
    control = {"state_file": "state/control.json", "calibration_prompts": "traffic.jsonl"}
    config = build_config(overrides={**UPSTREAMS, "routers": routers, "control": control})
    serve_module.build_application(config, RayConfig())
    assert scorer[0] == [
        "mf",
        "fast=mf",
        str(tmp_path / "saved"),
        f"alias={tmp_path / 'routers/other'}",
        "/abs/router",
        "named=/abs/dir",
    ]
    shipped = json.loads(ingress[0])
    assert shipped["control"]["state_file"] == str(tmp_path / "state/control.json")
    assert shipped["control"]["calibration_prompts"] == str(tmp_path / "traffic.jsonl")
    assert shipped["routers"] == scorer[0]


def test_a_config_without_files_goes_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ingress = _bound(monkeypatch, "Ingress")
    _bound(monkeypatch, "Scorer")
    config = build_config(overrides={**UPSTREAMS, "routers": ["length"]})
    serve_module.build_application(config, RayConfig())
    shipped = json.loads(ingress[0])
    assert shipped["control"]["state_file"] is None and shipped["control"]["calibration_prompts"] is None


class _Stop(Exception):
    pass


def test_score_on_ray_sends_a_relative_router_directory_absolute(tmp_path, monkeypatch):
    # The Ray Data actors load the router in the folder where `ray start` ran: 'saved' went as given.
    ray = pytest.importorskip("ray")
    bulk = pytest.importorskip("lmroute.cluster.bulk")
    from lmroute.registry import load_router

    monkeypatch.chdir(tmp_path)
    load_router("length").save(tmp_path / "saved")
    sent: list = []

    class Items:
        def map_batches(self, fn, *, fn_constructor_args, **options):
            sent.extend(fn_constructor_args)
            raise _Stop  # before Ray Data would run

    monkeypatch.setattr(bulk, "init_ray", lambda address: None)
    monkeypatch.setattr(ray.data, "from_items", lambda items: Items())
    for spec in ("saved", "length"):
        with pytest.raises(_Stop):
            bulk.score_on_ray(spec, ["a prompt"])
    assert sent == [str(tmp_path / "saved"), "length"]
