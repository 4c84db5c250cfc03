"""Router.save over a saved router: the old router stays whole until the new one is complete."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.data.battles import Battle
from lmroute.exceptions import WriteError
from lmroute.registry import load_router
from lmroute.routers.sw_ranking import SWRankingRouter

PROMPTS = ["prove the integral", "hello there", "write a poem"]


def _router(winner: str) -> SWRankingRouter:
    battles = [
        Battle(f"{topic} {i}", a, b, winner)
        for i in range(12)
        for topic, (a, b) in (("prove integral", ("big", "small")), ("hello joke", ("small", "mid")))
    ]
    return SWRankingRouter(
        embedder=HashEmbedder(32), strong_model="big", weak_model="small", num_tiers=3
    ).fit(battles)


def _scores(folder: Path) -> np.ndarray:
    router = load_router(folder)
    router.use_embedder(HashEmbedder(32))
    return router.score(PROMPTS)


def _fail_at_config(replace, src, dst):
    """os.replace on a full disk when config.json is written."""
    if Path(dst).name == "config.json":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    replace(src, dst)


def test_a_save_that_fails_half_way_leaves_the_old_router_loadable(tmp_path, monkeypatch):
    """The weights were replaced before config.json was written: a failure between the two (a full
    disk, a kill) left the new weights under the old config, a folder that no longer loaded."""
    folder = tmp_path / "router"
    _router("model_a").save(folder)
    before = _scores(folder)
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: _fail_at_config(replace, src, dst))
    with pytest.raises(WriteError, match=f"^cannot write {folder}/config.json: No space left"):
        _router("model_b").save(folder)
    monkeypatch.undo()
    np.testing.assert_array_equal(_scores(folder), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]  # nothing half-written left beside


def test_a_save_over_a_router_replaces_it_and_keeps_other_files(tmp_path):
    folder = tmp_path / "router"
    _router("model_a").save(folder)
    (folder / "notes.txt").write_text("why this router\n")
    new = _router("model_b")
    assert new.save(folder) == folder
    np.testing.assert_array_equal(_scores(folder), new.score(PROMPTS))
    assert (folder / "notes.txt").read_text() == "why this router\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]


def test_a_save_over_the_working_directory_leaves_it_in_place(tmp_path, monkeypatch):
    """Replaced, the folder the command (and the shell that started it) runs in would be a deleted one:
    `lmroute train ... --out .` in a router's folder left the shell in an empty folder."""
    folder = tmp_path / "router"
    _router("model_a").save(folder)
    monkeypatch.chdir(folder)
    new = _router("model_b")
    replace = os.replace
    with monkeypatch.context() as patch:  # written in place, a failure is still an error
        patch.setattr(os, "replace", lambda src, dst: _fail_at_config(replace, src, dst))
        with pytest.raises(WriteError):
            new.save(".")
    new.save(".")
    assert os.path.samefile(Path.cwd(), folder) and (Path.cwd() / "config.json").is_file()
    np.testing.assert_array_equal(_scores(folder), new.score(PROMPTS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]


@pytest.mark.parametrize("where", ["mount point", "parent not writable"])
def test_a_folder_that_cannot_be_replaced_is_written_in_place(tmp_path, monkeypatch, where):
    """A router folder that is a mount point (a container's volume) cannot be renamed, and one in a
    parent folder the process may not write to has nowhere beside it for the new folder: saving over
    either failed ('Device or resource busy', 'Permission denied') where it used to write in place."""
    folder = tmp_path / "router"
    _router("model_a").save(folder)
    inode = folder.stat().st_ino
    real = os.path.realpath(folder)
    if where == "mount point":
        ismount = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == real or ismount(p))
    else:
        access = os.access
        parent = os.path.realpath(tmp_path)
        monkeypatch.setattr(os, "access", lambda p, mode: os.fspath(p) != parent and access(p, mode))
    new = _router("model_b")
    assert new.save(folder) == folder
    monkeypatch.undo()
    assert folder.stat().st_ino == inode  # the same folder, written in place
    np.testing.assert_array_equal(_scores(folder), new.score(PROMPTS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]
