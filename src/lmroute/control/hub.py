"""The control hub: every routing decision the server, the Controller and ``lmroute replay`` make
with a router goes through :meth:`ControlHub.decide`, the one code path of online control.

For a request scored by a router the hub

1. feeds the score (and the prompt's embedding summary) to the router's drift detector;
2. finds the threshold: the model string's own (``router-mf-0.52``), or the current setting of
   the online controller of that target (``router-mf-share-0.3``, ``router-mf-spend-2.5``; one
   controller per target, and per API key when ``per_api_key`` is set), created on first use and
   seeded with the router's calibration sample;
3. keeps a known conversation on its model unless the score crosses the threshold by the margin;
4. tells the controller what was decided, and counts a decision towards the next save.

It knows nothing of HTTP: callers give it scores, token estimates and conversation keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmroute.control.config import ControlConfig
from lmroute.control.controller import OnlineController
from lmroute.control.conversations import ConversationKeys, ConversationMemory, Outcome
from lmroute.control.drift import DriftDetector
from lmroute.control.knobs import ThresholdKnob
from lmroute.control.state import check_state_path, quarantine, read_state, write_state
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError
from lmroute.pricing import Price, estimate_tokens
from lmroute.routers.base import Decision, Router
from lmroute.routing_names import THRESHOLD, RouterSpec, parse_model_name

log = logging.getLogger("lmroute.control")

#: Dollars per request -> the spend unit of targets, dollars per 1,000 requests.
_PER_1000 = 1000.0


@dataclass(frozen=True)
class Controlled:
    """A decision made under control: the model tier, the threshold it was made with, the target
    (None for a fixed threshold) and the conversation's outcome (None outside a conversation)."""

    tier: Decision
    threshold: float
    target: dict[str, Any] | None = None
    conversation: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Seed:
    scores: np.ndarray
    tokens: np.ndarray
    summaries: np.ndarray | None


