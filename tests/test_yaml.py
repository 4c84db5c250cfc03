"""The YAML files users write: a key given twice is an error, and every file the repository ships
still loads with the reader its command uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmroute._yaml import load_yaml_text, read_yaml, yaml_kind
from lmroute.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_a_key_given_twice_names_file_line_and_key(tmp_path):
    # PyYAML keeps the last value: the 'false' a user reads first would silently not apply.
    path = tmp_path / "serve.yaml"
    path.write_text("strong: gpt-4o\nweak: gpt-4o-mini\nfallback: false\nrouters: [mf]\nfallback: true\n")
    with pytest.raises(ConfigError, match=r"serve\.yaml is not valid YAML: line 5, column 1: .*'fallback'"):
        read_yaml(path, what=str(path))


@pytest.mark.parametrize(
    "text", ["a: {x: 1, x: 2}\n", "- {x: 1}\n- {y: 1, y: 2}\n", "a:\n  b:\n    c: 1\n    c: 1\n"]
)
def test_a_key_given_twice_at_any_depth(text):
    with pytest.raises(ConfigError, match="duplicate key"):
        load_yaml_text(text, what="t")


def test_merged_keys_may_be_overridden():
    text = "base: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\n"
    assert load_yaml_text(text, what="t")["c"] == {"x": 3, "y": 2}


def _load_experiment(path: Path) -> object:
    """``path`` read as ``lmroute experiment`` reads it, by its kind."""
    from lmroute.workflows import pair_transfer, source_transfer
    from lmroute.workflows.experiment import load_experiment_config
    from lmroute.workflows.kinds import load_kind_config

    kind = yaml_kind(path)
    if kind == pair_transfer.KIND:
        return pair_transfer.load_pair_transfer_config(path)
    if kind == source_transfer.KIND:
        return source_transfer.load_similarity_vs_apgr_config(path)
    return load_kind_config(path) or load_experiment_config(path)


@pytest.mark.parametrize(
    "path",
    sorted([*REPO.glob("experiments/*.yaml"), *REPO.glob("docs/results/**/experiment.yaml")]),
    ids=lambda p: p.relative_to(REPO).as_posix(),
)
def test_every_shipped_experiment_file_loads(path):
    _load_experiment(path)


def test_every_shipped_serving_config_schedule_and_price_file_loads():
    from lmroute.catalogue import read_prices
    from lmroute.serving.config import build_config
    from lmroute.workflows.replay_mix import read_schedule

    assert build_config(REPO / "examples" / "serve-models.yaml").models
    assert build_config(REPO / "experiments" / "replay" / "gpt4-mixtral.yaml").strong.price is not None
    schedules = [p for p in REPO.glob("experiments/replay/*.yaml") if p.name != "gpt4-mixtral.yaml"]
    assert len(schedules) >= 2
    for path in schedules:
        read_schedule(path)
    assert read_prices(REPO / "examples" / "prices.yaml")
