"""The output file of ``lmroute score --ray``: what an earlier run left there (no Ray needed: the
scoring itself is replaced)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmroute.cluster import bulk
from lmroute.exceptions import DataError

PROMPTS = ["first prompt", "second prompt", "third prompt"]


def _record(prompt: str, score: float) -> str:
    return json.dumps({"prompt": prompt, "score": score}) + "\n"


@pytest.fixture
def scored(monkeypatch):
    """The prompts score_file_on_ray sends to Ray, each scored by its length (no Ray started)."""
    sent: list[str] = []

    def score_on_ray(spec, prompts, **options):
        sent.extend(prompts)
        return np.array([float(len(p)) for p in prompts])

    monkeypatch.setattr(bulk, "score_on_ray", score_on_ray)
    monkeypatch.setattr(bulk, "init_ray", lambda address: None)
    return sent


FULL = "".join(_record(p, float(len(p))) for p in PROMPTS)


@pytest.mark.parametrize(
    ("left", "done"),
    [
        ("", 0),  # the file is created before the first chunk: a run stopped then leaves it empty
        (FULL[:7], 0),  # a run stopped in the middle of the first record
        (FULL[: FULL.index("\n") + 9], 1),
    ],
    ids=["empty", "first-record-cut", "second-record-cut"],
)
def test_the_same_command_goes_on_after_a_run_that_stopped(tmp_path, scored, left, done):
    output = tmp_path / "scores.jsonl"
    output.write_text(left)
    assert bulk.score_file_on_ray("length", PROMPTS, output) == len(PROMPTS) - done
    assert scored == PROMPTS[:done] + PROMPTS[done:]  # the records written are scored again first
    assert output.read_text() == FULL


def test_the_same_routers_whole_file_is_kept(tmp_path, scored):
    output = tmp_path / "scores.jsonl"
    # Scores a little off, as another node or batch may give them: the same router's.
    output.write_text("".join(_record(p, len(p) + 1e-6) for p in PROMPTS))
    written = output.read_text()
    assert bulk.score_file_on_ray("length", PROMPTS, output) == 0
    assert output.read_text() == written


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("".join(_record(p, 0.25) for p in PROMPTS), 3),
        (_record(PROMPTS[0], 0.25) + _record(PROMPTS[1], 0.75)[:9], 1),
        (_record(PROMPTS[0], float(len(PROMPTS[0]))) + "\n" + _record(PROMPTS[1], 0.75), 2),
    ],
    ids=["whole", "cut", "its-second-score"],
)
def test_another_routers_scores_are_refused_and_left_as_they_were(tmp_path, scored, text, written):
    """A file of these prompts scored by another router: a whole one was taken as done, a cut one
    was finished with this router's scores, the two routers' mixed in one file."""
    output = tmp_path / "scores.jsonl"
    output.write_text(text)
    line = 3 if "\n\n" in text else 1
    with pytest.raises(DataError, match=f"line {line} holds the score .*another router's scores.*--output"):
        bulk.score_file_on_ray("length", PROMPTS, output)
    assert output.read_text() == text
    assert scored == PROMPTS[:written]  # the records written, scored again; no other


@pytest.mark.parametrize(
    "text",
    [
        _record("not ours", 1.0) + _record("nor this", 2.0)[:-1],  # saved without its last newline
        '{"prompt": "not ours"}',
        _record(PROMPTS[0], 12.0) + '{"prompt": "another"',
        FULL + '{"prompt": "one more"',
        # The same prompts without scores (the input as JSONL), and with scores of --models: they
        # were taken for records already written, and left as they were, no prompt scored.
        "".join(json.dumps({"prompt": p, "id": str(i)}) + "\n" for i, p in enumerate(PROMPTS)),
        "".join(json.dumps({"prompt": p, "scores": {"a": 0.5}}) + "\n" for p in PROMPTS),
        _record(PROMPTS[0], 1.0) + json.dumps({"prompt": PROMPTS[1], "score": None}) + "\n",
    ],
    ids=[
        "another-file",
        "one-line-of-another-file",
        "a-cut-line-of-another-prompt",
        "longer-than-input",
        "the-prompts-without-scores",
        "scores-of-models",
        "a-null-score",
    ],
)
def test_another_files_records_are_refused_and_left_as_they_were(tmp_path, scored, text):
    output = tmp_path / "scores.jsonl"
    output.write_text(text)
    with pytest.raises(DataError, match="is not the record of prompt"):
        bulk.score_file_on_ray("length", PROMPTS, output)
    assert output.read_text() == text
    assert scored == []


def test_an_output_in_a_new_folder_is_written_as_lmroute_score_writes_it(tmp_path, monkeypatch, scored):
    """lmroute score makes the folder of --output; --ray stopped with a FileNotFoundError traceback."""
    from lmroute.cli import main

    monkeypatch.setattr(bulk, "init_ray", lambda address: None)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    output = tmp_path / "new" / "folder" / "scores.jsonl"
    argv = ["score", "--router", "length", "--input", str(prompts), "--output", str(output), "--quiet"]
    assert main([*argv, "--ray"]) == 0
    assert output.read_text() == FULL


def test_a_failed_write_is_one_line_and_keeps_the_records_written(tmp_path, monkeypatch, scored):
    """A full disk raised an OSError traceback; now a WriteError naming the file, and the chunks
    written before it stay for the next run to go on from."""
    from lmroute.exceptions import WriteError

    monkeypatch.setattr(bulk, "init_ray", lambda address: None)
    output = tmp_path / "scores.jsonl"
    synced = []

    def fsync(fd):
        if synced:
            raise OSError(28, "No space left on device")
        synced.append(fd)

    monkeypatch.setattr(bulk.os, "fsync", fsync)
    with pytest.raises(WriteError, match=f"cannot write {output}: No space left on device"):
        bulk.score_file_on_ray("length", PROMPTS, output, chunk_size=1)
    assert output.read_text().startswith(FULL.splitlines(keepends=True)[0])


def test_an_output_that_cannot_be_read_is_one_line(tmp_path, scored):
    output = tmp_path / "scores.jsonl"
    output.mkdir()
    with pytest.raises(DataError, match=f"{output} is a folder"):
        bulk.score_file_on_ray("length", PROMPTS, output)
    assert scored == []
