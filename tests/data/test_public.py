"""The one rule for public data (issue 20): --data-dir, LMROUTE_DATA_DIR, the cache, then a
download of the needed files only; ``lmroute data pull`` and an offline run from what it pulled."""

import hashlib
import json

import pytest

from lmroute.cli import main
from lmroute.data.benchmarks import load_benchmark
from lmroute.data.public import PARTS, download_variables, locate, parts_named
from lmroute.exceptions import ConfigError, DataError, WriteError


def test_the_rule_in_order(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "cache"))
    other = tmp_path / "other"
    (other / "routellm-evals").mkdir(parents=True)
    # 1. --data-dir first, even when LMROUTE_DATA_DIR is set.
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    with pytest.raises(DataError, match="incomplete"):
        locate("mt-bench", data_dir=other)  # a folder with routellm-evals/ is used as it is
    # 2. A data folder without the part's folder is passed over: LMROUTE_DATA_DIR is next.
    assert locate("mt-bench", data_dir=tmp_path) == data_dir / "routellm-evals"
    # 3. Then the user cache, 4. then a download (unreachable in the tests: one line saying what to pass).
    monkeypatch.delenv("LMROUTE_DATA_DIR")
    cached = tmp_path / "cache" / "routellm-evals" / "mt_bench"
    cached.mkdir(parents=True)
    for name in PARTS["mt-bench"].files:
        (tmp_path / "cache" / "routellm-evals" / name).write_bytes(
            (data_dir / "routellm-evals" / name).read_bytes()
        )
    assert locate("mt-bench", data_dir=tmp_path) == tmp_path / "cache" / "routellm-evals"
    with pytest.raises(Exception, match=r"could not download .*Pass --data-dir DIR or set LMROUTE_DATA_DIR"):
        locate("gsm8k")


def test_a_data_folder_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"nope \(--data-dir\) does not exist"):
        locate("gsm8k", data_dir=tmp_path / "nope")
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"gone \(LMROUTE_DATA_DIR\) does not exist"):
        locate("gsm8k")


def test_python_api_reads_lmroute_data_dir(data_dir, tmp_path, monkeypatch):
    """Issue 21 item 4: load_benchmark without data_dir honours LMROUTE_DATA_DIR (no download)."""
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    assert len(load_benchmark("mt-bench")) == 72
    assert not (tmp_path / "cache").exists()


def test_parts_and_variables():
    assert [p.name for p in parts_named(["routellm-evals"])] == ["mmlu", "gsm8k", "mt-bench"]
    assert len(PARTS["mmlu"].files) == 58
    assert download_variables() == ["LMROUTE_DATA_URL", "LMROUTE_PROMPTS_URL"]
    # routellm-evals, which --only takes, was not listed
    with pytest.raises(ConfigError, match=r"known: mmlu, gsm8k, mt-bench, arena-hard, routellm-evals$"):
        parts_named(["nope"])


