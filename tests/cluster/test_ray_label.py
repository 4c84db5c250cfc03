"""``lmroute label --ray`` on a real local Ray cluster (127.0.0.1), against a stub upstream on loopback
that answers as two models and as the judge, and counts its requests.

The run on Ray gives the output of the single-process command; ``--concurrency`` and ``--rate`` hold
for the cluster as a whole, with two workers calling; a run whose folder already holds part of the
calls (and a torn last line) makes only the others, a run killed half way goes on without
repeating a stored call, and a worker killed mid-run gives its slots back. About three to four
minutes on a busy 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ray_cluster import local_ray_cluster

from lmroute.cli import main

pytest.importorskip("ray.data")

N_ITEMS = 12
#: Each item: an answer from each of two models, and the judge on the pair in both orders.
CALLS = 4 * N_ITEMS


class StubUpstream:
    """Answers ``strong``, ``weak`` and ``judge`` (which prefers the strong model's answer); records
    every request's arrival time and the most requests it held at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delay = 0.0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: Counter[tuple[str, str]] = Counter()
            self.arrivals: list[float] = []
            self.active = 0
            self.max_active = 0

    def answer(self, body: dict) -> str:
        content = body["messages"][-1]["content"]
        with self.lock:
            self.requests[(body["model"], content)] += 1
            self.arrivals.append(time.monotonic())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            if body["model"] != "judge":
                return f"{body['model']} answers: {content[::-1]}"
            first = content.split("[The Start of Assistant A's Answer]")[1]
            return "A is better. [[A]]" if first.lstrip().startswith("strong") else "B is better. [[B]]"
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def stub():
    upstream = StubUpstream()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": upstream.answer(body)},
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
            data = json.dumps(reply).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the caller was killed mid-call
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield upstream
    server.shutdown()
    server.server_close()


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question number {i}?"}) + "\n" for i in range(N_ITEMS)))
    return path


def _label(cluster, stub, prompts: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "lmroute.cli", "label", "--prompts", str(prompts), "--out", str(out)]
    argv += ["--mode", "judge", "--judge", f"name=judge,base_url={stub.url}"]
    for name in ("strong", "weak"):
        argv += ["--model", f"name={name},base_url={stub.url}"]
    argv += ["--max-tokens", "16", "--judge-max-tokens", "16", "--quiet", *flags]
    result = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _stored(out: Path, name: str) -> dict[tuple, str]:
    lines = (out / name).read_text().splitlines()
    return {(r["model"], r["prompt_id"], r["request_hash"]): r["text"] for r in map(json.loads, lines)}


@pytest.mark.ray
@pytest.mark.network_loopback
def test_label_on_ray_gives_the_output_of_the_single_process_command(cluster, stub, tmp_path):
    prompts = _prompts(tmp_path)
    stub.reset()
    single = _label(cluster, stub, prompts, tmp_path / "single")
    on_ray = _label(cluster, stub, prompts, tmp_path / "ray", "--ray-address", cluster.address)
    assert on_ray.stdout == single.stdout.replace("single", "ray")
    assert f"labelled {N_ITEMS}/{N_ITEMS} prompts" in on_ray.stdout
    assert f"calls: {CALLS} made, 0 reused" in on_ray.stdout
    # The workers close their HTTP sessions when they stop (aiohttp's GC warnings used to fill stderr).
    assert "Unclosed" not in on_ray.stderr, on_ray.stderr[-3000:]
    for name in ("battles.jsonl", "summary.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    battles = [json.loads(line) for line in (tmp_path / "ray" / "battles.jsonl").read_text().splitlines()]
    assert [b["winner"] for b in battles] == ["model_a"] * N_ITEMS
    for name in ("responses.jsonl", "judgements.jsonl"):
        assert _stored(tmp_path / "ray", name) == _stored(tmp_path / "single", name), name
    # Each run asked every question once.
    assert len(stub.requests) == CALLS and set(stub.requests.values()) == {2}


@pytest.mark.ray
@pytest.mark.network_loopback
def test_concurrency_and_rate_limits_hold_for_the_whole_cluster(cluster, stub, tmp_path):
    prompts = _prompts(tmp_path)
    workers: set[int] = set()
    running = threading.Event()

    def watch_workers() -> None:  # the Ray Data workers alive during the runs
        while running.is_set():
            workers.update(cluster.processes("MapBatches(_BatchLabeller)"))
            time.sleep(0.05)

    running.set()
    watcher = threading.Thread(target=watch_workers, daemon=True)
    watcher.start()
    try:
        # Two workers, each given batches of 3 items (6 calls at once), share 3 slots.
        stub.reset()
        stub.delay = 0.1
        flags = ("--ray-address", cluster.address, "--ray-actors", "2", "--concurrency", "3")
        _label(cluster, stub, prompts, tmp_path / "concurrency", *flags)
        assert sum(stub.requests.values()) == CALLS
        assert stub.max_active == 3
        # At most 10 calls a second for both workers together.
        stub.reset()
        stub.delay = 0.0
        flags = ("--ray-address", cluster.address, "--ray-actors", "2", "--rate", "10")
        _label(cluster, stub, prompts, tmp_path / "rate", *flags)
    finally:
        running.clear()
        watcher.join(5)
        stub.delay = 0.0
    arrivals = sorted(stub.arrivals)
    assert len(arrivals) == CALLS
    span = arrivals[-1] - arrivals[0]

    def busiest(window: float) -> int:
        return max(sum(t <= a < t + window for a in arrivals) for t in arrivals)

    print(f"{CALLS} calls in {span:.2f} s; busiest 1 s: {busiest(1.0)} calls, busiest 3 s: {busiest(3.0)}")
    # The gate starts a call every 0.1 s; a request reaches the stub a little after its start, later
    # on a busy machine, so a window may catch a few more. Two limits of 10/s, one per worker, would
    # take half the time (2.4 s) and put all 48 calls in 3 s.
    assert span >= 0.75 * (CALLS - 1) / 10
    assert busiest(3.0) <= 3 * 10 + 6
    assert len(workers) >= 2, workers


@pytest.mark.ray
@pytest.mark.network_loopback
def test_a_run_on_ray_makes_only_the_calls_its_folder_lacks(cluster, stub, tmp_path):
    prompts = _prompts(tmp_path)
    full = tmp_path / "full"
    _label(cluster, stub, prompts, full)
    # A folder as a stopped run leaves it: the answers to half the items, the judge's verdicts on a
    # quarter, and a torn last line.
    partial = tmp_path / "partial"
    partial.mkdir()
    responses = sorted((full / "responses.jsonl").read_text().splitlines(keepends=True))
    judgements = sorted((full / "judgements.jsonl").read_text().splitlines(keepends=True))
    kept_responses = [r for r in responses if int(json.loads(r)["prompt_id"]) < N_ITEMS // 2]
    kept_judgements = [j for j in judgements if int(json.loads(j)["prompt_id"]) < N_ITEMS // 4]
    (partial / "responses.jsonl").write_text("".join(kept_responses) + responses[-1][:25])
    (partial / "judgements.jsonl").write_text("".join(kept_judgements))
    stub.reset()
    result = _label(cluster, stub, prompts, partial, "--ray-address", cluster.address)
    stored_before = len(kept_responses) + len(kept_judgements)
    assert sum(stub.requests.values()) == CALLS - stored_before
    assert set(stub.requests.values()) == {1}
    asked = {content for _, content in stub.requests}
    for line in kept_responses:
        assert json.loads(line)["prompt"] not in asked
    assert f"calls: {CALLS - stored_before} made, {stored_before} reused" in result.stdout
    assert (partial / "battles.jsonl").read_bytes() == (full / "battles.jsonl").read_bytes()
    for name in ("responses.jsonl", "judgements.jsonl"):
        assert _stored(partial, name) == _stored(full, name), name


def test_bad_ray_options_are_one_line_errors(tmp_path, capsys, monkeypatch):
    prompts = _prompts(tmp_path)
    base = ["label", "--prompts", str(prompts), "--mode", "judge", "--out", str(tmp_path / "run")]
    base += ["--judge", "name=judge,base_url=http://127.0.0.1:9/v1"]
    base += [
        "--model",
        "name=a,base_url=http://127.0.0.1:9/v1",
        "--model",
        "name=b,base_url=http://127.0.0.1:9/v1",
    ]
    assert main([*base, "--ray", "--ray-actors", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lmroute: error: --ray-actors must be at least 1, not 0"]
    # A key the workers need is looked up before Ray starts.
    monkeypatch.delenv("LMR_TEST_KEY", raising=False)
    keyed = [*base[:-4], "--model", "name=a,base_url=http://127.0.0.1:9/v1,api_key_env=LMR_TEST_KEY"]
    keyed += ["--model", "name=b,base_url=http://127.0.0.1:9/v1"]
    assert main([*keyed, "--ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmroute: error: ") and "LMR_TEST_KEY" in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.ray
@pytest.mark.network_loopback
def test_a_killed_run_on_ray_goes_on_without_repeating_a_stored_call(cluster, stub, tmp_path):
    import os
    import signal

    prompts, out = _prompts(tmp_path), tmp_path / "run"
    argv = [sys.executable, "-m", "lmroute.cli", "label", "--prompts", str(prompts), "--out", str(out)]
    argv += ["--mode", "judge", "--judge", f"name=judge,base_url={stub.url}"]
    argv += ["--model", f"name=strong,base_url={stub.url}", "--model", f"name=weak,base_url={stub.url}"]
    argv += ["--max-tokens", "16", "--judge-max-tokens", "16", "--quiet", "--ray-address", cluster.address]
    argv += ["--concurrency", "2", "--rate", "8"]
    stub.reset()
    proc = subprocess.Popen(argv, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while sum(stub.requests.values()) < CALLS // 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    proc.stderr.close()
    stored = {
        name: (out / name).read_text().splitlines() if (out / name).exists() else []
        for name in ("responses.jsonl", "judgements.jsonl")
    }
    before = sum(map(len, stored.values()))
    assert 0 < before < CALLS and not (out / "battles.jsonl").exists()
    time.sleep(2)  # the killed run's workers end with their driver

    result = _label(cluster, stub, prompts, out, "--ray-address", cluster.address)
    assert f"calls: {CALLS - before} made, {before} reused" in result.stdout
    for line in stored["responses.jsonl"]:
        record = json.loads(line)
        assert stub.requests[(record["model"], record["prompt"])] == 1, record
    # What the killed run paid for and did not store: the calls of the batches under way (two
    # workers, batches of two prompts, four calls each), and of one finished but not yet stored.
    lost = sum(stub.requests.values()) - CALLS
    print(f"stored before the kill: {before} calls; made again: {lost}")
    assert 0 <= lost <= 3 * 2 * 4
    assert len(stub.requests) == CALLS
    battles = [json.loads(line) for line in (out / "battles.jsonl").read_text().splitlines()]
    assert [b["winner"] for b in battles] == ["model_a"] * N_ITEMS


@pytest.mark.ray
@pytest.mark.network_loopback
def test_a_worker_killed_mid_run_gives_its_slots_back(cluster, stub, tmp_path):
    import os
    import signal

    prompts, out = _prompts(tmp_path), tmp_path / "run"
    argv = [sys.executable, "-m", "lmroute.cli", "label", "--prompts", str(prompts), "--out", str(out)]
    argv += ["--mode", "judge", "--judge", f"name=judge,base_url={stub.url}"]
    argv += ["--model", f"name=strong,base_url={stub.url}", "--model", f"name=weak,base_url={stub.url}"]
    argv += ["--max-tokens", "16", "--judge-max-tokens", "16", "--quiet", "--ray-address", cluster.address]
    argv += ["--concurrency", "2", "--rate", "8"]
    stub.reset()
    stub.delay = 0.2  # a worker holds its slots most of the time
    try:
        proc = subprocess.Popen(
            argv, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while sum(stub.requests.values()) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # On a busy machine the second worker may start after the first has made these requests.
        workers = cluster.processes("MapBatches(_BatchLabeller)")
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = cluster.processes("MapBatches(_BatchLabeller)")
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(0.5)  # the killed worker's requests end; from now on, count again
        with stub.lock:
            stub.max_active = stub.active
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        stub.delay = 0.0
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"labelled {N_ITEMS}/{N_ITEMS} prompts" in stdout
    # Both slots were in use again after the kill: the dead worker's were given back.
    assert stub.max_active == 2
    battles = [json.loads(line) for line in (out / "battles.jsonl").read_text().splitlines()]
    assert [b["winner"] for b in battles] == ["model_a"] * N_ITEMS


def test_an_lmroute_error_in_a_worker_is_found_inside_the_ray_errors():
    from ray.exceptions import RayTaskError

    from lmroute.cluster.connect import library_error
    from lmroute.exceptions import ConfigError

    error = ConfigError("the judge template lacks {question}")
    wrapped = RayTaskError("_BatchLabeller.__call__", "Traceback (most recent call last): ...", error)
    try:
        raise RuntimeError("UDF failed to process a data block") from wrapped.as_instanceof_cause()
    except RuntimeError as outer:
        assert library_error(outer) is error
    assert library_error(RuntimeError("a bug")) is None
