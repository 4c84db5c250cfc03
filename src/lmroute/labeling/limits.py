"""How hard a labelling run may call upstreams: :class:`RunLimits`, the rate limiter, and
:class:`CallGate`, where every call of a run meets the limits."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lmroute.exceptions import ConfigError


@dataclass(frozen=True)
class RunLimits:
    """How hard a run may call upstreams, and when it stops.

    Up to ``concurrency`` calls run at once, at most ``rate`` a second (None or 0: no limit). A
    failed call (connection error, timeout, HTTP 408/409/429/5xx) is retried ``retries`` times
    with exponential backoff from ``backoff`` seconds, or after the endpoint's ``Retry-After`` when
    that is longer (one over five minutes fails the call at once). No call starts that could take the tokens
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
        # "not >= 0": a NaN rate compares false with everything, and limited nothing.
        if self.rate is not None and not self.rate >= 0:
            raise ConfigError("the rate limit must be a positive number of calls per second")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            # Else every call of the run was refused as over the budget, and the run folder made.
            raise ConfigError(f"the token budget must be at least 1 token, got {self.budget_tokens}")


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


class Gate(Protocol):
    """What a run asks before, during and after each call (:class:`CallGate` is the one in a process)."""

    async def enter(self, estimate: int) -> str | None: ...

    async def leave(self, estimate: int, tokens: int) -> None: ...

    async def pace(self) -> None: ...

    async def fail(self, error: str) -> None: ...

    async def stop_reason(self) -> str | None: ...


#: How the ``stopped`` reason of a run its token budget stopped begins.
BUDGET_STOP = "budget of"


class CallGate:
    """The limits every call of a run passes, kept in one place: at most ``concurrency`` calls at
    once, ``rate`` a second, none that could take the tokens spent past the budget, none after
    ``max_failures`` failures.

    A run in one process holds one; a run on Ray holds one in a Ray actor that every worker asks
    (:mod:`lmroute.cluster.label`), so the limits hold for the whole cluster. Every method is a
    coroutine for that reason: the workers await the actor's answers.
    """

    def __init__(
        self,
        limits: RunLimits,
        *,
        spent: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self.limits = limits
        #: Tokens spent in the run folder (earlier runs included), and the most the calls under
        #: way may add to it.
        self.spent = spent
        self.reserved = 0
        self.failures = 0
        self.stopped: str | None = None
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._limiter = RateLimiter(limits.rate, clock=clock, sleep=sleep) if limits.rate else None

    async def enter(self, estimate: int) -> str | None:
        """Wait for a free slot and reserve ``estimate`` tokens for a call; or, without taking the
        slot, say why no call may start (the budget or the failure limit reached)."""
        await self._slots.acquire()
        budget = self.limits.budget_tokens
        if not self.stopped and budget is not None and self.spent + self.reserved + estimate > budget:
            self.stopped = f"{BUDGET_STOP} {budget:,} tokens reached"
        if self.stopped:
            self._slots.release()
            return self.stopped
        self.reserved += estimate
        return None

    async def leave(self, estimate: int, tokens: int) -> None:
        """Free the slot of a call that reserved ``estimate`` tokens and spent ``tokens``."""
        self.reserved -= estimate
        self.spent += tokens
        self._slots.release()

    async def pace(self) -> None:
        """Wait until the rate limit lets the next attempt start."""
        if self._limiter is not None:
            await self._limiter.acquire()

    async def fail(self, error: str) -> None:
        """Count a failed call (``error`` says why); the failure limit stops the run."""
        self.failures += 1
        if self.failures >= self.limits.max_failures:
            self.stopped = f"{self.failures} calls failed (last: {error})"

    async def stop_reason(self) -> str | None:
        """Why no more calls start, once the budget or the failure limit is reached; else None."""
        return self.stopped
