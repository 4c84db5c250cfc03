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
    """The prompts score_file_on_ray sends to Ray, each scored by its length."""
    sent: list[str] = []

    def score_on_ray(spec, prompts, **options):
        sent.extend(prompts)
        return np.array([float(len(p)) for p in prompts])

    monkeypatch.setattr(bulk, "score_on_ray", score_on_ray)
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
    assert scored == PROMPTS[done:]
    assert output.read_text() == FULL


@pytest.mark.parametrize(
    "text",
    [
        _record("not ours", 1.0) + _record("nor this", 2.0)[:-1],  # saved without its last newline
        '{"prompt": "not ours"}',
        _record(PROMPTS[0], 12.0) + '{"prompt": "another"',
        FULL + '{"prompt": "one more"',
    ],
    ids=["another-file", "one-line-of-another-file", "a-cut-line-of-another-prompt", "longer-than-input"],
)
def test_another_files_records_are_refused_and_left_as_they_were(tmp_path, scored, text):
    output = tmp_path / "scores.jsonl"
    output.write_text(text)
    with pytest.raises(DataError, match="is not the record of prompt"):
        bulk.score_file_on_ray("length", PROMPTS, output)
    assert output.read_text() == text
    assert scored == []
