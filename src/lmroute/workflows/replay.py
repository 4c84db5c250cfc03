"""``lmroute replay``: feed traffic in order through the control hub the server uses, and report.

The prompts are scored with the router in batches (the embedding cache makes reruns cheap) and
each is then decided by :meth:`ControlHub.decide`, exactly as the server decides a request once
its score is back: same controllers, drift detectors and state file. For comparison, the same
traffic is routed with the *static* threshold calibrated on the calibration sample for the same
target (what ``lmroute calibrate`` gives), and, for quality, with the static threshold that gives
the controller's own realized share over the whole replay (:mod:`lmroute.workflows.replay_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmroute.control.config import ControlConfig
from lmroute.control.hub import ControlHub
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError
from lmroute.pricing import Price, estimate_tokens
from lmroute.routers.base import Router
from lmroute.routing_names import RouterSpec
from lmroute.workflows.replay_mix import Traffic

#: Prompts scored in one call of the router.
BATCH = 256


@dataclass(frozen=True)
class ReplayRun:
    """What the hub decided for each prompt of the traffic, in order."""

    spec: RouterSpec
    scores: np.ndarray
    #: 1 where the request went to the strong model.
    strong: np.ndarray
    #: The threshold each decision was made with.
    thresholds: np.ndarray
    #: Each request's usage: 1/0 (strong/weak) for a share, $ per 1,000 such requests for a spend.
    usage: np.ndarray
    #: ``(n, 3)`` rows (score, weak usage, strong usage), for static thresholds on the same traffic.
    rows: np.ndarray
    #: Positions (0-based) of the requests that raised a drift alarm.
    alarms: list[int]


def tap_router(router: Router, summaries: EmbeddingSummaries) -> Router:
    """``router`` scoring through its (cached) embedder tapped by ``summaries``, as the server taps
    its routers, so drift detection sees the embedding summaries; routers without one unchanged."""
    name = router.embedder_name
    if name is not None:
        from lmroute.embeddings import get_embedder

        router.use_embedder(summaries.tap(get_embedder(name)))
    return router


def make_hub(
    config: ControlConfig | None = None, *, prices: dict[str, Price | None] | None = None
) -> ControlHub:
    """A hub as the server makes one: restored from its state file, if any."""
    hub = ControlHub(config, prices=prices)
    hub.load()
    return hub


def run_replay(
    traffic: Traffic,
    *,
    spec: RouterSpec,
    router: Router,
    hub: ControlHub,
    summaries: EmbeddingSummaries | None = None,
    calibration: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayRun:
    """Decide every prompt of ``traffic`` in order with ``hub`` under ``spec`` (router name
    ``spec.router``). ``calibration`` prompts seed it first (as the server's
    ``calibration_prompts``); ``progress`` is called with the number of prompts done. The hub's
    state is not saved: the caller saves it (``hub.save()``) once the report is out, so a save
    that fails (a full disk) loses no report of the whole replay."""
    hub.check(spec)
    if calibration:
        hub.calibrate(spec.router, router, calibration, summaries=summaries)
    n = len(traffic)
    scores, thresholds, usage = np.zeros(n), np.zeros(n), np.zeros(n)
    strong = np.zeros(n, dtype=np.int8)
    rows = np.zeros((n, 3))
    alarms: list[int] = []
    for start in range(0, n, BATCH):
        prompts = traffic.prompts[start : start + BATCH]
        batch = router.score(prompts)
        # Taken once per distinct prompt: a prompt repeated in the batch was embedded once, and its
        # later copies found no summary (drift saw them, and a reference collected over them, blind).
        taken = (
            {p: summaries.take(router.embedder_name, p) for p in dict.fromkeys(prompts)}
            if summaries is not None
            else {}
        )
        for offset, (prompt, score) in enumerate(zip(prompts, batch.tolist(), strict=True)):
            i = start + offset
            summary = taken.get(prompt)
            tokens = estimate_tokens(prompt)
            before = _alarm_count(hub, spec.router)
            decided = hub.decide(spec, score, tokens=tokens, summary=summary)
            if _alarm_count(hub, spec.router) > before:
                alarms.append(i)
            rows[i] = hub.row(spec, score, tokens)
            scores[i], thresholds[i] = score, decided.threshold
            strong[i] = decided.tier == "strong"
            usage[i] = rows[i, 2] if strong[i] else rows[i, 1]
        if progress is not None:
            progress(min(start + BATCH, n))
    return ReplayRun(spec, scores, strong, thresholds, usage, rows, alarms)


def _alarm_count(hub: ControlHub, router: str) -> int:
    detector = hub.detector(router)
    return 0 if detector is None else detector.alarms


def load_replay_router(spec: str | Path, summaries: EmbeddingSummaries) -> tuple[str, Router]:
    """A router by name or directory (``name=directory`` names it), tapped for drift detection."""
    from lmroute.registry import load_router, serving_name

    alias, sep, path = str(spec).partition("=")
    router = load_router(path if sep else alias)
    name = alias if sep else serving_name(alias, router)
    if not name:
        raise ConfigError(f"router spec {spec!r}: give a name as NAME=DIRECTORY")
    return name, tap_router(router, summaries)
