"""Labelling over Ray Data: ``lmroute label --ray``, with the run folder and output of ``lmroute label``.

The process that runs the command owns the run folder: it opens the stores (and takes their locks)
and sends each item, with the calls stored for it, through Ray Data to ``actors`` workers. A worker
labels a batch of items as one process would (:func:`~lmroute.labeling.run.alabel_items`): a stored
call is reused, a new one is made. Every call passes the one
:class:`~lmroute.labeling.limits.CallGate` of the run, held by a Ray actor that all workers ask, so
``--concurrency``, ``--rate``, ``--budget-tokens`` and ``--max-failures`` hold for the whole cluster.
A batch's new calls come back with it and are appended to the stores at once, so a run stopped part
way loses only the batches under way, and a rerun (on Ray or in one process) continues it. Battles,
scores and the summary are then written as ``lmroute label`` writes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from lmroute.cluster.connect import init_ray, library_error
from lmroute.exceptions import ConfigError
from lmroute.labeling.items import LabelItem
from lmroute.labeling.job import LabelJob
from lmroute.labeling.limits import CallGate, RunLimits
from lmroute.labeling.outputs import ItemCalls, LabelResult, write_outputs
from lmroute.labeling.run import RunTally, alabel_items, run_summary, stored_tokens
from lmroute.labeling.store import JUDGEMENTS_FILE, RESPONSES_FILE, CallStore, MemoryStore

#: What Ray reserves per worker: a worker mostly waits on the network.
_WORKER_CPUS = 0.25


def label_on_ray(
    job: LabelJob,
    out: str | Path,
    *,
    limits: RunLimits | None = None,
    address: str | None = None,
    actors: int = 2,
    progress: bool = False,
) -> LabelResult:
    """Run ``job`` into folder ``out`` as :func:`~lmroute.labeling.run.label` does, its calls made by
    ``actors`` Ray Data workers on the cluster at ``address`` (a local one when None) within
    ``limits`` for the whole cluster."""
    import ray

    if actors < 1:
        raise ConfigError(f"--ray-actors must be at least 1, not {actors}")
    out = Path(out)
    limits = limits or RunLimits()
    env_vars = _api_keys(job)
    init_ray(address)  # before the run folder is made: an address without a cluster leaves none
    with (
        CallStore.open(out / RESPONSES_FILE) as responses,
        CallStore.open(out / JUDGEMENTS_FILE) as judgements,
    ):
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        # A worker's error as it was raised, not in a UserCodeException whose cause Ray does not send.
        context.raise_original_map_exception = True
        spent = stored_tokens([responses, judgements])
        gate: Any = ray.remote(_SharedGate).options(num_cpus=0).remote(limits, spent=spent)
        try:
            outcomes, tally = _label(job, responses, judgements, gate, limits, actors, env_vars)
            stopped = ray.get(gate.stop_reason.remote())
        finally:
            ray.kill(gate)
    return write_outputs(job, out, outcomes, run_summary(tally, [responses, judgements], stopped))


def _label(
    job: LabelJob,
    responses: CallStore,
    judgements: CallStore,
    gate: Any,
    limits: RunLimits,
    actors: int,
    env_vars: dict[str, str],
) -> tuple[list[ItemCalls | None], RunTally]:
    import ray

    stored: dict[str, dict[str, list[dict[str, Any]]]] = {
        item.id: {"responses": [], "judgements": []} for item in job.items
    }
    for kind, store in (("responses", responses), ("judgements", judgements)):
        for record in store:
            if record["prompt_id"] in stored:
                stored[record["prompt_id"]][kind].append(record)
    rows = [
        {"i": i, "item": json.dumps(asdict(item)), "stored": json.dumps(stored[item.id])}
        for i, item in enumerate(job.items)
    ]
    # The workers get the items in their rows; the job they are given is the rest of it.
    settings = replace(job, items=job.items[:1])
    labelled = ray.data.from_items(rows).map_batches(
        _BatchLabeller,
        fn_constructor_args=(settings, limits, gate),
        # A batch has calls enough to fill every slot of the gate; it is also what a stopped run
        # may have paid for and not stored.
        batch_size=limits.concurrency,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=_WORKER_CPUS,
        runtime_env={"env_vars": env_vars} if env_vars else None,
        batch_format="numpy",
    )
    outcomes: list[ItemCalls | None] = [None] * len(job.items)
    tally = RunTally()
    try:
        for batch in labelled.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["labelled"]:
                done = json.loads(text)
                for record in done["responses"]:
                    responses.append(record)
                for record in done["judgements"]:
                    judgements.append(record)
                for i, calls in zip(done["items"], done["outcomes"], strict=True):
                    outcomes[i] = None if calls is None else ItemCalls(**calls)
                tally.add(RunTally.from_dict(done["tally"]))
    except Exception as exc:
        error = library_error(exc)
        if error is None:  # a bug: its whole story
            raise
        raise error from None  # a worker's one-line error, without Ray's wrapping
    return outcomes, tally


class _BatchLabeller:
    """One Ray Data worker: labels each batch of items it is given, through the shared gate."""

    def __init__(self, job: LabelJob, limits: RunLimits, gate: Any):
        import ray

        from lmroute.labeling.upstream import UpstreamCaller

        self.job = job
        self.limits = limits
        # Ray Data restarts a worker that died (same actor id, a new process): joining frees the
        # slots its last incarnation held.
        incarnation = uuid.uuid4().hex
        ray.get(gate.join.remote(ray.get_runtime_context().get_actor_id(), incarnation))
        self.gate = _RemoteGate(gate, incarnation)
        # One event loop and one caller for the worker's life, so that connections are reused from
        # batch to batch. The HTTP modules are imported now, not on the first call: that import would
        # come after the gate let the call start, and send the first requests in a bunch.
        import aiohttp  # noqa: F401

        import lmroute.upstream  # noqa: F401

        self.loop = asyncio.new_event_loop()
        self.caller = UpstreamCaller()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"labelled": np.array([self.loop.run_until_complete(self._label(batch))], dtype=object)}

    def __del__(self) -> None:
        # Ray Data calls this when it stops the worker. Left to the garbage collector, every HTTP
        # session of the caller printed "Unclosed client session" into the run's output.
        loop, caller = getattr(self, "loop", None), getattr(self, "caller", None)
        if loop is None or loop.is_closed():
            return
        if caller is not None:
            loop.run_until_complete(caller.aclose())
        loop.close()

    async def _label(self, batch: dict[str, np.ndarray]) -> str:
        items = [LabelItem(**json.loads(text)) for text in batch["item"]]
        stored = [json.loads(text) for text in batch["stored"]]
        responses = MemoryStore(record for s in stored for record in s["responses"])
        judgements = MemoryStore(record for s in stored for record in s["judgements"])
        outcomes, tally = await alabel_items(
            self.job,
            items,
            responses,
            judgements,
            caller=self.caller,
            gate=self.gate,
            limits=self.limits,
        )
        return json.dumps(
            {
                "items": [int(i) for i in batch["i"]],
                "outcomes": [None if o is None else asdict(o) for o in outcomes],
                "responses": responses.added,
                "judgements": judgements.added,
                "tally": tally.as_dict(),
            },
            ensure_ascii=False,
        )


class _SharedGate:
    """The run's :class:`CallGate`, in a Ray actor: it also knows which worker holds each slot, so
    that a worker that died (and was restarted by Ray Data) does not keep its slots for ever."""

    def __init__(self, limits: RunLimits, *, spent: int):
        self.gate = CallGate(limits, spent=spent)
        #: Worker (actor id) -> its live incarnation; incarnation -> estimates of the slots it holds.
        self.workers: dict[str, str] = {}
        self.held: dict[str, list[int]] = {}
        self.gone: set[str] = set()

    async def join(self, worker: str, incarnation: str) -> None:
        """A worker starts, or starts again: what its last incarnation held is freed."""
        last = self.workers.get(worker)
        self.workers[worker] = incarnation
        if last is not None:
            self.gone.add(last)
            for estimate in self.held.pop(last, []):
                await self.gate.leave(estimate, 0)

    async def enter(self, incarnation: str, estimate: int) -> str | None:
        stopped = await self.gate.enter(estimate)
        if stopped is None and incarnation in self.gone:  # asked before it died, answered after
            await self.gate.leave(estimate, 0)
            return "the worker was restarted"
        if stopped is None:
            self.held.setdefault(incarnation, []).append(estimate)
        return stopped

    async def leave(self, incarnation: str, estimate: int, tokens: int) -> None:
        held = self.held.get(incarnation, [])
        if estimate in held:  # else freed already, when the worker was restarted
            held.remove(estimate)
            await self.gate.leave(estimate, tokens)

    async def pace(self) -> None:
        await self.gate.pace()

    async def fail(self, error: str) -> None:
        await self.gate.fail(error)

    async def stop_reason(self) -> str | None:
        return await self.gate.stop_reason()


class _RemoteGate:
    """The run's gate (a :class:`_SharedGate` actor), asked by one incarnation of a worker."""

    def __init__(self, actor: Any, incarnation: str):
        self.actor = actor
        self.incarnation = incarnation

    async def enter(self, estimate: int) -> str | None:
        return await self.actor.enter.remote(self.incarnation, estimate)  # type: ignore[no-any-return]

    async def leave(self, estimate: int, tokens: int) -> None:
        await self.actor.leave.remote(self.incarnation, estimate, tokens)

    async def pace(self) -> None:
        await self.actor.pace.remote()

    async def fail(self, error: str) -> None:
        await self.actor.fail.remote(error)

    async def stop_reason(self) -> str | None:
        return await self.actor.stop_reason.remote()  # type: ignore[no-any-return]


def _api_keys(job: LabelJob) -> dict[str, str]:
    """The API keys the workers need, from this environment (ConfigError naming an unset one)."""
    keys: dict[str, str] = {}
    for model in (*job.models, *([job.judge] if job.judge else [])):
        if model.api_key_env:
            model.api_key()  # ConfigError when the variable is unset
            keys[model.api_key_env] = os.environ[model.api_key_env]
    return keys
