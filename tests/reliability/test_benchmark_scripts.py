"""The benchmark scripts (``benchmarks/``) at their smallest sizes: a baseline's timed loop holds only
the baseline's work, and bad input ends in a clear message, not a traceback.

Each runs the script in its own process, as the README's command does; none takes more than seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import chromium_path
from llama_servers import missing_requirements

pytestmark = pytest.mark.reliability

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# Runs a script with the import of scikit-learn's linear models slowed by 10 s (a cold start on a busy
# machine takes 2-4 s), far beyond a refit's time even on a loaded machine, so the test does not hang
# on the machine's speed.
SLOW_SKLEARN = """
import importlib.abc, os, runpy, sys, time

class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "sklearn.linear_model":
            time.sleep(10)
        return None

sys.meta_path.insert(0, Slow())
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python SCRIPT` does: its folder's modules
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sw_ranking_reference_rate_leaves_out_the_scikit_learn_import():
    pytest.importorskip("sklearn")
    argv = [sys.executable, "-c", SLOW_SKLEARN, str(BENCHMARKS / "bench_sw_ranking.py")]
    argv += ["--battles", "200", "--queries", "10", "--baseline-queries", "1"]
    # one BLAS thread: at load average 12, two threads fighting for two busy cores made a refit 0.4 s
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    found = re.search(r"reference refit per prompt:\s+([\d.]+) prompts/s", run.stdout)
    assert found, run.stdout
    # one refit over 200 battles takes milliseconds; the import's 10 s would make it < 0.1/s
    assert float(found[1]) > 0.3, run.stdout
    assert re.search(r"ratio: \d+x", run.stdout), run.stdout


def test_load_test_names_why_the_server_did_not_start(tmp_path):
    argv = [sys.executable, str(BENCHMARKS / "load_test.py"), "--router", "no-such-router"]
    argv += ["--requests", "2", "--window", "1", "--warmup", "1", "--seconds", "10"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    message = run.stderr.strip().splitlines()
    assert len(message) == 1, run.stderr
    assert "unknown router 'no-such-router'" in message[0], run.stderr
    log = re.search(r"\(its log: (.+)\)$", message[0])
    assert log and Path(log[1]).is_file(), run.stderr  # the log it names is kept


@pytest.mark.parametrize("folder", ["missing", "not-a-source-tree"])
def test_bench_server_refuses_a_baseline_src_without_lmroute(folder, tmp_path):
    # A PYTHONPATH without lmroute in it would start the installed lmroute as the "baseline".
    (tmp_path / "not-a-source-tree").mkdir()
    argv = [sys.executable, str(BENCHMARKS / "bench_server.py"), "--baseline-src", str(tmp_path / folder)]
    argv += ["--concurrency", "1", "--requests", "5", "--seconds", "1", "--rounds", "1", "--no-mf"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "--baseline-src" in run.stderr.strip().splitlines()[-1], run.stderr
    assert "load average before" not in run.stdout, run.stdout


def test_bench_servers_load_counts_the_warm_up_requests_it_made(monkeypatch):
    """The CPU per request divided by 5 warm-up requests a user, made fewer with --requests below 5."""
    import asyncio
    import importlib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_server = importlib.import_module("bench_server")
    served = []

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            served.append(self.path)
            body = b'{"choices": []}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Answer) as server:
        Thread(target=server.serve_forever, daemon=True).start()
        try:
            requests = [bench_server.chat_request("m")] * 2  # --requests 2: 2 warm-up requests a user
            result = asyncio.run(bench_server.load(server.server_port, requests, concurrency=2, seconds=5))
        finally:
            server.shutdown()
    assert (result["n"], result["warm"], result["failures"]) == (2, 4, 0)
    assert len(served) == result["n"] + result["warm"]


@pytest.mark.parametrize(
    "script", ["bench_embeddings.py", "bench_classifiers.py --router bert", "bench_minilm_int8.py --no-apgr"]
)
def test_a_benchmark_without_its_data_says_so_in_one_line(script, tmp_path):
    name, *options = script.split()
    env = {**os.environ, "LMROUTE_DATA_DIR": str(tmp_path / "no-data")}
    argv = [sys.executable, str(BENCHMARKS / name), *options, "--prompts", "2"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    message = run.stderr.strip().splitlines()
    assert len(message) == 1 and "LMROUTE_DATA_DIR" in message[0], run.stderr


@pytest.mark.parametrize("options", ["[1]", "null", "{x"])
def test_bench_classifiers_router_options_must_be_a_json_object(options):
    argv = [sys.executable, str(BENCHMARKS / "bench_classifiers.py"), "--router", "bert"]
    argv += ["--prompts", "2", "--train", "4", "--bert-options", options]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "argument --bert-options:" in run.stderr.strip().splitlines()[-1], run.stderr


def test_bench_classifiers_refuses_a_misspelt_router_option_before_training():
    argv = [sys.executable, str(BENCHMARKS / "bench_classifiers.py"), "--router", "both"]
    argv += ["--prompts", "2", "--llm-prompts", "2", "--train", "4", "--llm-options", '{"num_layer": 8}']
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "num_layer" in run.stderr.strip().splitlines()[-1], run.stderr
    assert "trained" not in run.stdout, run.stdout


# The quick benchmarks at their smallest sizes, each to the line with its ratio against the baseline
# it measures in the same run: a change of the API they call breaks them here, not in a release.
SMOKE = {
    "bench_control.py --requests 200 --repeats 1": r"spend target +[\d.]+ us/request  x +[\d.]+",
    "bench_n_models.py --prompts 4 --models 3 --batch 2 --repeats 1": (
        r"3-model rate / two-model rate incl\. embedding: [\d.]+"
    ),
    "bench_server.py --concurrency 1 --requests 5 --seconds 1 --rounds 1 --no-mf --load python": (
        r"2 workers: added p50 -?[\d.]+ ms, req/s x[\d.]+"
    ),
}


@pytest.mark.parametrize("command", list(SMOKE))
def test_a_quick_benchmark_runs_to_its_ratio(command):
    name, *options = command.split()
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *options], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(SMOKE[command], run.stdout), run.stdout


def test_bench_mf_ratio_with_embedding_is_taken_on_the_reference_prompts(data_dir):
    # AlpacaEval's first 100 prompts (the reference's) have a median of 51 characters, all 400 of 78
    argv = [sys.executable, str(BENCHMARKS / "bench_mf.py"), "--prompts", "8", "--baseline-prompts", "2"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    rates = dict(re.findall(r"^(\S.*?) +([\d.]+) prompts/s$", run.stdout, re.MULTILINE))
    ratio = re.search(r"ratio incl\. embedding \(the same 2 prompts\): ([\d.]+)x", run.stdout)
    assert ratio, run.stdout
    same = float(rates["mf score incl. embedding, first 2"]) / float(
        rates["reference per prompt incl. embedding"]
    )
    assert float(ratio[1]) == pytest.approx(same, abs=0.06), run.stdout


@pytest.mark.parametrize(
    ("script", "option"),
    [
        ("bench_console.py", "--loads"),  # was statistics' "no median for empty data"
        ("bench_control.py", "--requests"),  # was a ZeroDivisionError
        ("bench_embeddings.py", "--prompts"),  # was a ZeroDivisionError
        ("bench_n_models.py", "--repeats"),  # was a ZeroDivisionError
        ("bench_sw_ranking.py", "--queries"),  # was numpy's "zero-size array"
        ("load_test.py", "--concurrency"),  # was a failed run with NaN figures
    ],
)
def test_a_count_of_zero_is_a_usage_error(script, option):
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), option, "0"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(f"argument {option}: must be at least 1, got 0")


# Each was a run to the end before: a ZeroDivisionError in bench_server's report, load_test's run of no
# request failing its checks for no reason given, bench_mf's ValueError after all its timing.
@pytest.mark.parametrize(
    ("script", "option", "value", "message"),
    [
        ("bench_server.py", "--seconds", "0", "must be a number of seconds above 0, got 0"),
        ("bench_ray.py", "--seconds", "-1", "must be a number of seconds above 0, got -1"),
        ("load_test.py", "--seconds", "nan", "must be a number of seconds above 0, got nan"),
        ("load_test.py", "--warmup", "-1", "must be at least 0, got -1"),
        ("bench_mf.py", "--long", "-1", "must be at least 0, got -1"),
        ("bench_mf.py", "--train-epochs", "-2", "must be at least 0, got -2"),
        ("bench_embeddings.py", "--seed", "-1", "must be at least 0, got -1"),  # was numpy's ValueError
    ],
)
def test_an_option_out_of_range_is_a_usage_error(script, option, value, message):
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), f"{option}={value}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(f"argument {option}: {message}"), run.stderr


def test_load_test_measures_prompts_its_warm_up_did_not_send(monkeypatch):
    # The server keeps recent prompts' embeddings (an LRU): a warm-up prompt sent again in the measured
    # run would be answered without the embedding, the cost an embedding router's request has.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import load_test

    sent: list[int] = []

    def recording(i: int, router: str) -> bytes:
        sent.append(i)
        return original(i, router)

    original = load_test.request_bytes
    monkeypatch.setattr(load_test, "request_bytes", recording)
    argv = ["--router", "random", "--requests", "20", "--window", "10", "--warmup", "8"]
    assert load_test.main([*argv, "--concurrency", "4", "--seconds", "60"]) == 0
    assert len(sent) == 28 and len(set(sent)) == 28, sent


def test_load_test_removes_the_server_log_of_a_run_that_passed(tmp_path):
    argv = [sys.executable, str(BENCHMARKS / "load_test.py"), "--router", "random", "--requests", "4"]
    argv += ["--window", "2", "--warmup", "1", "--concurrency", "2", "--seconds", "60"]
    run = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(tmp_path.iterdir()) == [], "a folder per run was left in the temp folder"


def _running(pid: int) -> bool:
    try:  # a zombie has ended; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:  # a zombie has ended: only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
        if current != pid:
            found.append(current)
    return found


# Each runs long enough to be stopped mid-measurement once its servers are up (that many children).
STOPPED = {
    "load_test.py --router random --requests 1000000 --window 10 --concurrency 1 --seconds 60": 2,
    "bench_server.py --concurrency 1 --requests 1000000 --seconds 60 --rounds 1 --no-mf --load python": 3,
}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("command", list(STOPPED))
def test_a_terminated_benchmark_stops_the_servers_it_started(command, tmp_path):
    # As `timeout` or a cancelled CI job does: SIGTERM to the script alone, not to its process group.
    name, *options = command.split()
    script = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / name), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    children = Path(f"/proc/{script.pid}/task/{script.pid}/children")
    started: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while len(children.read_text().split()) < STOPPED[command]:
            assert script.poll() is None and time.monotonic() < deadline, "its servers did not start"
            time.sleep(0.2)
        time.sleep(3)  # the servers are up and loaded
        started += _descendants(script.pid)
        script.send_signal(signal.SIGTERM)
        script.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (left := [pid for pid in started if _running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"left running: {left}"
        assert list(tmp_path.iterdir()) == []
    finally:
        for pid in [script.pid, *started]:  # what a failure left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_sw_ranking_reference_rate_counts_the_prompts_it_scored():
    # --baseline-queries above --queries: the reference scores the 2 queries there are
    argv = [sys.executable, str(BENCHMARKS / "bench_sw_ranking.py")]
    argv += ["--battles", "200", "--queries", "2", "--baseline-queries", "40"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"reference refit per prompt: +[\d.]+ prompts/s +\(2 prompts\)", run.stdout), run.stdout


def test_bench_mf_leaves_nothing_in_the_temp_folder(tmp_path):
    argv = [sys.executable, str(BENCHMARKS / "bench_mf.py"), "--prompts", "4", "--baseline-prompts", "2"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    # torch's compile cache may appear there: it is torch's, kept for the next run
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp")]
    assert left == [], "the router saved to be loaded again stayed in the temp folder"


def _chromium_missing() -> bool:
    try:
        chromium_path()
    except RuntimeError:
        return True
    return False


def _llama_missing() -> bool:
    return missing_requirements() is not None


@pytest.mark.parametrize(
    ("command", "missing", "says"),
    [
        ("bench_console.py --loads 1", _chromium_missing, "no Chromium found"),
        ("bench_llama_servers.py --max-tokens 1 --repeats 1", _llama_missing, "install-llama.sh"),
    ],
)
def test_a_benchmark_without_its_prerequisite_says_so_in_one_line(command, missing, says):
    if not missing():
        pytest.skip("installed here")
    name, *options = command.split()
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *options], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    message = run.stderr.strip().splitlines()
    assert len(message) == 1 and says in message[0], run.stderr
