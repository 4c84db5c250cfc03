"""The server's request count: each request to a routing endpoint in ``lmroute_requests``.

Requests are counted by endpoint, router, model and HTTP status. A route leaves its routing
decision in ``request.state.decision`` as soon as it has one, and the model that answered in
``request.state.answered_by``: a request is counted under the model that answered (the other one
after a fallback), one that fails after routing (an upstream error) under the model it was routed
to, and one that fails before (a 401, a bad body) under ``none``. The status is the one the
response starts with (a stream counts as 200 when it begins), 500 when the route raised what no
exception handler turns into a response, or 499 when the server cancelled the request before it
answered (Ray Serve does when the client leaves, as the routes answer 499 when they notice it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lmroute.serving.errors import CLIENT_CLOSED
from lmroute.serving.metrics import ServingMetrics

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestCounter:
    """ASGI middleware counting the POST requests to ``endpoints`` (path -> endpoint label)."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics, endpoints: Mapping[str, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        counted = False

        def count(status: int) -> None:
            nonlocal counted
            counted = True
            # request.state writes into scope["state"]; the route may never have set it.
            state = scope.get("state", {})
            decision = state.get("decision")
            router = decision.router if decision is not None and decision.router else "none"
            model = state.get("answered_by") or (decision.model if decision is not None else "none")
            self.metrics.requests.labels(endpoint, router, model, str(status)).inc()

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start" and not counted:
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except asyncio.CancelledError:
            if not counted:
                count(CLIENT_CLOSED)
            raise
        except Exception:
            # Left to the app's 500 handler, which sits outside every middleware.
            if not counted:
                count(500)
            raise
