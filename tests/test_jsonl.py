"""The package's one JSONL reader and writer: lines end at newlines only, errors name file and line."""

from __future__ import annotations

import os

import pytest
from _line_breaks import TEXT

from lmroute._jsonl import append_line, encode_line, read_jsonl, read_jsonl_objects, read_lines, write_jsonl
from lmroute.exceptions import DataError


def test_written_records_read_back_whole(tmp_path):
    records = [{"text": TEXT}, [TEXT, 1], TEXT, {"nested": {"a": [None, True, 1.5]}}]
    path = write_jsonl(tmp_path / "sub" / "r.jsonl", records)
    assert path.read_text("utf-8").count("\n") == len(records)  # one line each
    assert list(read_jsonl(path, what="records")) == list(enumerate(records, start=1))
    assert encode_line({"p": "\u2028é"}) == '{"p": "\u2028é"}\n'  # non-ASCII written as it is


def test_a_record_holding_an_unpaired_surrogate_is_written_escaped(tmp_path):
    # read from a JSON "\ud83d" escape (half an emoji), such a text is no UTF-8: writing it failed
    # with a UnicodeEncodeError (`lmroute score` echoing such a prompt ended in a traceback)
    records = [{"prompt": "cut \ud83d é"}, {"prompt": "é"}]
    path = write_jsonl(tmp_path / "r.jsonl", records)
    assert path.read_text("utf-8") == '{"prompt": "cut \\ud83d \\u00e9"}\n{"prompt": "é"}\n'
    assert [record for _, record in read_jsonl(path, what="records")] == records
    fd = os.open(tmp_path / "a.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        append_line(fd, records[0])
    finally:
        os.close(fd)
    assert [record for _, record in read_jsonl(tmp_path / "a.jsonl", what="records")] == records[:1]


def test_line_numbers_count_blank_lines_and_every_line_ending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n  \n{"a": 2}\r{"a": 3}')
    assert list(read_jsonl(path, what="records")) == [(1, {"a": 1}), (4, {"a": 2}), (5, {"a": 3})]
    assert list(read_lines(path, what="records")) == [(1, '{"a": 1}'), (4, '{"a": 2}'), (5, '{"a": 3}')]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"r\.jsonl is empty: no records"),
        (b"\n \r\n", r"r\.jsonl is empty: no records"),
        (b'{"a": 1}\n{"a": \n', r"r\.jsonl:2: not valid JSON \(Expecting value\)"),
        (b'{"a": 1}\n\n[1]\n', r"r\.jsonl:3: expected a JSON object"),
        (b'{"a": 1}\n\xff\xfe\n', r"r\.jsonl is not UTF-8 text \(line 2, byte 9\)"),
        # deeper than the parser's recursion limit: a RecursionError, not a JSONDecodeError
        (b'{"a": 1}\n' + b"[" * 100_000 + b"\n", r"r\.jsonl:2: not valid JSON \(nested too deeply\)"),
        # past Python's limit on integer digits: a ValueError (not a JSONDecodeError), a traceback
        (b'{"a": 1}\n{"a": 1' + b"0" * 5000 + b"}\n", r"r\.jsonl:2: not valid JSON \(a number of over"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        list(read_jsonl_objects(path, what="records"))


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl does not exist"):
        list(read_jsonl(tmp_path / "nope.jsonl", what="records"))
    with pytest.raises(DataError, match="is a folder, not a file"):
        list(read_jsonl(tmp_path, what="records"))


def test_append_line_adds_one_whole_line(tmp_path):
    path = tmp_path / "store.jsonl"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        append_line(fd, {"text": TEXT})
        append_line(fd, {"text": "second"})
    finally:
        os.close(fd)
    assert [r for _, r in read_jsonl(path, what="records")] == [{"text": TEXT}, {"text": "second"}]
