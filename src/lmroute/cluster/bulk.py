"""Bulk scoring over Ray Data: ``lmroute score --ray``, the same records as the single-process command.

Prompts go to a pool of Ray actors, each loading the router once and scoring batches of
``batch_size`` prompts (``map_batches`` with a callable class), on every node of the cluster. The
output file is written one chunk of ``chunk_size`` prompts at a time, so an interrupted run starts
again after the last chunk it wrote: :func:`score_file_on_ray` checks that the records already
there are those of the first prompts, and that the router scores the first of them as written (not
another router's scores, to be finished with this one's), then scores only the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lmroute._files import read_failures, write_failures
from lmroute._jsonl import encode_line, parse_line, read_lines
from lmroute.cluster.config import absolute_router_path, embedder_keys
from lmroute.cluster.connect import init_ray, library_error
from lmroute.evaluation.evaluator import score_records
from lmroute.exceptions import DataError, LmrouteError
from lmroute.registry import check_router_spec

log = logging.getLogger("lmroute.cluster")

#: The records of an earlier run scored again before it is taken as this router's and gone on with.
CHECKED_RECORDS = 5
#: How far a score written earlier may be from the router's score now: a batch of other prompts,
#: another node's CPU or an embedding endpoint's answer move it a little; another router, far more.
SCORE_TOLERANCE = 1e-3


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
    keys = embedder_keys([spec])
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
        runtime_env={"env_vars": keys} if keys else None,
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
    done, written, keep = _records_done(output, prompts)
    if prompts:
        # Before the file is created or changed: a spec no worker could load, an address without a cluster.
        check_router_spec(spec)
        embedder_keys([spec])
        init_ray(address)
    if done:
        checked = prompts[: len(written)]
        now = score_on_ray(spec, checked, address=address, batch_size=batch_size, actors=1, progress=progress)
        _check_same_router(output, spec, written, now)
        log.info(
            "%s already holds the first %d records: scoring the other %d", output, done, len(prompts) - done
        )
    if keep is not None:
        with write_failures(output), open(output, "r+b") as f:
            f.truncate(keep)
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


def _records_done(output: Path, prompts: Sequence[str]) -> tuple[int, list[tuple[int, float]], int | None]:
    """How many complete records of an earlier run ``output`` holds (0 when there is no such file),
    the line numbers and scores of the first :data:`CHECKED_RECORDS` of them, and the size to cut
    the file to when its last record was cut short (None: it was not); DataError when they are not
    the records of the first prompts. The file is left as it is."""
    if not output.exists():
        return 0, [], None
    with read_failures(str(output), DataError):
        text = output.read_bytes()
    if not text.strip():  # created by a run that stopped before its first chunk
        return 0, [], None
    # A chunk is written whole or, when the run died in the middle of it, cut. The cut line is
    # dropped, but only once it and the records before it are seen to be this input's.
    keep = len(text) if text.endswith(b"\n") else text.rfind(b"\n") + 1
    done = 0
    written: list[tuple[int, float]] = []
    for number, line in _lines_before_cut(output, cut=keep < len(text)):
        record = parse_line(output, number, line)
        if done >= len(prompts) or not _is_record_of(record, prompts[done]):
            raise _not_ours(output, number, done)
        if done < CHECKED_RECORDS:
            written.append((number, float(record["score"])))
        done += 1
    cut = text[keep:]
    if cut.strip() and (done >= len(prompts) or not _may_begin_record(cut, prompts[done])):
        raise _not_ours(output, text.count(b"\n") + 1, done)
    return done, written, keep if cut else None


def _check_same_router(
    output: Path, spec: str, written: Sequence[tuple[int, float]], now: np.ndarray
) -> None:
    """DataError when the scores ``written`` in ``output`` (with their line numbers) are not those
    router ``spec`` gives ``now`` to the same prompts: the file holds another router's scores."""
    for (number, before), after in zip(written, now, strict=True):
        if not abs(before - float(after)) <= SCORE_TOLERANCE:
            raise DataError(
                f"{output}: line {number} holds the score {before:.6g}, where router {spec} gives "
                f"{float(after):.6g}: it holds another router's scores; to score with {spec}, delete "
                "it or give another --output"
            )


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
