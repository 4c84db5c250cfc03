"""Micro-batched scoring: prompts of concurrent requests are scored together, off the event loop.

One :class:`MicroBatcher` per router keeps at most one batch in the thread pool. A prompt that
arrives while the router is idle is scored at once (after ``max_wait`` seconds, 0 by default, which
still gathers the prompts that arrive in the same event-loop turn); prompts that arrive while a
batch is being scored wait and go together in the next batch, up to ``max_batch``. So a lone
request pays no waiting, and under load the router sees large batches, which embedding routers
score far faster per prompt than one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

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
        on_batch: Callable[[int], None] | None = None,
    ):
        self.router = router
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._executor = executor
        self._on_batch = on_batch
        self._pending: list[tuple[str, asyncio.Future[float]]] = []
        self._running: asyncio.Task[None] | None = None
        self._timer: asyncio.Handle | None = None

    async def score(self, prompt: str) -> float:
        """P(strong wins) for one prompt, scored in a batch with its concurrent neighbours."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((prompt, future))
        if self._running is None and self._timer is None:
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
        # Callers that gave up (a client that disconnected) need no score.
        pending = [(p, f) for p, f in self._pending if not f.done()]
        if not pending:
            self._pending = []
            return
        batch, self._pending = pending[: self.max_batch], pending[self.max_batch :]
        self._running = asyncio.get_running_loop().create_task(self._score_batch(batch))

    async def _score_batch(self, batch: list[tuple[str, asyncio.Future[float]]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            scores = await loop.run_in_executor(self._executor, self.router.score, [p for p, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), score in zip(batch, scores.tolist(), strict=True):
                if not future.done():
                    future.set_result(score)
        finally:
            self._running = None
            if self._pending:
                self._timer = loop.call_soon(self._flush)
