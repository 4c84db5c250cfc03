"""Bulk scoring over Ray Data: ``lmroute score --ray``, the same records as the single-process command.

Prompts go to a pool of Ray actors, each loading the router once and scoring batches of
``batch_size`` prompts (``map_batches`` with a callable class), on every node of the cluster. The
output file is written one chunk of ``chunk_size`` prompts at a time, so an interrupted run starts
again after the last chunk it wrote: :func:`score_file_on_ray` checks that the records already
there are those of the first prompts, then scores only the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lmroute._files import read_failures, write_failures
from lmroute._jsonl import encode_line, parse_line, read_lines
from lmroute.cluster.config import absolute_router_path
from lmroute.cluster.connect import init_ray, library_error
from lmroute.evaluation.evaluator import score_records
from lmroute.exceptions import DataError, LmrouteError
from lmroute.registry import check_router_spec

log = logging.getLogger("lmroute.cluster")


class _BatchScorer:
    """One Ray Data actor: the router of ``spec``, loaded once, scoring each batch it is given."""

    def __init__(self, spec: str):
        from lmroute.registry import load_router

        # Raised by the first batch instead: an actor whose constructor fails dies, and Ray keeps
        # only the text of the error; a batch's error reaches the command whole, to be its one line.
        self.error: LmrouteError | None = None
        try:
            self.router = load_router(spec)
        except LmrouteError as exc:
            self.error = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.error is not None:
            raise self.error
        scores = self.router.score([str(p) for p in batch["prompt"]])
        return {"i": batch["i"], "score": scores}


def score_on_ray(
    spec: str,
    prompts: Sequence[str],
    *,
    address: str | None = None,
    batch_size: int = 256,
    actors: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """Scores of ``prompts`` by the router ``spec`` (a name or a directory), computed by ``actors``
    Ray Data actors on the cluster at ``address`` (a local one when None); in the prompts' order.
    ``progress``: Ray Data's progress output."""
    import ray

    if not prompts:
        return np.zeros(0)
    check_router_spec(spec)  # the workers would fail to start, with a traceback
    spec = absolute_router_path(spec)
    init_ray(address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    # A worker's error as it was raised, not in a UserCodeException whose cause Ray does not send.
    context.raise_original_map_exception = True
    items = ray.data.from_items([{"i": i, "prompt": p} for i, p in enumerate(prompts)])
    scored = items.map_batches(
        _BatchScorer,
        fn_constructor_args=(spec,),
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_format="numpy",
    )
    scores = np.full(len(prompts), np.nan)
    try:
        for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
            scores[batch["i"]] = batch["score"]
    except Exception as exc:
        # A router that does not load on a node (a directory only this machine has): its one line.
        error = library_error(exc)
        if error is None:
            raise
        raise error from None
    if np.isnan(scores).any():
        raise RuntimeError(f"Ray Data returned no score for {int(np.isnan(scores).sum())} prompts")
    return scores


def score_file_on_ray(
    spec: str,
    prompts: Sequence[str],
    output: str | Path,
    *,
    address: str | None = None,
    batch_size: int = 256,
    actors: int = 2,
    chunk_size: int = 100_000,
    progress: bool = False,
) -> int:
    """Write ``{"prompt", "score"}`` records of ``prompts`` to ``output``, a chunk at a time, after
    those an earlier run already wrote there; returns how many prompts were scored now."""
    output = Path(output)
    done = _records_done(output, prompts)
    if done:
        log.info(
            "%s already holds the first %d records: scoring the other %d", output, done, len(prompts) - done
        )
    if done < len(prompts):
        # Before the file is created: a spec no worker could load, an address without a cluster.
        check_router_spec(spec)
        init_ray(address)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if done else os.O_TRUNC)
    with write_failures(output):  # as lmroute score writes its output: a new folder made
        output.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(output, flags, 0o644)
    try:
        for start in range(done, len(prompts), chunk_size):
            chunk = prompts[start : start + chunk_size]
            scores = score_on_ray(
                spec, chunk, address=address, batch_size=batch_size, actors=actors, progress=progress
            )
            text = "".join(encode_line(record) for record in score_records(chunk, scores))
            view = memoryview(text.encode())
            with write_failures(output):
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
    finally:
        os.close(fd)
    return len(prompts) - done


def _records_done(output: Path, prompts: Sequence[str]) -> int:
    """How many complete records of an earlier run ``output`` holds (0 when there is no such file);
    DataError, the file left as it is, when they are not the records of the first prompts."""
    if not output.exists():
        return 0
    with read_failures(str(output), DataError):
        text = output.read_bytes()
    if not text.strip():  # created by a run that stopped before its first chunk
        return 0
    # A chunk is written whole or, when the run died in the middle of it, cut. The cut line is
    # dropped, but only once it and the records before it are seen to be this input's.
    keep = len(text) if text.endswith(b"\n") else text.rfind(b"\n") + 1
    done = 0
    for number, line in _lines_before_cut(output, cut=keep < len(text)):
        record = parse_line(output, number, line)
        if done >= len(prompts) or not _is_record_of(record, prompts[done]):
            raise _not_ours(output, number, done)
        done += 1
    cut = text[keep:]
    if cut:
        if cut.strip() and (done >= len(prompts) or not _may_begin_record(cut, prompts[done])):
            raise _not_ours(output, text.count(b"\n") + 1, done)
        with open(output, "r+b") as f:
            f.truncate(keep)
    return done


def _is_record_of(record: object, prompt: str) -> bool:
    """Whether ``record`` is the one lmroute score writes for ``prompt``: another file of these
    prompts (the input as JSONL, scores of --models) holds no score to keep."""
    if not isinstance(record, dict) or record.keys() != {"prompt", "score"} or record["prompt"] != prompt:
        return False
    return isinstance(record["score"], (int, float)) and not isinstance(record["score"], bool)


def _lines_before_cut(output: Path, *, cut: bool) -> Iterator[tuple[int, str]]:
    """(number, text) of the non-blank lines of ``output``, but for its last one when ``cut``."""
    last = None
    for line in read_lines(output, what=f"output {output}"):
        if last is not None:
            yield last
        last = line
    if last is not None and not cut:
        yield last


def _may_begin_record(cut: bytes, prompt: str) -> bool:
    """Whether ``cut`` (a last line without its end) is the record of ``prompt``, cut short."""
    start = encode_line({"prompt": prompt, "score": 0.0}).removesuffix("0.0}\n").encode()
    return start.startswith(cut[: len(start)])


def _not_ours(output: Path, number: int, done: int) -> DataError:
    return DataError(
        f"{output}: line {number} is not the record of prompt {done + 1} of the input: "
        "to score another input, give another --output (or delete this one)"
    )
