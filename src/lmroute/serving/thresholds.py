"""The start-up check of the configured thresholds: does each route (nearly) everything one way?

A threshold means something only for its router and a kind of traffic: with lmroute's shipped
``mf``, the reference's example ``router-mf-0.1159`` sends every prompt to the strong model. At
start-up the server scores a calibration sample with each router that has thresholds in the config
and warns about every threshold that sends at least :data:`NEARLY_ALL` or at most
:data:`NEARLY_NONE` of it to the strong model. The sample is ``calibration_prompts`` of the config
(your own traffic is best), else the public Arena-Hard sample when a data folder or the user cache
already holds it: a server never downloads at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path

from lmroute.exceptions import ConfigError
from lmroute.routers.base import Router
from lmroute.serving.config import ServeConfig

log = logging.getLogger("lmroute.serving")

NEARLY_ALL = 0.98
NEARLY_NONE = 0.02


def calibration_sample(
    config: ServeConfig, *, data_dir: str | Path | None = None
) -> tuple[list[str], str] | None:
    """(prompts, where from) for the check, or None when no sample is at hand."""
    from lmroute.calibration import ARENA_HARD_SAMPLE, calibration_prompts, read_arena_hard
    from lmroute.data.public import find

    if config.calibration_prompts:
        return calibration_prompts(config.calibration_prompts)
    folder = find("arena-hard", data_dir=data_dir)
    if folder is None:
        return None
    return read_arena_hard(folder / "questions.jsonl"), ARENA_HARD_SAMPLE


def check_threshold_names(config: ServeConfig, routers: Collection[str]) -> None:
    """ConfigError for thresholds of a router not served (``routers``: the served names, or the
    routers by name): a misspelt name (``MF`` for ``mf``) was silently unused, /v1/models
    advertising the default threshold and the check skipped."""
    unknown = [name for name in config.thresholds if name not in routers]
    if unknown:
        raise ConfigError(
            f"thresholds: {', '.join(map(repr, unknown))} is no served router (the routers: "
            f"{', '.join(routers)})"
        )


def threshold_warnings(
    config: ServeConfig, routers: Mapping[str, Router], *, data_dir: str | Path | None = None
) -> list[str]:
    """One message per configured threshold that routes (nearly) everything one way on the sample."""
    checked = {name: config.thresholds[name] for name in routers if config.thresholds.get(name)}
    if not checked:
        return []
    sample = calibration_sample(config, data_dir=data_dir)
    if sample is None:
        log.info(
            "thresholds not checked: no calibration sample (set calibration_prompts, or a data folder "
            "holding arena-hard/questions.jsonl with `lmroute serve --data-dir`)"
        )
        return []
    from lmroute.calibration import strong_share

    prompts, source = sample
    warnings = []
    for name, thresholds in checked.items():
        shares = strong_share(routers[name].score(prompts), thresholds)
        for threshold, share in zip(thresholds, shares.tolist(), strict=True):
            if NEARLY_NONE < share < NEARLY_ALL:
                continue
            warnings.append(
                f"threshold {threshold:g} of router {name} sends {share:.1%} of {source} ({len(prompts)} "
                "prompts) to the strong model: it routes (nearly) everything one way. "
                f"`lmroute calibrate --router {name} --strong-pct 0.3` finds the threshold of a share you "
                "choose"
            )
    return warnings
