"""How hard a labelling run may call upstreams: :class:`RunLimits`, and the rate limiter."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lmroute.exceptions import ConfigError


@dataclass(frozen=True)
class RunLimits:
    """How hard a run may call upstreams, and when it stops.

    Up to ``concurrency`` calls run at once, at most ``rate`` a second (None or 0: no limit). A
    failed call (connection error, timeout, HTTP 408/409/429/5xx) is retried ``retries`` times
    with exponential backoff from ``backoff`` seconds. No call starts that could take the tokens
    spent in the run folder (earlier runs included) over ``budget_tokens``; after
    ``max_failures`` failed calls no call starts either.
    """

    concurrency: int = 8
    rate: float | None = None
    retries: int = 3
    backoff: float = 1.0
    budget_tokens: int | None = None
    max_failures: int = 10

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if self.retries < 0 or self.max_failures < 1:
            raise ConfigError("retries must be >= 0 and max_failures >= 1")
        if self.rate is not None and self.rate < 0:
            raise ConfigError("the rate limit must be a positive number of calls per second")


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart."""

    def __init__(self, rate: float, *, clock: Callable[[], float], sleep: Callable[[float], Awaitable[Any]]):
        if rate <= 0:
            raise ConfigError("the rate limit must be a positive number of calls per second")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until the next call may start."""
        async with self._lock:
            wait = self._next - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._next = max(self._clock(), self._next) + self.interval
