"""Which runner an experiment file is for: its ``kind`` (none: the two-model protocols).

* no ``kind``: :mod:`lmroute.workflows.experiment` (``zero-shot``, ``gold-1500``);
* ``kind: pair-transfer``: :mod:`lmroute.workflows.pair_transfer`;
* ``kind: similarity-vs-apgr``: :mod:`lmroute.workflows.source_transfer`;
* ``kind: n-models``: :mod:`lmroute.workflows.n_models` (routing among N priced models);
* ``kind: onboarding-curve``: :mod:`lmroute.workflows.onboard_curve` (onboarding by probe size).

The command dispatches the first two itself; :func:`load_kind_config` reads the last two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lmroute.exceptions import ConfigError

KINDS = ("n-models", "onboarding-curve")
#: Every kind an experiment file may declare, for the error that names an unknown one.
ALL_KINDS = ("pair-transfer", "similarity-vs-apgr", *KINDS)


def load_kind_config(path: str | Path) -> BaseModel | None:
    """The config of an N-model experiment file (see the module notes), or None for a file without
    a ``kind`` (read it with :func:`lmroute.workflows.experiment.load_experiment_config`)."""
    from lmroute._yaml import read_model, yaml_kind

    kind = yaml_kind(path)
    if kind is None:
        return None
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown experiment kind {kind!r}; known kinds: {', '.join(ALL_KINDS)}")
    config_class: Any
    if kind == "n-models":
        from lmroute.workflows.n_models import NModelExperimentConfig as config_class
    else:
        from lmroute.workflows.onboard_curve import OnboardCurveConfig as config_class
    return read_model(config_class, path)
