"""The API key of a router's OpenAI-compatible embedder on Ray: read where the command runs (an
unset one needed is an error before Ray starts) and given to the processes that embed, the scoring
replicas of ``lmroute serve --ray`` and the workers of ``lmroute score --ray``, which do not have
the command's environment (no Ray cluster needed: what Ray is given is recorded)."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from lmroute.cli import main
from lmroute.cluster.config import RayConfig
from lmroute.exceptions import ConfigError
from lmroute.serving.config import build_config

ray = pytest.importorskip("ray")
serve_module = pytest.importorskip("lmroute.cluster.serve")

VARIABLE = "LMR_TEST_EMBEDDER_KEY"
EMBEDDER = f"openai:text-embedding-3-small?api_key_env={VARIABLE}"


def _router(tmp_path: Path, embedder: str = EMBEDDER) -> Path:
    """A saved mf router whose config embeds with ``embedder``."""
    directory = tmp_path / "router"
    shutil.copytree(Path(str(resources.files("lmroute") / "checkpoints" / "mf")), directory)
    manifest = json.loads((directory / "config.json").read_text())
    manifest["config"]["embedder"] = embedder
    (directory / "config.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def map_batches(monkeypatch):
    """The keyword arguments ``score --ray`` gives Ray Data's ``map_batches``; every prompt scores 0.5."""
    from lmroute.cluster import bulk

    given: dict = {}

    class Items:
        def __init__(self, rows):
            self.rows = rows

        def map_batches(self, fn, **options):
            given.update(options)
            return self

        def iter_batches(self, **options):
            yield {"i": np.arange(len(self.rows)), "score": np.full(len(self.rows), 0.5)}

    monkeypatch.setattr(bulk, "init_ray", lambda address: None)
    monkeypatch.setattr(ray.data, "from_items", Items)
    return given


@pytest.fixture
def scorer(monkeypatch):
    """The ``options`` ``build_application`` gives the scoring deployment."""
    options: dict = {}

    class Scorer:
        @staticmethod
        def options(**given):
            options.update(given)
            return Scorer

        @staticmethod
        def bind(*args):
            return "the scorer"

    monkeypatch.setattr(serve_module, "Scorer", Scorer)
    return options


def _serve_config(routers: list[str]):
    upstream = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}
    overrides = {"strong": {**upstream, "model": "strong"}, "weak": {**upstream, "model": "weak"}}
    return build_config(overrides={**overrides, "routers": routers})


def _score_argv(tmp_path: Path, router: Path) -> list[str]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nworld\n")
    output = tmp_path / "scores.jsonl"
    return ["score", "--router", str(router), "--input", str(prompts), "--output", str(output), "--ray"]


def test_score_gives_the_workers_the_embedders_key(tmp_path, monkeypatch, map_batches):
    monkeypatch.setenv(VARIABLE, "the-key")
    assert main([*_score_argv(tmp_path, _router(tmp_path)), "--quiet"]) == 0
    assert map_batches["runtime_env"] == {"env_vars": {VARIABLE: "the-key"}}
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == 2


@pytest.mark.usefixtures("ray_not_started")
def test_score_with_the_key_unset_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(VARIABLE, raising=False)
    assert main([*_score_argv(tmp_path, _router(tmp_path)), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and VARIABLE in err[0] and "not set" in err[0], err
    assert not (tmp_path / "scores.jsonl").exists()


def test_serve_gives_the_scoring_replicas_the_embedders_key(tmp_path, monkeypatch, ingress, scorer):
    monkeypatch.setenv(VARIABLE, "the-key")
    config = _serve_config(["length", f"mine={_router(tmp_path)}"])
    assert serve_module.build_application(config, RayConfig()) == "the application"
    assert scorer["ray_actor_options"]["runtime_env"] == {"env_vars": {VARIABLE: "the-key"}}
    assert ingress.bound[1] == "the scorer"


@pytest.mark.usefixtures("ray_not_started")
def test_serve_with_the_key_unset_is_an_error_before_ray_starts(tmp_path, monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    config = _serve_config([f"mine={_router(tmp_path)}"])
    with pytest.raises(ConfigError, match=f"{VARIABLE}, which is not set here"):
        serve_module.run_serve(config, RayConfig(), blocking=False)


@pytest.mark.parametrize("key", ["local-key", None])
def test_a_local_endpoints_default_variable_goes_when_set(tmp_path, monkeypatch, map_batches, key):
    """A local server asked under the default variable takes no key, as without Ray: none is no error."""
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    embedder = "openai:embed?base_url=http://127.0.0.1:9/v1&dim=384"
    assert main([*_score_argv(tmp_path, _router(tmp_path, embedder)), "--quiet"]) == 0
    assert map_batches["runtime_env"] == (None if key is None else {"env_vars": {"OPENAI_API_KEY": key}})
