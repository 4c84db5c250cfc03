"""Prompt files: JSONL with a ``prompt`` field or text one prompt a line, and JSONL written back."""

from __future__ import annotations

import json

import pytest
from _line_breaks import TEXT

from lmroute.cli import main
from lmroute.data.prompts import read_prompts
from lmroute.exceptions import DataError
from lmroute.labeling.items import LabelItem, read_items


def test_jsonl_and_text_prompts(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a"}\n\n{"prompt": "b", "id": 2}\r\n', encoding="utf-8")
    assert read_prompts(jsonl) == ["a", "b"]
    text = tmp_path / "p.txt"
    text.write_bytes(b"\xef\xbb\xbffirst prompt\n  second  \r\nthird\n\n")
    assert read_prompts(text) == ["first prompt", "  second  ", "third"]
    text.write_bytes(b"first prompt\n\n  second  \r\nthird")  # prompt N must be line N
    with pytest.raises(DataError, match=r"p\.txt:2: blank line"):
        read_prompts(text)
    braced = tmp_path / "braced.txt"  # a text file whose first line opens a brace is JSONL
    braced.write_text('{"question": "x"}\n')
    assert read_prompts(braced, field="question") == ["x"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty: no prompts"),
        ("\n  \n", "is empty: no prompts"),
        ('{"prompt": "a"}\n{"prompt": \n', r"p\.jsonl:2: not valid JSON"),
        ('{"prompt": "a"}\n["a"]\n', r"p\.jsonl:2: expected an object with a string 'prompt' field"),
        ('{"text": "a"}\n', r"p\.jsonl:1: expected an object with a string 'prompt' field"),
    ],
)
def test_bad_prompt_files(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_prompts(path)


def test_unreadable_prompt_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl does not exist"):
        read_prompts(tmp_path / "nope.jsonl")
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match=r"b\.jsonl is not UTF-8"):
        read_prompts(binary)


def test_reads_the_jsonl_that_lmroute_score_writes(tmp_path, capsys):
    """Prompts holding U+2028 and the other characters ``str.splitlines`` breaks at survive a
    round trip through ``lmroute score --output`` (issue 13: they used to be refused)."""
    prompts = [TEXT, "plain", "ends with a separator\u2028"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    scored = tmp_path / "scored.jsonl"
    assert (
        main(["score", "--router", "length", "--input", str(source), "--output", str(scored), "--quiet"]) == 0
    )
    assert read_prompts(scored) == prompts


def test_text_lines_end_only_at_newlines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text(f"{TEXT}\nsecond\n", encoding="utf-8")
    assert read_prompts(path) == [TEXT, "second"]


def test_a_csv_file_gives_its_prompt_column(tmp_path, capsys):
    """A benchmark CSV (a prompt column and a score column per model) passed as prompts: its
    header and other columns were scored as prompts, its quoted line breaks split prompts apart."""
    path = tmp_path / "bench.csv"
    path.write_text('prompt,gpt-4,mixtral\n"two\nlines, a comma",1,0\nplain,0,1\n', encoding="utf-8")
    assert read_prompts(path) == ["two\nlines, a comma", "plain"]
    assert main(["score", "--router", "length", "--input", str(path), "--quiet"]) == 0
    assert [json.loads(line)["prompt"] for line in capsys.readouterr().out.splitlines()] == [
        "two\nlines, a comma",
        "plain",
    ]
    path.write_text("question,answer\nwhat?,yes\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bench\.csv: missing column\(s\) prompt; found question, answer"):
        read_prompts(path)


def test_label_reads_a_csv_prompt_file_by_its_columns(tmp_path):
    """Read as text, a CSV's header became a prompt and each row one with its other cells glued on."""
    path = tmp_path / "QUESTIONS.CSV"
    path.write_text('question,answer,id\n"What is 2+2?\nThink.",4,q1\n"Name, a colour",,\n')
    items = read_items(path)
    assert items == [LabelItem("q1", "What is 2+2?\nThink.", "4"), LabelItem("1", "Name, a colour", None)]
    path.write_text("text,answer\nhello,1\n")
    with pytest.raises(
        DataError, match=r"QUESTIONS\.CSV:2: expected a non-empty string field 'prompt' \(or 'question'\)"
    ):
        read_items(path)


def test_a_json_object_over_several_lines_is_told_apart_from_json_lines(tmp_path):
    # json.dump(..., indent=2) of one record was called "not valid JSON (Expecting property name
    # enclosed in double quotes)" at line 1: the file is valid JSON, of another layout.
    path = tmp_path / "prompts.json"
    path.write_text('{\n  "prompt": "a"\n}\n')
    with pytest.raises(DataError, match=r"prompts\.json:1: a lone '\{': .* one JSON object per line"):
        read_prompts(path)


@pytest.mark.parametrize("content", ['[\n  {"prompt": "a"},\n  {"prompt": "b"}\n]\n', '[{"prompt": "a"}]\n'])
def test_a_json_array_is_told_apart_from_json_lines(tmp_path, content):
    # A prompts.json holding one JSON array was called "not valid JSON (Expecting value)".
    path = tmp_path / "prompts.json"
    path.write_text(content)
    with pytest.raises(DataError, match=r"prompts\.json holds a JSON array; prompts are read as JSON Lines"):
        read_prompts(path)
