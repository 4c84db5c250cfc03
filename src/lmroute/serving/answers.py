"""What a routed request yields: the decision (two models: :class:`RouteDecision`; N priced models:
:class:`~lmroute.serving.fleet.FleetDecision`), a finished :class:`Answer`, or a :class:`RoutedStream`.

Both decisions give the ``lmroute`` object that answers carry (``info``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal

from lmroute.serving.fleet import FleetDecision
from lmroute.upstream import UpstreamStream

Tier = Literal["strong", "weak"]


@dataclass(frozen=True)
class RouteDecision:
    """Which model a request goes to, and why (router fields are None for a model asked by name;
    ``score`` is None when the router failed and the request went to ``on_router_error``'s model)."""

    tier: Tier
    model: str
    router: str | None = None
    threshold: float | None = None
    score: float | None = None
    #: The target held online (``{"mode": "share", "value": 0.3}``), None for a fixed threshold.
    target: dict[str, Any] | None = None
    #: How the conversation was identified and whether it stayed on its model, or None.
    conversation: dict[str, Any] | None = None

    def info(self, *, answered_by: str, fallback: bool) -> dict[str, Any]:
        """The ``lmroute`` object added to answers."""
        return {
            "router": self.router,
            "threshold": self.threshold,
            "score": self.score,
            "decision": self.tier,
            "routed_model": self.model,
            "model": answered_by,
            "fallback": fallback,
            "target": self.target,
            "conversation": self.conversation,
        }


Decision = RouteDecision | FleetDecision


@dataclass
class Answer:
    """A finished completion: the upstream's JSON (with ``lmroute``), who answered, and if by fallback."""

    body: dict[str, Any]
    decision: Decision
    model: str
    fallback: bool


class RoutedStream:
    """An accepted stream; :meth:`chunks` yields chunk objects, the first one carrying ``lmroute``."""

    def __init__(
        self, stream: UpstreamStream, decision: Decision, *, fallback: bool, model: str | None = None
    ):
        self._stream = stream
        self.decision = decision
        self.model = model or stream.model
        self.fallback = fallback

    async def chunks(self) -> AsyncGenerator[dict[str, Any], None]:
        first = True
        async for chunk in self._stream.chunks():
            if first:
                chunk["lmroute"] = self.decision.info(answered_by=self.model, fallback=self.fallback)
                first = False
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()
