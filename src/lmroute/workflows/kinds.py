"""Which runner an experiment file is for: its ``kind`` (none: the two-model protocols).

* no ``kind``: :mod:`lmroute.workflows.experiment` (``zero-shot``, ``gold-1500``);
* ``kind: n-models``: :mod:`lmroute.workflows.n_models` (routing among N priced models);
* ``kind: onboarding-curve``: :mod:`lmroute.workflows.onboard_curve` (onboarding by probe size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lmroute.exceptions import ConfigError

KINDS = ("n-models", "onboarding-curve")


def load_kind_config(path: str | Path) -> BaseModel | None:
    """The config of an experiment file with a ``kind`` (see the module notes), or None for a file
    without one (read it with :func:`lmroute.workflows.experiment.load_experiment_config`)."""
    from lmroute._yaml import read_yaml

    raw = read_yaml(path, what=str(path))
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind is None:
        return None
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown experiment kind {kind!r}; known kinds: {', '.join(KINDS)}")
    config_class: Any
    if kind == "n-models":
        from lmroute.workflows.n_models import NModelExperimentConfig as config_class
    else:
        from lmroute.workflows.onboard_curve import OnboardCurveConfig as config_class
    try:
        return config_class.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
