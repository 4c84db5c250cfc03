"""The config checks of ``lmroute serve`` before the server starts, made by ``lmroute serve --ray``
before Ray starts: thresholds of a router not served and unusable control files are the same
one-line errors (in the ingress replica they were silently ignored, or Ray's traceback). Ray itself
must not be reached; a config that passes reaches it (no Ray cluster needed)."""

from __future__ import annotations

import logging

import pytest

from lmroute.cli import main

ray = pytest.importorskip("ray")
serve_module = pytest.importorskip("lmroute.cluster.serve")

URL = "http://127.0.0.1:9/v1"


class RayStarted(Exception):
    pass


@pytest.fixture(autouse=True)
def no_ray_init(monkeypatch):
    def init(*args, **kwargs):
        raise RayStarted

    # Before ray.init: joining a cluster first tries the head's port of the last `ray start` here.
    monkeypatch.setattr(serve_module, "init_ray", init)


def _serve(tmp_path, routers: str, rest: str) -> list[str]:
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"routers: {routers}\nstrong: {{base_url: '{URL}', model: s}}\n"
        f"weak: {{base_url: '{URL}', model: w}}\n{rest.replace('TMP', str(tmp_path))}\n"
    )
    return ["serve", "--config", str(config), "--ray"]


@pytest.mark.parametrize(
    "rest, message",
    [
        ("thresholds: {lenght: 0.5}", "thresholds: 'lenght' is no served router (the routers: length)"),
        ("control: {state_file: TMP}", "control.state_file TMP is a folder"),
        (
            "control: {calibration_prompts: TMP/absent.jsonl}",
            "control.calibration_prompts: TMP/absent.jsonl does not exist",
        ),
        ("control: {calibration_prompts: TMP/serve.yaml.d/empty.txt}", "control.calibration_prompts: "),
    ],
)
def test_config_mistakes_are_one_line_errors_before_ray_starts(tmp_path, capsys, rest, message):
    (tmp_path / "serve.yaml.d").mkdir()
    (tmp_path / "serve.yaml.d" / "empty.txt").write_text("")
    assert main(_serve(tmp_path, "[length]", rest)) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: " + message.replace("TMP", str(tmp_path))), err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serve.yaml", "serve.yaml.d"]


def test_thresholds_of_served_names_pass(tmp_path):
    from lmroute.registry import load_router

    saved = load_router("length").save(tmp_path / "saved")  # served as the router saved in it: length
    routers = f"['{saved}', 'alias=/on/the/nodes/only']"
    with pytest.raises(RayStarted):
        main(_serve(tmp_path, routers, "thresholds: {length: 0.5, alias: 0.3}"))


def test_a_saved_routers_name_is_checked(tmp_path, capsys):
    from lmroute.registry import load_router

    saved = load_router("length").save(tmp_path / "saved")
    assert main(_serve(tmp_path, f"['{saved}']", "thresholds: {saved: 0.5}")) == 1
    assert capsys.readouterr().err == (
        "lmroute: error: thresholds: 'saved' is no served router (the routers: length)\n"
    )


def test_a_directory_only_on_the_nodes_leaves_the_names_unchecked(tmp_path):
    # Its name is in the router saved there, which this machine cannot read: the check cannot tell.
    with pytest.raises(RayStarted):
        main(_serve(tmp_path, "[length, /on/the/nodes/only]", "thresholds: {elsewhere: 0.5}"))


@pytest.mark.parametrize("ingress", ["{num_replicas: 2}", "{autoscaling: {max_replicas: 3}}"])
def test_conversations_on_several_ingress_replicas_are_a_warning(tmp_path, caplog, ingress):
    """As ``lmroute serve --workers 2`` warns: each replica remembers its own conversations, so a
    conversation's turns answered by two replicas are not kept on one model (it was silent)."""
    ray_config = tmp_path / "ray.yaml"
    ray_config.write_text(f"ingress: {ingress}\n")
    argv = _serve(tmp_path, "[length]", "control: {conversations: {enabled: true}}")
    with pytest.raises(RayStarted):
        main([*argv, "--ray-config", str(ray_config)])
    assert "each ingress replica remembers its own conversations" in caplog.text
    caplog.clear()
    ray_config.write_text("ingress: {num_replicas: 1}\n")
    with pytest.raises(RayStarted):
        main([*argv, "--ray-config", str(ray_config)])
    assert "conversations" not in caplog.text