def test_pull_help_names_every_part(capsys):
    with pytest.raises(SystemExit):
        main(["data", "pull", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in PARTS)


def test_data_pull_then_the_main_job_offline(public_data, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "carried"
    assert main(["data", "pull", "--to", str(folder)]) == 0
    assert "--data-dir" in capsys.readouterr().err
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    files = manifest["files"]
    assert len(files) == sum(len(p.files) for p in PARTS.values()) == 64  # 63 of RouteLLM, 1 Arena-Hard
    assert set(manifest["parts"]) == set(PARTS)
    assert all(p["licence"] and p["source"] for p in manifest["parts"].values())
    for entry in files:
        data = (folder / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        assert entry["url"].startswith("http://127.0.0.1:")
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert sorted(sums) == sorted(f"{e['sha256']}  {e['path']}" for e in files)
    # A second pull fetches nothing; a damaged file is fetched again.
    requested = len(public_data.requested)
    assert main(["data", "pull", "--to", str(folder), "--only", "mt-bench"]) == 0
    assert len(public_data.requested) == requested
    (folder / "routellm-evals/mt_bench/question.jsonl").write_text("damaged\n")
    assert main(["data", "pull", "--to", str(folder), "--only", "mt-bench"]) == 0
    assert public_data.requested[requested:] == ["/routellm-evals/mt_bench/question.jsonl"]
    capsys.readouterr()

    # Offline: every source unreachable, a fresh cache; the main job (scripts/main.sh) from the folder.
    for name in download_variables():
        monkeypatch.setenv(name, "http://127.0.0.1:9/unreachable")
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "offline-cache"))
    job = ["eval", "--benchmark", "mt-bench", "--routers", "random", "length", "mf", "--quiet"]
    assert main([*job, "--data-dir", str(folder), "--json", str(tmp_path / "mt-bench.json")]) == 0
    table = capsys.readouterr().out
    assert "mt-bench: 72 prompts" in table and "mf" in table
    assert main(["calibrate", "--router", "length", "--strong-pct", "0.3", "--data-dir", str(folder)]) == 0
    assert "on 500 prompts" in capsys.readouterr().out
    assert not (tmp_path / "offline-cache" / "routellm-evals").exists()


def test_a_cache_that_cannot_be_written_says_how_to_move_it(public_data, tmp_path, monkeypatch):
    """The error named the file it could not write, not why lmroute writes there or how to
    write elsewhere (a read-only home in a container)."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be\n")
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(blocked))
    says = r"cannot write .*blocked.*the user cache.*set LMROUTE_CACHE_DIR.*or pass --data-dir DIR"
    with pytest.raises(WriteError, match=says) as raised:
        locate("mt-bench")
    assert "\n" not in str(raised.value)


def test_one_file_to_download_is_one_file(public_data, tmp_path, capsys):
    assert main(["data", "pull", "--only", "arena-hard", "--to", str(tmp_path / "pulled")]) == 0
    err = capsys.readouterr().err
    assert "downloading 1 file into" in err and "arena-hard (1 file, 1 downloaded now)" in err
    locate("arena-hard")
    assert "(1 file) into" in capsys.readouterr().err


def test_a_damaged_file_in_the_cache_says_deleting_it_downloads_it_again(public_data, tmp_path):
    """A web page an older lmroute kept in the cache was named in every run's error, with no word
    of how to get the file again."""
    cached = locate("gsm8k") / "gsm8k" / "gsm8k_responses.csv"
    cached.write_text("<html>a proxy's login page</html>\n")
    says = r"gsm8k_responses.csv: .*delete it and the next run downloads it again"
    with pytest.raises(DataError, match=says):
        load_benchmark("gsm8k")
    cached.unlink()
    assert len(load_benchmark("gsm8k")) > 1000


def test_the_pull_an_incomplete_copy_of_routellm_evals_names_fills_it(public_data, data_dir, tmp_path):
    """A data folder that is routellm-evals/ itself, with a file missing: the error said to pull
    into that folder, which put a routellm-evals/ inside it; from then on every part the copy held
    (here GSM8K) was "incomplete" and the missing file still missing."""
    import re
    import shutil

    from lmroute.data.pull import pull

    copy = tmp_path / "mine" / "routellm-evals"
    for sub in ("gsm8k", "mt_bench"):
        shutil.copytree(data_dir / "routellm-evals" / sub, copy / sub)
    (copy / "mt_bench" / "judgements.jsonl").unlink()
    with pytest.raises(DataError, match="incomplete") as raised:
        locate("mt-bench", data_dir=copy)
    to = re.search(r"`lmroute data pull --only mt-bench --to (\S+)`", str(raised.value))
    assert to is not None
    pull(to[1], only=["mt-bench"])
    assert locate("mt-bench", data_dir=copy) == locate("gsm8k", data_dir=copy) == copy
    # A copy under another name cannot be pulled into: the error says to copy the files in.
    copy.rename(tmp_path / "mine" / "evals")
    (tmp_path / "mine" / "evals" / "mt_bench" / "judgements.jsonl").unlink()
    with pytest.raises(DataError, match=r"evals holds routellm-evals/'s files itself: copy them into it"):
        locate("mt-bench", data_dir=tmp_path / "mine" / "evals")
