"""Micro-batched scoring: prompts of concurrent requests are scored together, off the event loop.

One :class:`MicroBatcher` per router keeps at most ``max_in_flight`` batches (2) in the thread
pool: one being scored and one queued behind it, so the scoring thread goes on to the next batch
without a round trip through the event loop. A prompt that arrives while there is room is scored
at once (after ``max_wait`` seconds, 0 by default, which still gathers the prompts that arrive in
the same event-loop turn); prompts that arrive while the pool is full wait and go together in the
next batch, up to ``max_batch``. So a lone request pays no waiting, and under load the router sees
large batches, which embedding routers score far faster per prompt than one at a time.

A router that declares ``fast_scoring`` (microseconds, no model) is scored on the event loop at
once: handing it to a thread and back cost more than the scoring (at concurrency 1, a tenth of the
latency lmroute added).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial

from lmroute.routers.base import Router


class MicroBatcher:
    """Scores single prompts through batched ``router.score`` calls in ``executor``."""

    def __init__(
        self,
        router: Router,
        *,
        executor: Executor | None = None,
        max_batch: int = 64,
        max_wait: float = 0.0,
        max_in_flight: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.router = router
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self._executor = executor
        self._on_batch = on_batch
        self._pending: list[tuple[str, asyncio.Future[float]]] = []
        self._in_flight = 0
        self._timer: asyncio.Handle | None = None

    async def score(self, prompt: str) -> float:
        """P(strong wins) for one prompt, scored in a batch with its concurrent neighbours."""
        if self.router.fast_scoring:
            if self._on_batch is not None:
                self._on_batch(1)
            return float(self.router.score([prompt])[0])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((prompt, future))
        if self._in_flight < self.max_in_flight and self._timer is None:
            if self.max_wait > 0 and len(self._pending) < self.max_batch:
                self._timer = loop.call_later(self.max_wait, self._flush)
            else:
                self._timer = loop.call_soon(self._flush)
        elif self._timer is not None and len(self._pending) >= self.max_batch:
            self._timer.cancel()
            self._timer = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        while self._in_flight < self.max_in_flight:
            # Callers that gave up (a client that disconnected) need no score.
            live = [(p, f) for p, f in self._pending if not f.done()]
            batch, self._pending = live[: self.max_batch], live[self.max_batch :]
            if not batch:
                return
            self._in_flight += 1
            if self._on_batch is not None:
                self._on_batch(len(batch))
            scored = loop.run_in_executor(self._executor, self.router.score, [p for p, _ in batch])
            scored.add_done_callback(partial(self._deliver, batch))

    def _deliver(self, batch: list[tuple[str, asyncio.Future[float]]], scored: asyncio.Future) -> None:
        self._in_flight -= 1
        error = scored.exception() if not scored.cancelled() else asyncio.CancelledError()
        if error is None:
            results = scored.result().tolist()
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if error is None:
                future.set_result(results[i])
            else:
                future.set_exception(error)
        if self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_soon(self._flush)
