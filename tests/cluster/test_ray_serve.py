"""lmroute on a real local Ray cluster (127.0.0.1): ``lmroute serve --ray-config``, ``lmroute score --ray``.

The module starts one head node, deploys lmroute with one ingress and two scoring replicas in
front of two fake upstreams, and drives it with the ``openai`` SDK; a scoring replica is killed
during a bounded load, and no request may be lost. Bulk scoring over Ray Data must give the records
of the single-process command. About a minute or two on a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time

import httpx
import pytest
import yaml
from ray_cluster import local_ray_cluster
from serve_process import get_text, metric_value, running_serve, stop

pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.ray, pytest.mark.network_loopback]

APP = "lmroute-test"
PROMPT = "Name three fruits."


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def server(cluster, upstreams, tmp_path_factory):
    """lmroute on Ray Serve: 1 ingress, 2 scoring replicas; a router error is a 503, never hidden."""
    tmp = tmp_path_factory.mktemp("ray-serve")
    ray_config = tmp / "ray.yaml"
    ray_config.write_text(
        yaml.safe_dump(
            {
                "address": cluster.address,
                "app_name": APP,
                "ingress": {"num_replicas": 1, "num_cpus": 0.5},
                # Each batch waits 0.1 s for more calls, longer than the rest of a request, so
                # scoring calls are in flight when a replica is killed.
                "scorer": {"num_replicas": 2, "num_cpus": 0.5, "batch_wait_timeout_s": 0.1},
            }
        )
    )
    argv = [
        sys.executable,
        "-m",
        "lmroute.cli",
        "serve",
        "--routers",
        "length",
        "--ray-config",
        str(ray_config),
    ]
    argv += ["--on-router-error", "error", "--log-level", "warning"]
    config = upstreams.config()
    for tier in ("strong", "weak"):
        argv += [
            f"--{tier}-base-url",
            getattr(config, tier).base_url,
            f"--{tier}-model",
            getattr(config, tier).model,
        ]
    env = {**cluster.env, "LMROUTE_API_KEYS": ""}
    command = lambda port: [*argv, "--port", str(port)]  # noqa: E731
    with running_serve(command, env=env, log_dir=tmp, timeout=240) as running:
        yield running


def test_chat_plain_and_streamed_through_ray_serve(server, upstreams):
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="router-length-0.01", messages=[{"role": "user", "content": PROMPT}]
    )
    answer = raw.parse()
    assert raw.headers["x-lmroute-decision"] == "strong" and raw.headers["x-lmroute-router"] == "length"
    assert float(raw.headers["x-lmroute-score"]) == pytest.approx(len(PROMPT) / (len(PROMPT) + 500), abs=1e-6)
    assert answer.choices[0].message.content == "strong says hi"
    chunks = list(
        client.chat.completions.create(
            model="router-length-0.9", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "weak says hi" and upstreams.weak.requests[-1]["stream"] is True
    route = httpx.post(
        f"{server.base_url}/route", json={"model": "router-length-0.5", "prompt": PROMPT}, trust_env=False
    ).json()
    assert route["decision"] == "weak" and route["router"] == "length"
    # The same OpenAI-shaped errors as lmroute serve.
    with pytest.raises(openai.BadRequestError, match="not served here") as error:
        client.chat.completions.create(model="router-mf-0.5", messages=[{"role": "user", "content": "x"}])
    assert error.value.code == "router_not_found"


def test_killing_a_scoring_replica_loses_no_request(server, cluster):
    scorers = cluster.processes(f"ServeReplica:{APP}:Scorer")
    assert len(scorers) == 2, scorers
    total, concurrency = 300, 16
    body = {"model": "router-length-0.5", "messages": [{"role": "user", "content": PROMPT}]}
    done: list[int] = []
    killed = threading.Event()

    def kill_when_a_third_is_done() -> None:
        while len(done) < total // 3:
            time.sleep(0.01)
        os.kill(scorers[0], signal.SIGKILL)
        killed.set()

    async def load() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, trust_env=False, limits=limits) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> httpx.Response:
                async with gate:
                    response = await client.post(f"{server.base_url}/chat/completions", json=body)
                    done.append(response.status_code)
                    return response

            return await asyncio.gather(*(one() for _ in range(total)))

    killer = threading.Thread(target=kill_when_a_third_is_done, daemon=True)
    killer.start()
    start = time.monotonic()
    responses = asyncio.run(load())
    elapsed = time.monotonic() - start
    killer.join(10)
    assert killed.is_set()
    failed = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert not failed, failed
    assert all("x-lmroute-score" in r.headers for r in responses)  # scored, not sent on by default
    retries = metric_value(get_text(f"{server.url}/metrics"), "lmroute_scoring_retries_total")
    print(f"{total} requests in {elapsed:.1f} s at c={concurrency}, 0 lost; scoring retries {retries:g}")
    # Ray Serve replaces the dead replica.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = cluster.processes(f"ServeReplica:{APP}:Scorer")
        if len(now) == 2 and scorers[0] not in now:
            break
        time.sleep(1)
    assert len(now) == 2 and scorers[0] not in now, now


def test_bulk_scoring_on_ray_data_matches_the_single_process_command(cluster, tmp_path):
    import subprocess

    prompts = [f"prompt number {i} " + "x" * (i % 97) for i in range(1000)]
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    base = [
        sys.executable,
        "-m",
        "lmroute.cli",
        "score",
        "--router",
        "length",
        "--input",
        str(source),
        "--quiet",
    ]

    def run(*flags: str) -> None:
        result = subprocess.run([*base, *flags], env=cluster.env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Running Dataset" not in result.stderr  # Ray Data's progress, and --quiet was given
        # Every run printed Ray Data's warning that map_batches's `concurrency` is deprecated.
        assert "deprecated" not in result.stderr, result.stderr[-3000:]

    run("--output", str(tmp_path / "single.jsonl"))
    on_ray = tmp_path / "ray.jsonl"
    # An earlier run that stopped after 400 records and in the middle of the 401st.
    single = (tmp_path / "single.jsonl").read_text().splitlines(keepends=True)
    on_ray.write_text("".join(single[:400]) + single[400][:10])
    run("--output", str(on_ray), "--ray-address", cluster.address)
    assert on_ray.read_text() == (tmp_path / "single.jsonl").read_text()


def test_a_router_the_actors_cannot_load_is_one_line(cluster, tmp_path):
    """A router directory the nodes lack (only there is it looked for): the actors' error reached the
    command as a traceback of Ray's errors (an actor that failed to start keeps only its text)."""
    import subprocess

    source = tmp_path / "prompts.jsonl"
    source.write_text(json.dumps({"prompt": "hello"}) + "\n")
    router = tmp_path / "only-on-the-nodes"
    argv = [sys.executable, "-m", "lmroute.cli", "score", "--router", str(router), "--input", str(source)]
    argv += ["--quiet", "--ray-address", cluster.address]
    result = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stdout == ""
    err = [line for line in result.stderr.splitlines() if line.startswith("lmroute: error: ")]
    expected = f"lmroute: error: {router} is not a router directory (no config.json in it)"
    assert err == [expected], result.stderr[-3000:]


