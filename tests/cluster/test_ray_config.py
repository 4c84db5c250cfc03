"""The Ray config file: replicas or autoscaling per deployment, one-line errors (no Ray needed)."""

from __future__ import annotations

import pytest

from lmroute.cluster.config import load_ray_config
from lmroute.exceptions import ConfigError


def test_defaults_and_a_file_with_overrides(tmp_path):
    assert load_ray_config().address is None
    path = tmp_path / "ray.yaml"
    path.write_text(
        "address: auto\n"
        "ingress: {num_replicas: 3}\n"
        "scorer: {autoscaling: {min_replicas: 1, max_replicas: 4}, max_batch_size: 32}\n"
    )
    config = load_ray_config(path, address="10.0.0.5:6379", app_name=None)
    assert config.address == "10.0.0.5:6379" and config.app_name == "lmroute"
    assert config.ingress.options() == {
        "num_replicas": 3,
        "max_ongoing_requests": 256,
        "ray_actor_options": {"num_cpus": 0.5},
    }
    scorer = config.scorer.options()
    assert scorer["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4}
    assert "num_replicas" not in scorer and config.scorer.max_batch_size == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scorer: {num_replicas: 2, autoscaling: {max_replicas: 3}}", "not both"),
        ("ingress: {replicas: 2}", "ingress.replicas"),
        ("scorer: {num_replicas: 0}", "scorer.num_replicas"),
        ("- a list", "expected a mapping"),
        ("address: [", "not valid YAML"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "ray.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_ray_config(path)
    assert "\n" not in str(caught.value)
