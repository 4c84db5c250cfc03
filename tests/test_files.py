"""Atomic writes: all or nothing, with the permissions any new file gets."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute._files import atomic_writer, write_atomic, write_failures, write_json
from lmroute.data.battles import Battle
from lmroute.exceptions import WriteError
from lmroute.routers.sw_ranking import SWRankingRouter


def test_written_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "weights.safetensors", b"abc")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others must read a checkpoint


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "a.json", b"old")
    with pytest.raises(RuntimeError), atomic_writer(path) as f:
        f.write(b"half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_path_that_cannot_be_written_is_a_write_error_naming_it(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("kept")
    with pytest.raises(WriteError, match=r"cannot write .*folder: it is a folder"):
        write_atomic(tmp_path / "folder", b"x")
    with pytest.raises(WriteError, match=r"cannot write .*file/a\.json: a file is in the way of folder"):
        write_json(tmp_path / "file" / "a.json", {})
    wanted = r"cannot write .*file: it is a file, and a folder is wanted there"
    with pytest.raises(WriteError, match=wanted), write_failures(tmp_path / "file"):
        (tmp_path / "file").mkdir()
    with pytest.raises(OSError):  # what code that goes on without a cache file catches
        write_atomic(tmp_path / "folder", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"] and not any(
        (tmp_path / "folder").iterdir()
    )
    assert (tmp_path / "file").read_text() == "kept"


def test_a_saved_router_is_readable_by_others(tmp_path):
    battles = [Battle(f"p{i}", "a", "b", "model_a" if i % 2 else "model_b") for i in range(20)]
    router = SWRankingRouter(embedder=HashEmbedder(8), strong_model="a", weak_model="b", num_tiers=2)
    old = os.umask(0o022)
    try:
        folder = router.fit(battles).save(tmp_path / "sw")
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {
        "config.json": 0o644,
        "weights.safetensors": 0o644,
    }


def test_write_json_is_indented_with_a_final_newline(tmp_path):
    path = write_json(tmp_path / "new" / "report.json", {"a": [1, 2], "é": None})
    assert path.read_text("utf-8") == '{\n  "a": [\n    1,\n    2\n  ],\n  "\\u00e9": null\n}\n'


def _strict(text: str) -> object:
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are not numbers of JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_nan_and_infinity_as_null(tmp_path):
    data = {"a": float("nan"), "b": [float("inf"), -float("inf"), 0.5], "c": (np.float64("nan"), 1)}
    path = write_json(tmp_path / "report.json", data)
    assert _strict(path.read_text("utf-8")) == {"a": None, "b": [None, None, 0.5], "c": [None, 1]}


def test_a_symbolic_link_is_written_where_it_points(tmp_path):
    # The link was replaced by a new file: the file it points to kept the old content.
    target = tmp_path / "shared" / "scores.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "scores.jsonl"
    link.symlink_to(target)
    write_atomic(link, b"new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.jsonl", "shared"]
    assert [p.name for p in target.parent.iterdir()] == ["scores.jsonl"]


def test_a_pipe_is_written_into_not_replaced(tmp_path):
    # A named pipe (as /dev/null or /dev/stdout are devices) was replaced by a regular file: its
    # reader waited for ever, and as root --output /dev/null replaced the system's /dev/null.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "aside").mkdir()
    os.link(fifo, tmp_path / "aside" / "fifo")  # the pipe still, should the path lose it
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    try:
        write_atomic(fifo, b"abc")
    finally:
        # Should the pipe never have been written into, its reader still waits: an open for writing
        # lets it go. Without O_NONBLOCK that open waited for ever when the reader had just closed
        # its end but not yet ended (is_alive() was true): a full run hung here once.
        with contextlib.suppress(OSError):  # ENXIO: no reader left to let go
            os.close(os.open(tmp_path / "aside" / "fifo", os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert received == [b"abc"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aside", "fifo"]


def test_score_output_through_a_symbolic_link(tmp_path, capsys):
    from lmroute.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\n")
    target = tmp_path / "kept.jsonl"
    target.write_text("old\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    argv = ["score", "--router", "length", "--input", str(prompts), "--output", str(link), "--quiet"]
    assert main(argv) == 0
    assert link.is_symlink()
    assert [json.loads(line)["prompt"] for line in target.read_text().splitlines()] == ["one", "two"]


def test_a_file_written_over_keeps_its_permissions(tmp_path):
    # A file made private (0600: scores of one's own prompts) became 0644, readable by every user,
    # when written over: the new file got the umask's permissions, not the old file's.
    path = tmp_path / "scores.jsonl"
    path.write_text("old\n")
    path.chmod(0o600)
    old = os.umask(0o022)
    try:
        write_atomic(path, b"new\n")
    finally:
        os.umask(old)
    assert path.read_text() == "new\n" and path.stat().st_mode & 0o777 == 0o600


def test_a_control_state_reaches_the_disk_before_its_rename(tmp_path, monkeypatch):
    """Renamed without an fsync, a state saved just before a power loss could be on disk as an
    empty or torn file (the rename there, its contents not yet): the next start lost the state."""
    from lmroute.control.state import read_state, write_state

    events: list[tuple[str, int]] = []  # (what, inode)
    fsync, replace = os.fsync, os.replace

    def synced(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        fsync(fd)

    def renamed(src, dst) -> None:
        events.append(("replace", os.stat(src).st_ino))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", renamed)
    path = tmp_path / "state.json"
    write_state(path, {"controllers": []})
    new, folder = path.stat().st_ino, tmp_path.stat().st_ino
    # the new file's contents, then its rename, then the folder that holds the rename
    assert events == [("fsync", new), ("replace", new), ("fsync", folder)]
    assert read_state(path)[0]["controllers"] == []


def test_a_full_disk_is_a_write_error_naming_the_file(tmp_path, monkeypatch):
    """On a full disk the WriteError of the last bytes' flush gave way to the OSError of close()
    flushing them again, and a write larger than the buffer failed in write() itself: a traceback
    (``lmroute data pull``, a download into the cache, ``lmroute data --out``)."""
    from lmroute import _files
    from lmroute._jsonl import write_jsonl

    path = write_atomic(tmp_path / "a.csv", b"old")
    for size in (10, 1 << 20):  # within the buffer, and past it
        with pytest.raises(WriteError, match="cannot write /dev/full: No space left on device"):
            write_atomic("/dev/full", b"x" * size)
    real_open = open

    def full_disk(file, mode="r", **options):  # every file written fills a full disk
        return real_open("/dev/full", mode.replace("x", "w"), **options)

    monkeypatch.setattr(_files, "open", full_disk, raising=False)
    for size in (10, 1 << 20):
        with pytest.raises(WriteError, match=r"cannot write .*a\.csv: No space left on device"):
            write_atomic(path, b"x" * size)
        with pytest.raises(WriteError, match=r"cannot write .*a\.csv: No space left on device"):
            write_jsonl(path, [{"prompt": "x" * size}])
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]