class ControlHub:
    """Online controllers, drift detectors and conversation memory of one server or Controller.

    ``prices`` (``{"strong": Price, "weak": Price}``) price spend targets; ``clock`` times
    conversations (tests pass a fake).
    """

    def __init__(
        self,
        config: ControlConfig | None = None,
        *,
        prices: Mapping[str, Price | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config or ControlConfig()
        self.prices = dict(prices or {})
        self._seeds: dict[str, _Seed] = {}
        self._controllers: dict[tuple[str, str | None], OnlineController] = {}
        self._by_spec: dict[tuple[RouterSpec, str | None], OnlineController] = {}
        self._drift: dict[str, DriftDetector] = {}
        #: The prices of restored spend controllers' rows while this hub has none to re-price them at.
        self._row_prices: dict[tuple[str, str | None], dict[str, Any]] = {}
        conv = self.config.conversations
        self.conversations = (
            ConversationMemory(margin=conv.margin, capacity=conv.capacity, ttl=conv.ttl, clock=clock)
            if conv.enabled
            else None
        )
        self._since_save = 0
        #: Why the state file could not be used at start, and why the last save failed (None once
        #: a save succeeds): ``state.problem`` of the status shows the save's while there is one.
        self._load_problem: str | None = None
        self._save_problem: str | None = None
        self.state_report: dict[str, Any] = {
            "file": self.config.state_file,
            "restored": False,
            "problem": None,
        }

    # -- targets ------------------------------------------------------------------------------
    def check(self, spec: RouterSpec) -> None:
        """ConfigError (a 400 in the server) when this hub cannot hold ``spec``'s target."""
        if spec.mode == "spend":
            missing = [tier for tier in ("strong", "weak") if self.prices.get(tier) is None]
            if missing:
                one = len(missing) == 1
                whose = f"the {missing[0]} has none (give it" if one else "neither has one (give each"
                raise ConfigError(
                    f"model {spec.model!r}: spend targets need the price of both models; {whose} "
                    "price: {input_per_1m, output_per_1m})"
                )
            strong, weak = self.prices["strong"], self.prices["weak"]
            assert strong is not None and weak is not None
            # A request's estimated answer costs output_per_1m x output_tokens: a weak model that
            # answers at length (a reasoning model) can cost more per request at a lower price.
            if (
                strong.input_per_1m < weak.input_per_1m
                or strong.output_per_1m * strong.output_tokens < weak.output_per_1m * weak.output_tokens
            ):
                raise ConfigError(
                    f"model {spec.model!r}: spend targets assume the strong model costs more than the "
                    "weak one, but its input price, or its answer's estimated cost (output_per_1m x "
                    "output_tokens), is lower"
                )
        elif spec.mode not in (THRESHOLD, "share"):
            raise ConfigError(f"model {spec.model!r}: mode {spec.mode!r} is not served here")

    def row(self, spec: RouterSpec, score: float, tokens: float) -> np.ndarray:
        """A request's row for the controller of ``spec``: its score and each model's usage."""
        if spec.mode == "spend":
            strong, weak = self.prices["strong"], self.prices["weak"]
            assert strong is not None and weak is not None
            return np.array(
                [score, _PER_1000 * weak.request_cost(tokens), _PER_1000 * strong.request_cost(tokens)]
            )
        return np.array([score, 0.0, 1.0])

    def controller(self, spec: RouterSpec, tenant: str | None = None) -> OnlineController:
        """The controller holding ``spec``'s target (for ``tenant``), created on first use; a
        ConfigError (a 400 in the server) when ``max_controllers`` are held already."""
        tenant = tenant if self.config.per_api_key else None
        found = self._by_spec.get((spec, tenant))
        if found is not None:  # formatting the model string costs more than the rest of a lookup
            return found
        key = (spec.model, tenant)
        found = self._controllers.get(key)
        if found is None:
            self.check(spec)
            held, limit = len(self._controllers), self.config.max_controllers
            if held >= limit:
                # Each distinct target (share-0.3001, 0.3002, ...) would hold memory, a place in the
                # state file and the metrics for good: the limit keeps them bounded.
                each = "target and API key" if self.config.per_api_key else "target"
                raise ConfigError(
                    f"model {spec.model!r}: no new target is taken here: the {held} controllers held "
                    f"(one per {each}) reach control.max_controllers ({limit}); use a target already "
                    "held (the status lists them), or raise the limit"
                )
            seed = self._seeds.get(spec.router)
            rows = None
            if seed is not None:
                rows = np.stack([self.row(spec, s, t) for s, t in zip(seed.scores, seed.tokens, strict=True)])
            found = OnlineController(
                ThresholdKnob(), spec.value, window=self.config.window, gain=self.config.gain, seed=rows
            )
            self._controllers[key] = found
        self._by_spec[(spec, tenant)] = found
        return found

    # -- calibration ----------------------------------------------------------------------------
    def seed(
        self,
        router: str,
        scores: Sequence[float] | np.ndarray,
        *,
        tokens: Sequence[float] | np.ndarray,
        summaries: np.ndarray | None = None,
    ) -> None:
        """Give ``router`` a calibration sample: it seeds new controllers' windows and, unless a
        restored state has one, the drift reference."""
        scores = np.asarray(scores, dtype=np.float64)
        if not len(scores):
            raise ConfigError(f"router {router!r}: the calibration sample is empty")
        self._seeds[router] = _Seed(scores, np.asarray(tokens, dtype=np.float64), summaries)
        if self.config.drift.enabled and router not in self._drift:
            self._detector(router).set_reference(scores, summaries, source="calibration")

    def calibrate(
        self,
        name: str,
        router: Router,
        prompts: Sequence[str],
        *,
        summaries: EmbeddingSummaries | None = None,
    ) -> None:
        """Score ``prompts`` with ``router`` and :meth:`seed` ``name`` with them (their embedding
        summaries from ``summaries``, the store tapping the router's embedder, when given)."""
        distinct = list(dict.fromkeys(prompts))
        # In pieces the store holds: it keeps its last `capacity` texts only, and a larger sample
        # scored at once lost its first summaries, and with them the embedding reference.
        step = summaries.capacity if summaries is not None else max(len(distinct), 1)
        scores: dict[str, float] = {}
        taken: dict[str, np.ndarray | None] = {}
        for start in range(0, len(distinct), step):
            piece = distinct[start : start + step]
            scores.update(zip(piece, router.score(piece).tolist(), strict=True))
            if summaries is not None:
                taken.update((p, summaries.take(router.embedder_name, p)) for p in piece)
        kept = None
        if summaries is not None:
            found = {p: v for p, v in taken.items() if v is not None}
            if len(found) == len(distinct):
                kept = np.stack([found[p] for p in prompts])
        self.seed(
            name,
            [scores[p] for p in prompts],
            tokens=[estimate_tokens(p) for p in prompts],
            summaries=kept,
        )

    # -- the decision -------------------------------------------------------------------------------
    def decide(
        self,
        spec: RouterSpec,
        score: float,
        *,
        tokens: float = 1.0,
        summary: np.ndarray | None = None,
        conversation: ConversationKeys | None = None,
        tenant: str | None = None,
    ) -> Controlled:
        """Decide a scored request: see the module docstring. ``tokens``: the request's estimated
        input tokens (all of its messages), which price it under a spend target."""
        # The controller first: a target refused (the limit of controllers) leaves no trace.
        controller = None if spec.mode == THRESHOLD else self.controller(spec, tenant)
        if self.config.drift.enabled:
            self._observe_drift(spec.router, score, summary)
        row = None
        if controller is None:
            threshold = spec.value
        else:
            row = self.row(spec, score, tokens)
            threshold = controller.setting_at(row)
        tier: Decision = "strong" if score >= threshold else "weak"
        outcome: Outcome | None = None
        if conversation is not None and self.conversations is not None:
            tier, outcome = self.conversations.route(conversation, score, threshold)
        if controller is not None and row is not None:
            controller.observe(row, 1 if tier == "strong" else 0)
        self._since_save += 1
        return Controlled(
            tier,
            threshold,
            None if controller is None else {"mode": spec.mode, "value": spec.value},
            None
            if outcome is None
            else {"source": conversation.source if conversation else None, "outcome": outcome},
        )

    def detector(self, router: str) -> DriftDetector | None:
        """``router``'s drift detector, None before its first request or calibration."""
        return self._drift.get(router)

    def _detector(self, router: str) -> DriftDetector:
        found = self._drift.get(router)
        if found is None:
            d = self.config.drift
            found = DriftDetector(span=d.span, reference_size=d.reference_size, false_alarm=d.false_alarm)
            self._drift[router] = found
        return found

    def _observe_drift(self, router: str, score: float, summary: np.ndarray | None) -> None:
        detector = self._detector(router)
        if detector.observe(score, summary):
            alarm = detector.last_alarm or {}
            embedding = alarm.get("embedding_shift")
            log.warning(
                "drift: router %s's traffic has moved away from its %s reference after %d requests "
                "(score shift %.2f, embedding shift %s; 1 is the alarm level); the next %d requests "
                "become the new reference",
                router,
                detector.reference.source if detector.reference else "?",
                detector.observed,
                detector.score_shift,
                "n/a" if embedding is None else f"{embedding:.2f}",
                detector.reference_size,
            )

    # -- reporting ------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Controllers (setting, realized usage), drift per router, conversations, the state file."""
        controllers = []
        for (model, tenant), controller in sorted(
            self._controllers.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
        ):
            spec = parse_model_name(model)
            report = controller.status().to_dict()
            report["threshold"] = report.pop("setting")
            controllers.append(
                {"model": model, "router": spec.router, "mode": spec.mode, "tenant": tenant, **report}
            )
        conversations = None
        if self.conversations is not None:
            counts = self.conversations.counts
            conversations = {
                "tracked": len(self.conversations),
                "new": counts.new,
                "stayed": counts.stayed,
                "switched": counts.switched,
                "held": counts.held,
                "switch_rate": counts.switch_rate,
            }
        return {
            "controllers": controllers,
            "drift": {router: d.status() for router, d in sorted(self._drift.items())},
            "conversations": conversations,
            "state": dict(self.state_report),
        }

    # -- state ------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Every controller and drift detector, JSON-ready (conversations are not kept)."""
        return {
            "controllers": [
                {
                    "model": model,
                    "tenant": tenant,
                    "controller": c.to_state(),
                    **self._priced((model, tenant)),
                }
                for (model, tenant), c in self._controllers.items()
            ],
            "drift": {router: d.to_state() for router, d in self._drift.items()},
        }

    def _both_prices(self) -> dict[str, Price] | None:
        strong, weak = self.prices.get("strong"), self.prices.get("weak")
        return None if strong is None or weak is None else {"strong": strong, "weak": weak}

    def _priced(self, key: tuple[str, str | None]) -> dict[str, Any]:
        """The prices a spend controller's rows are priced at, for its entry in the state file."""
        kept = self._row_prices.get(key)
        prices = self._both_prices()
        if kept is None and prices is not None and parse_model_name(key[0]).mode == "spend":
            kept = {tier: price.model_dump() for tier, price in prices.items()}
        return {} if kept is None else {"prices": kept}

    def _repriced(self, spec: RouterSpec, rows: list[Any], old: dict[str, Price]) -> list[Any] | None:
        """A spend controller's saved ``rows`` at this hub's prices, each request's tokens recovered
        from the strong model's ``old`` price; None when they need no re-pricing, or cannot have it
        (prices that price no input token)."""
        if old == self._both_prices():
            return None
        strong = old["strong"]
        if strong.input_per_1m <= 0:  # the weak model's is no higher: no cost told the tokens
            log.warning(
                "control state: the window of %s keeps the prices it was saved with until it refills "
                "(they price no input token, so its requests' tokens are unknown)",
                spec.model,
            )
            return None
        repriced = []
        for score, _, cost in rows:
            spent = cost / _PER_1000 * 1e6 - strong.output_tokens * strong.output_per_1m
            repriced.append(self.row(spec, score, max(spent / strong.input_per_1m, 1.0)).tolist())
        return repriced

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take the controllers and detectors of :meth:`to_state`; ConfigError if any does not fit
        (nothing is taken then). The settings are this hub's config's, not the state's: a window,
        gain or drift setting changed in the config between two runs holds from the restart on
        (a shorter window keeps the latest requests)."""
        window, gain = self.config.window, self.config.gain
        drift = self.config.drift
        settings = {
            "span": drift.span,
            "reference_size": drift.reference_size,
            "false_alarm": drift.false_alarm,
        }
        try:
            controllers = {}
            row_prices: dict[tuple[str, str | None], dict[str, Any]] = {}
            for entry in state["controllers"]:
                spec = parse_model_name(entry["model"])
                tenant = entry["tenant"]
                if tenant is not None and not isinstance(tenant, str):
                    raise ValueError(f"tenant {tenant!r} is not a string")
                if spec.mode not in ("share", "spend"):
                    raise ValueError(f"{spec.model} is not a target held online")
                saved = entry["controller"]
                if not isinstance(saved["rows"], list) or not isinstance(saved["used"], list):
                    raise ValueError("the rows of a controller are not lists")
                rows = saved["rows"][-window:]
                # Rows priced at other prices than the config's would hold the spend at those until
                # the window refills; the realized spend keeps what was estimated at the time. A
                # state file of an older lmroute does not say its prices.
                repriced = None
                if spec.mode == "spend" and "prices" in entry:
                    old = {tier: Price.model_validate(entry["prices"][tier]) for tier in ("strong", "weak")}
                    if self._both_prices() is None:  # kept as they are, until prices are given again
                        row_prices[(spec.model, tenant)] = {t: p.model_dump() for t, p in old.items()}
                    else:
                        repriced = self._repriced(spec, rows, old)
                restored = OnlineController.from_state(
                    ThresholdKnob(),
                    {
                        **saved,
                        "window": window,
                        "gain": gain,
                        "rows": rows if repriced is None else repriced,
                        "used": saved["used"][-window:],
                    },
                )
                if repriced is not None:
                    restored.resettle()
                if restored.target != spec.value:
                    # It would hold its own target while every answer names the model's.
                    raise ValueError(f"the controller of {spec.model} holds target {restored.target}")
                controllers[(spec.model, tenant)] = restored
            detectors = {
                str(r): DriftDetector.from_state({**d, "settings": {**d["settings"], **settings}})
                for r, d in state["drift"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ConfigError(f"the control state does not fit: {type(exc).__name__}: {exc}") from None
        self._controllers.update(controllers)
        self._row_prices.update(row_prices)
        self._by_spec.clear()
        self._drift.update(detectors)

    def _drop_unreachable(
        self, routers: Collection[str] | None, tenants: Collection[str | None] | None
    ) -> None:
        """Drop the restored controllers and detectors no request can reach (see :meth:`load`):
        they would be held in the status, the metrics and the state file for good, and count
        towards ``max_controllers``."""
        served = None if routers is None else set(routers)
        if tenants is None:  # unknown: only per_api_key tells
            tenants = None if self.config.per_api_key else {None}
        dropped = []
        for model, tenant in list(self._controllers):
            router = parse_model_name(model).router
            if served is not None and router not in served:
                dropped.append(f"{model} (router {router} is not served)")
            elif tenants is not None and tenant not in tenants:
                if tenant is None:
                    dropped.append(f"{model} shared by all API keys (per_api_key is on)")
                elif self.config.per_api_key:
                    dropped.append(f"{model} of an API key no longer among the server's")
                else:
                    dropped.append(f"{model} of an API key (per_api_key is off)")
            else:
                continue
            del self._controllers[(model, tenant)]
            self._row_prices.pop((model, tenant), None)
        self._by_spec.clear()
        for router in [] if served is None else sorted(set(self._drift) - served):
            del self._drift[router]
            dropped.append(f"the drift detector of {router} (not served)")
        if dropped:
            more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
            log.warning(
                "control state %s: dropped what no request can reach any more: %s%s",
                self.config.state_file,
                ", ".join(dropped[:10]),
                more,
            )

    @property
    def save_due(self) -> bool:
        """A state file is set and ``save_every`` decisions were made since the last save."""
        return self.config.state_file is not None and self._since_save >= self.config.save_every

    def snapshot(self) -> dict[str, Any]:
        """:meth:`to_state`, and the count towards the next save starts again."""
        self._since_save = 0
        return self.to_state()

    def save(self, state: dict[str, Any] | None = None) -> None:
        """Write ``state`` (default: a snapshot now) to the state file, if one is set. A failure
        (a WriteError) is shown in :attr:`state_report` until a save succeeds."""
        path = self.config.state_file
        if path is None:
            return
        try:
            write_state(path, self.snapshot() if state is None else state)
        except OSError as exc:
            self._save_problem = f"the last save failed: {exc}"
            raise
        else:
            self._save_problem = None
        finally:
            self.state_report["problem"] = self._save_problem or self._load_problem

    def load(
        self, routers: Collection[str] | None = None, tenants: Collection[str | None] | None = None
    ) -> bool:
        """Restore from the state file if there is one; a bad file is reported (a warning and
        :attr:`state_report`), moved aside and replaced at the next save (a folder is a ConfigError).
        True if restored.

        What no request can reach any more is dropped, with a warning: when ``routers`` (the routers
        served) are given, the controllers and drift detectors of other routers (one renamed or no
        longer served); the controllers of a tenant not among ``tenants`` (those requests can name:
        None for requests without one), or when they are not given, those of an API key while
        ``per_api_key`` is off."""
        path = self.config.state_file
        if path is None:
            return False
        check_state_path(path)
        state, problem = read_state(path)
        if state is not None:
            try:
                self.restore(state)
            except ConfigError as exc:
                problem = str(exc)
            else:
                self._drop_unreachable(routers, tenants)
        if problem is not None:
            aside = quarantine(path)
            where = f"moved to {aside}" if aside else "it will be overwritten"
            self._load_problem = self.state_report["problem"] = f"{problem}; {where}"
            log.warning("control state %s cannot be used: %s; %s; starting afresh", path, problem, where)
            return False
        restored = state is not None
        self.state_report["restored"] = restored
        if restored:
            log.info("control state restored from %s", Path(path))
            held, limit = len(self._controllers), self.config.max_controllers
            if held > limit:  # a limit lowered since the save: no controller's state is dropped for it
                log.warning(
                    "control state %s holds %d controllers, more than control.max_controllers (%d): "
                    "all are kept, and no new target is taken until the limit is raised",
                    path,
                    held,
                    limit,
                )
        return restored