def test_a_ray_version_other_than_the_clusters_is_one_line(cluster, tmp_path):
    """A command whose Ray is not the cluster's: ray.init's "Version mismatch" RuntimeError came
    out as a traceback."""
    import subprocess

    import ray

    source = tmp_path / "prompts.jsonl"
    source.write_text(json.dumps({"prompt": "hello"}) + "\n")
    output = tmp_path / "scores.jsonl"
    # This process's Ray as another version, as ray.init compares it with the cluster's.
    code = (
        "import sys, ray._private.utils as u; real = u.compute_version_info; "
        "u.compute_version_info = lambda: ('2.0.0', real()[1]); "
        "from lmroute.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, "score", "--router", "length", "--input", str(source)]
    argv += ["--output", str(output), "--quiet", "--ray-address", cluster.address]
    result = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    err = [line for line in result.stderr.splitlines() if line.startswith("lmroute: error: ")]
    assert len(err) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"Ray: {ray.__version__}" in err[0] and "Ray: 2.0.0" in err[0], err
    assert not output.exists()


def test_a_second_server_on_the_cluster_is_a_one_line_error(server, cluster, upstreams, tmp_path):
    import subprocess

    # Ray Serve has one HTTP proxy per cluster, and the module's server holds its "/".
    ray_config = tmp_path / "ray.yaml"
    ray_config.write_text(yaml.safe_dump({"address": cluster.address, "app_name": "another"}))
    argv = [sys.executable, "-m", "lmroute.cli", "serve", "--routers", "length"]
    argv += ["--ray-config", str(ray_config), "--port", str(server.port), "--log-level", "warning"]
    config = upstreams.config()
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", getattr(config, tier).base_url, f"--{tier}-model", tier]
    result = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lmroute: error: Ray Serve did not deploy another: ") and APP in last, last


def test_stopping_the_command_deletes_its_application(server, cluster):
    # After the tests of the running server: it stops the module's server, with SIGTERM, as a
    # process manager stops a service. The application must not outlive the command on the
    # cluster it joined.
    assert cluster.processes(f"ServeReplica:{APP}:Ingress")
    stop(server)  # its exit status is Ray's: the process may abort after the app is deleted
    deadline = time.monotonic() + 60
    while cluster.processes(f"ServeReplica:{APP}:") and time.monotonic() < deadline:
        time.sleep(1)
    assert not cluster.processes(f"ServeReplica:{APP}:")


def test_a_port_other_than_ray_serves_is_a_one_line_error(server, cluster, upstreams):
    """Ray Serve keeps the HTTP address it first started with (its proxy outlives the application
    that a stopped command deleted): a new command on another port logged that port and served on
    the old one, blocking as if all was well."""
    import subprocess

    from fake_openai import free_port

    other = free_port()
    argv = [sys.executable, "-m", "lmroute.cli", "serve", "--routers", "length", "--ray-address"]
    argv += [cluster.address, "--port", str(other), "--log-level", "warning"]
    config = upstreams.config()
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", getattr(config, tier).base_url, f"--{tier}-model", tier]
    try:
        result = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the command went on serving (on port {server.port}, not {other})")
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    expected = f"lmroute: error: Ray Serve already runs on this cluster at 127.0.0.1:{server.port}, not "
    assert last.startswith(expected + f"127.0.0.1:{other} "), last
    assert not cluster.processes("ServeReplica:lmroute:")  # nothing deployed


def test_replicas_that_fail_to_start_are_one_line_and_leave_nothing(server, cluster, upstreams, tmp_path):
    """A router directory the nodes lack (this machine too: it is not checked here) fails the
    scoring replicas: a RuntimeError traceback, and the failed application stayed on the cluster,
    its ingress replica starting for ever (it waits for the scorer)."""
    import subprocess

    router = tmp_path / "only-on-the-nodes"
    argv = [sys.executable, "-m", "lmroute.cli", "serve", "--routers", str(router), "--ray-address"]
    argv += [cluster.address, "--port", str(server.port), "--log-level", "warning"]
    config = upstreams.config()
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", getattr(config, tier).base_url, f"--{tier}-model", tier]
    result = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "cli/__main__.py" not in result.stderr, result.stderr[-3000:]  # the command's own traceback
    last = result.stderr.strip().splitlines()[-1]
    expected = "lmroute: error: Ray Serve did not deploy lmroute: its Scorer replicas failed to start: "
    assert last == expected + f"UnknownRouterError: {router} is not a router directory (no config.json in it)"
    deadline = time.monotonic() + 60
    while cluster.processes("ServeReplica:lmroute:") and time.monotonic() < deadline:
        time.sleep(1)
    assert not cluster.processes("ServeReplica:lmroute:")
