"""How ``lmroute serve --ray`` ends when the deployment does not come up: the application is
deleted from the cluster, not left there; an application of the same name already there is not
replaced (Ray Serve is replaced: no Ray cluster needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lmroute.cluster.config import RayConfig
from lmroute.exceptions import ConfigError
from lmroute.serving.config import build_config

serve_module = pytest.importorskip("lmroute.cluster.serve")
from ray.serve.schema import ApplicationStatus, DeploymentStatus  # noqa: E402  (after the skip without Ray Serve)


@pytest.fixture
def serve(monkeypatch):
    """Ray Serve as run_serve sees it: ``deleted`` lists the applications it deletes; set ``run``."""
    fake = SimpleNamespace(deleted=[], run=None, status=SimpleNamespace(applications={}))
    monkeypatch.setattr(serve_module, "init_ray", lambda address: None)
    monkeypatch.setattr(serve_module, "_check_proxy_address", lambda host, port: None)
    monkeypatch.setattr(serve_module.serve, "start", lambda **options: None)
    monkeypatch.setattr(serve_module.serve, "run", lambda *args, **kwargs: fake.run())
    monkeypatch.setattr(serve_module.serve, "status", lambda: fake.status)
    monkeypatch.setattr(serve_module.serve, "delete", fake.deleted.append)
    return fake


def _config():
    upstream = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}
    overrides = {"strong": {**upstream, "model": "strong"}, "weak": {**upstream, "model": "weak"}}
    return build_config(overrides={**overrides, "routers": ["length"]})


def test_replicas_that_fail_to_start_are_one_line_and_their_application_is_deleted(serve):
    """serve.run's RuntimeError was a traceback, and the failed application stayed on the cluster
    (its ingress replica starting for ever, waiting for the scorer)."""

    def run():
        serve.status = SimpleNamespace(applications={"lmroute": SimpleNamespace(deployments=deployments)})
        raise RuntimeError("Deploying application lmroute failed: Failed to update the deployments.")

    serve.run = run
    message = "The deployment failed to start 3 times in a row.\nTraceback ...\n" + (
        "lmroute.exceptions.UnknownRouterError: /x is not a router directory (no config.json in it)\n"
    )
    deployments = {
        "Ingress": SimpleNamespace(status=DeploymentStatus.UPDATING, message="starting"),
        "Scorer": SimpleNamespace(status=DeploymentStatus.DEPLOY_FAILED, message=message),
    }
    expected = (
        "Ray Serve did not deploy lmroute: its Scorer replicas failed to start: "
        "UnknownRouterError: /x is not a router directory (no config.json in it)"
    )
    with pytest.raises(ConfigError) as error:
        serve_module.run_serve(_config(), RayConfig(), blocking=False)
    assert str(error.value) == expected
    assert serve.deleted == ["lmroute"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_command_stopped_while_deploying_deletes_its_application(serve, stop):
    """Ctrl-C (or SIGTERM, which ray.init makes a SystemExit) before serve.run returned: only a stop
    after it deleted the application, which came up and went on serving without its command."""

    def run():
        raise stop()

    serve.run = run
    with pytest.raises(stop):
        serve_module.run_serve(_config(), RayConfig())
    assert serve.deleted == ["lmroute"]


def test_an_application_of_the_same_name_is_not_replaced(serve):
    """serve.run replaces an application of the same name in place: a second command took over
    the first one's server silently, and the first, when stopped, deleted the second's."""
    running = SimpleNamespace(status=ApplicationStatus.RUNNING, deployments={})
    serve.status = SimpleNamespace(applications={"lmroute": running})
    serve.run = lambda: pytest.fail("deployed over the running application")
    with pytest.raises(ConfigError) as error:
        serve_module.run_serve(_config(), RayConfig(), blocking=False)
    assert str(error.value) == (
        "Ray Serve already has an application named lmroute on this cluster (RUNNING; another "
        "`lmroute serve --ray`, or one whose command was killed): stop that command, or delete the "
        "application with `serve delete lmroute`"
    )
    assert serve.deleted == []


def test_a_scoring_replica_whose_router_cannot_score_names_it(monkeypatch):
    """The replica's warm-up raised the bare error, which Ray Serve's deploy failure showed as the
    command's one line, naming no router (lmroute serve names it: `router ... cannot score`)."""
    from lmroute.routers.length import LengthRouter

    class Down(LengthRouter):
        def _score(self, prompts):
            raise ConnectionError("embedding backend refused the connection")

    monkeypatch.setattr(serve_module, "load_routers", lambda specs, summaries: {"mine": Down()})
    scorer = serve_module.Scorer.func_or_class  # the class under Ray Serve's deployment
    with pytest.raises(ConfigError) as error:
        scorer(["mine=/on/the/nodes"], 8, 0.01)
    assert str(error.value) == (
        "router 'mine' cannot score a prompt: ConnectionError: embedding backend refused the connection"
    )
