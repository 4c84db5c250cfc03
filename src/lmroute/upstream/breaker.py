"""A circuit breaker: skip a model for a while after a request to it failed every attempt.

Without one, while a model is down every request routed to it waits through all its retries
(about 1.4 s with the default two retries) before the other model answers. After one request has
failed every attempt with a timeout, a connection error, a 5xx or a malformed answer (or one such
failure whose Retry-After is too long to wait for), the breaker *opens*: for ``cooldown`` seconds
calls fail at once with that failure, so fallback is immediate. The first call after the cooldown
tries the model again; its success closes the breaker, its failure opens it for another cooldown.
Client errors (4xx, 429) never open it: the model is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lmroute.exceptions import UpstreamError


class CircuitBreaker:
    """Whether one model is skipped now; ``cooldown`` seconds (0: never skip); ``clock`` in seconds."""

    def __init__(self, cooldown: float, *, clock: Callable[[], float] = time.monotonic):
        self.cooldown = cooldown
        self.clock = clock
        self._open_until = 0.0
        self._last: UpstreamError | None = None

    def check(self) -> None:
        """Raise the last failure (same type and status, saying for how long) while open."""
        last = self._last
        if last is None:
            return
        left = self._open_until - self.clock()
        if left <= 0:
            return
        skipping = f"skipping model {last.model} for {left:.0f} s more (circuit_breaker)"
        raise type(last)(
            f"{last}; {skipping}",
            status_code=last.status_code,
            model=last.model,
            public=f"{last.client_message}; {skipping}",
        )

    def failed(self, error: UpstreamError) -> None:
        """A request failed every attempt with ``error``: open for ``cooldown`` seconds."""
        if self.cooldown > 0:
            self._last = error
            self._open_until = self.clock() + self.cooldown

    def succeeded(self) -> None:
        """A request succeeded: closed."""
        self._last = None
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._last is not None and self._open_until > self.clock()