def test_a_threshold_that_routes_everything_one_way_is_a_warning(tmp_path, caplog):
    """lmroute serve warns at start about a threshold that sends (nearly) every prompt of the
    calibration sample one way; --ray gave no warning (the routers were loaded only on the replicas)."""
    prompts = tmp_path / "mine.txt"
    prompts.write_text("hi\nhello\nhey there\n")
    argv = _serve(tmp_path, "[length]", f"thresholds: {{length: [0.5]}}\ncalibration_prompts: {prompts}")
    with caplog.at_level(logging.INFO, logger="lmroute"), pytest.raises(RayStarted):
        main(argv)
    # length scores these short prompts below 0.5: none goes strong.
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("threshold ")]
    assert warned == [
        f"threshold 0.5 of router length sends 0.0% of {prompts} (3 prompts) to the strong model: it routes "
        "(nearly) everything one way. `lmroute calibrate --router length --strong-pct 0.3` finds the "
        "threshold of a share you choose"
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.getMessage() in warned)


def test_routers_without_thresholds_or_a_sample_are_not_loaded_for_the_check(tmp_path, caplog, monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("a router was loaded")

    monkeypatch.setattr(serve_module, "load_routers", load)
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(RayStarted):
        main(_serve(tmp_path, "[length, random]", ""))
    with caplog.at_level(logging.INFO, logger="lmroute"), pytest.raises(RayStarted):
        main(_serve(tmp_path, "[length, random]", "thresholds: {length: 0.5}"))
    assert "thresholds not checked: no calibration sample" in caplog.text


def test_a_router_this_machine_cannot_load_leaves_its_thresholds_unchecked(tmp_path, caplog, monkeypatch):
    from lmroute.exceptions import MissingDependencyError

    def load(*args, **kwargs):
        raise MissingDependencyError("lmroute needs torch: pip install 'lmroute[train]'")

    monkeypatch.setattr(serve_module, "load_routers", load)
    prompts = tmp_path / "mine.txt"
    prompts.write_text("hi\n")
    argv = _serve(tmp_path, "[length]", f"thresholds: {{length: 0.5}}\ncalibration_prompts: {prompts}")
    with caplog.at_level(logging.INFO, logger="lmroute"), pytest.raises(RayStarted):
        main(argv)
    assert (
        "thresholds not checked: this machine cannot load their routers (lmroute needs torch" in caplog.text
    )


def test_two_routers_of_one_name_are_refused_before_ray_starts(tmp_path, capsys):
    """As lmroute serve refuses them; the check merged them silently and the scoring replicas failed."""
    from lmroute.registry import load_router

    saved = load_router("length").save(tmp_path / "saved")  # served as the router saved in it: length
    assert main(_serve(tmp_path, f"[length, '{saved}']", "")) == 1
    assert capsys.readouterr().err == (
        "lmroute: error: two routers are named 'length': give one a name with NAME=DIRECTORY\n"
    )
    # Found beside a directory only the nodes hold, too.
    assert main(_serve(tmp_path, "[length, /on/the/nodes/only, 'length=/on/the/nodes/too']", "")) == 1
    assert "two routers are named 'length'" in capsys.readouterr().err


MODELS = """models:
  - {name: big, base_url: 'http://127.0.0.1:9/v1', model: big, vocabulary: gpt-4o-2024-08-06,
     price: {input_per_1m: 5, output_per_1m: 5}}
  - {name: mine, base_url: 'http://127.0.0.1:9/v1', model: mine,
     price: {input_per_1m: 0, output_per_1m: 0}}"""


def _serve_models(tmp_path, routers: str) -> list[str]:
    config = tmp_path / "serve.yaml"
    config.write_text(f"routers: {routers}\n{MODELS}\n")
    return ["serve", "--config", str(config), "--ray"]


def test_a_model_a_router_does_not_know_is_refused_before_ray_starts(tmp_path, capsys):
    """lmroute serve's one-line error; on Ray the ingress replicas failed to start with it."""
    assert main(_serve_models(tmp_path, "[mf, /on/the/nodes/only]")) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: router 'mf' cannot route among the configured models: 'mine' "), (
        err
    )
    assert err.count("\n") == 1


def test_models_of_a_router_this_machine_cannot_load_are_left_to_the_replicas(tmp_path, caplog, monkeypatch):
    from lmroute.exceptions import MissingDependencyError

    def load(*args, **kwargs):
        raise MissingDependencyError("lmroute needs torch: pip install 'lmroute[train]'")

    monkeypatch.setattr(serve_module, "load_routers", load)
    with caplog.at_level(logging.INFO, logger="lmroute"), pytest.raises(RayStarted):
        main(_serve_models(tmp_path, "[mf]"))
    assert "models: not checked against router 'mf': this machine cannot load it (lmroute" in caplog.text
    with pytest.raises(RayStarted):  # a directory only the nodes hold is not loaded
        main(_serve_models(tmp_path, "['mf=/on/the/nodes/only']"))
