"""A ray.yaml's ``autoscaling``, passed to Ray Serve as written, is checked against Ray Serve's own
settings before Ray starts: a misspelt key (which Ray Serve ignores) or a bad value (which it
refuses only when the application is built, with a traceback) is one line naming it."""

from __future__ import annotations

import pytest
from fake_openai import free_port

from lmroute.cli import main

ray = pytest.importorskip("ray.serve")


pytestmark = pytest.mark.usefixtures("ray_not_started")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Ray Serve would ignore it and keep max_replicas at its default, 1.
        ("scorer: {autoscaling: {min_replicas: 1, max_replica: 8}}", "scorer.autoscaling.max_replica: not a"),
        ("ingress: {autoscaling: {min_replicas: 4, max_replicas: 2}}", "ingress.autoscaling: max_replicas"),
        ("scorer: {autoscaling: {max_replicas: many}}", "scorer.autoscaling.max_replicas: Input should"),
        # Ray Serve imports the policy function here: a ModuleNotFoundError or AttributeError traceback.
        (
            "scorer: {autoscaling: {policy: {policy_function: 'my_policies:scale'}}}",
            "scorer.autoscaling.policy: its policy_function cannot be imported where the command runs, "
            "which Ray Serve does to send it to the replicas: No module named 'my_policies'",
        ),
        (
            "ingress: {autoscaling: {policy: {policy_function: 'os:no_such_policy'}}}",
            "ingress.autoscaling.policy: its policy_function cannot be imported",
        ),
    ],
)
def test_autoscaling_ray_serve_does_not_take_is_a_one_line_error(tmp_path, capsys, text, message):
    ray_config = tmp_path / "ray.yaml"
    ray_config.write_text(text)
    argv = ["serve", "--routers", "length", "--port", str(free_port()), "--ray-config", str(ray_config)]
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", "http://127.0.0.1:9/v1", f"--{tier}-model", tier]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmroute: error: Ray config: ") and message in err[0], err
