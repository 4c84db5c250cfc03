"""Judge templates and verdict parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmroute.exceptions import ConfigError
from lmroute.labeling.judge import (
    combine_pairwise,
    load_template,
    parse_pairwise,
    parse_score,
    winner_from_scores,
)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Assistant A is more accurate.\n\n[[A]]", "A"),
        ("B explains better. Final verdict: [[B]]", "B"),
        ("They are equally good. [[C]]", "C"),
        ("Both fine [[ tie ]]", "C"),
        ("At first I thought [[A]] but on reflection [[B]]", "B"),  # the final verdict counts
        ("[[a]]", "A"),
        ("Assistant A is better.", None),
        ("[A]", None),
        ("[[D]]", None),
        ("", None),
        # The instructions echoed back list every option; the last of them is no verdict.
        (
            'Verdict: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, "[[C]]" if '
            "they are equally good.",
            None,
        ),
        ('"[[A]]" if A is better, "[[B]]" if B is better, and "[[C]]" for a tie.\nA is better.\n[[A]]', "A"),
        ("[[B]] If anything, A is too long.", "B"),  # a verdict followed by a sentence of its own
        ("Final verdict: [[B]] for assistant B.", "B"),
        ('"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.', None),
    ],
)
def test_parse_pairwise(text, verdict):
    assert parse_pairwise(text) == verdict


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Good answer.\nRating: [[8]]", 8.0),
        ("[[7.5]]", 7.5),
        ("[[9/10]]", 9.0),
        ("Rating: 6", 6.0),
        ("Rating: [4]", 4.0),
        ("[[11]]", None),
        ("[[0]]", None),
        ("excellent", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize(
    ("first", "second", "winner", "consistent"),
    [
        ("A", "B", "model_a", True),  # model_a preferred in both positions
        ("B", "A", "model_b", True),
        ("C", "C", "tie", True),
        ("A", "A", "tie", False),  # the judge prefers whatever comes first: position bias
        ("B", "B", "tie", False),
        ("A", "C", "tie", False),
        ("C", "A", "tie", False),
    ],
)
def test_combine_pairwise(first, second, winner, consistent):
    assert combine_pairwise(first, second) == (winner, consistent)


def test_winner_from_scores():
    assert winner_from_scores({"x": 8, "y": 3}, "x", "y") == "model_a"
    assert winner_from_scores({"x": 2, "y": 3}, "x", "y") == "model_b"
    assert winner_from_scores({"x": 5, "y": 5}, "x", "y") == "tie"


@pytest.mark.parametrize("mode", ["pairwise", "score"])
def test_packaged_templates_load_and_render(mode):
    template = load_template(mode)
    assert template.source == f"builtin:{mode}"
    fields = {"question": "What is {x}?", "answer": "ANS {answer_a}", "answer_a": "AAA", "answer_b": "BBB"}
    messages = template.render(**fields)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    # Braces inside the question or an answer stay as they are: one substitution pass.
    assert "What is {x}?" in user
    if mode == "pairwise":
        assert "AAA" in user and "BBB" in user and "[[A]]" in messages[0]["content"]
    else:
        assert "ANS {answer_a}" in user and "[[5]]" in messages[0]["content"]


def test_custom_template(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("user: |-\n  Q: {question}\n  1: {answer_a}\n  2: {answer_b}\n  Say [[A]] or [[B]].\n")
    template = load_template("pairwise", path)
    messages = template.render(question="q", answer_a="a", answer_b="b")
    assert messages == [{"role": "user", "content": "Q: q\n1: a\n2: b\nSay [[A]] or [[B]]."}]
    assert template.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user: 'Q: {question} A: {answer_a}'", "lacks {answer_b}"),
        ("system: hi", "needs a 'user' message"),
        ("user: '{question} {answer_a} {answer_b}'\nassistant: x", "unknown keys"),
        ("user: [unclosed", "not valid YAML"),
    ],
)
def test_bad_templates(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_template("pairwise", path)


def test_unknown_mode_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown judge mode"):
        load_template("elo")
    with pytest.raises(ConfigError, match="cannot read"):
        load_template("score", tmp_path / "absent.yaml")


def test_a_judge_output_that_runs_on_in_spaces_is_read_at_once():
    """A judge's "rating" followed by a long run of spaces (a small model's runaway output): the
    fallback pattern had three quantifiers in a row that could each take the spaces and tried every
    split before giving up, a time cubic in the run (hours for this output, the whole run waiting).
    In a child process, so that the old pattern fails the test by its timeout rather than hang."""
    code = (
        "from lmroute.labeling.judge import parse_score\n"
        "assert parse_score('My rating' + ' ' * 20_000 + 'is missing') is None\n"
        "assert parse_score('Rating:' + '\\n' * 100_000 + '7') == 7.0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
