"""The latency lmroute's server adds, its throughput with one and two workers, and the mf server's memory.

One command: ``python benchmarks/bench_server.py`` (options: ``--concurrency``, ``--requests``,
``--seconds``, ``--rounds``, ``--baseline-src``, ``--no-mf``, ``--load``). It starts, on 127.0.0.1, a
canned-answer upstream (``fast_upstream.py``) and ``lmroute serve`` with the ``random`` router in
front of it (one worker, and ``--workers 2``), each as its own process. The load generator is ``wrk``
when it is on the PATH (``apt-get install wrk``: a C load generator leaves the two cores to the
servers it measures), else this process with raw asyncio HTTP/1.1, one keep-alive connection per
concurrent user, bounded in requests and seconds per level (``--load python`` forces it). Every target
is measured ``--rounds`` times in turn (so a burst of load from elsewhere hits them alike) and its best
round is kept. It prints, per concurrency level, p50/p99 latency, requests per second, errors and
the server's CPU milliseconds per request (all its processes; on a busy machine this moves far less
than the rates), then the checks:

- random router, one worker: >= 800 requests/s at concurrency 64 with 0 errors;
- added p50 (lmroute's best p50 over the rounds - the upstream alone's best) at concurrency 1 <= 1.2 ms;
- ``--workers 2`` >= 1.5x one worker's requests/s at concurrency 64;
- the shipped ``mf`` (unless ``--no-mf``): server RSS <= 160 MB after 2,000 requests with distinct
  prompts at concurrency 64 (MiniLM must be installed); RSS after 8,000 more, once the LRU
  embedding cache is full, is printed beside it.

``--baseline-src DIR`` also runs a server from another source tree (e.g. ``../main/src``) in the same
rounds, as the row ``baseline``, with its ratios to this tree's one worker (req/s x1.20: the
baseline served 20% more). The load average is printed before and after: rates taken on a busy
machine are not evidence, ratios measured in one run are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _args import positive, positive_seconds, stop_on_sigterm

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BODY = {
    "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    "max_tokens": 16,
    "temperature": 0.0,
}
TARGETS = {"rps_c64": 800.0, "added_p50_ms": 1.2, "workers_ratio": 1.5, "mf_rss_mb": 160.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc; just ``pid`` elsewhere)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants; NaN where /proc is missing."""
    total = 0.0
    for each in process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat; zeros elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (10^6 bytes); NaN where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return float("nan")


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{' '.join(map(str, process.args[:6]))} exited with {process.returncode}")
        try:
            opener.open(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {seconds:.0f} s")


def chat_request(model: str, prompt: str | None = None) -> bytes:
    body = BODY if prompt is None else {**BODY, "messages": [{"role": "user", "content": prompt}]}
    payload = json.dumps({**body, "model": model}).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )


async def _user(port: int, requests: list[bytes], deadline: float, latencies: list[float]) -> int:
    """One keep-alive connection sending ``requests`` one after another; returns failures."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    failures = 0
    try:
        for request in requests:
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200") or b'"choices"' not in body:
                failures += 1
    finally:
        writer.close()
    return failures


async def load(port: int, requests: list[bytes], *, concurrency: int, seconds: float) -> dict:
    """Send ``requests`` over ``concurrency`` connections (after a short warm-up); the figures,
    with ``warm`` the warm-up's requests (the server's CPU time holds them too)."""
    latencies: list[float] = []
    warm: list[float] = []  # fewer than 5 a user with --requests below 5, or past the deadline
    await asyncio.gather(
        *(_user(port, requests[:5], time.perf_counter() + 5, warm) for _ in range(concurrency))
    )
    per_user = [requests[i::concurrency] for i in range(concurrency)]
    start = time.perf_counter()
    failures = await asyncio.gather(
        *(_user(port, mine, start + seconds, latencies) for mine in per_user if mine)
    )
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "n": len(latencies),
        "warm": len(warm),
        "failures": sum(failures),
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = {body}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %f %f\\n", summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_load(port: int, request: bytes, *, concurrency: int, seconds: float) -> dict:
    """``wrk`` sending one request over ``concurrency`` keep-alive connections for ``seconds``."""
    body = request.split(b"\r\n\r\n", 1)[1].decode()
    path = request.split(b" ", 2)[1].decode()
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_SCRIPT.format(body=json.dumps(body)))
        script.flush()
        argv = ["wrk", "-t1", f"-c{concurrency}", "-s", script.name, f"http://127.0.0.1:{port}{path}"]
        subprocess.run([*argv[:-1], "-d1s", argv[-1]], capture_output=True, check=True)  # warm-up
        out = subprocess.run([*argv[:-1], f"-d{seconds:g}s", argv[-1]], capture_output=True, text=True)
    found = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\S+) (\S+)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    n, micros, status_errors, socket_errors = (int(found[i]) for i in range(1, 5))
    return {
        "n": n,
        "failures": status_errors + socket_errors,
        "rps": n / (micros / 1e6),
        "p50": float(found[5]) / 1000,
        "p99": float(found[6]) / 1000,
    }


def run_load(
    port: int, requests: list[bytes], *, concurrency: int, seconds: float, tool: str = "python"
) -> dict:
    """The figures of one load level; ``tool`` ``wrk`` sends ``requests[0]`` for ``seconds``."""
    if tool == "wrk":
        return wrk_load(port, requests[0], concurrency=concurrency, seconds=seconds)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load(port, requests, concurrency=concurrency, seconds=seconds))
    return uvloop.run(load(port, requests, concurrency=concurrency, seconds=seconds))


@dataclass
class Target:
    """A server to measure: its process, port, and the best round per concurrency level."""

    name: str
    port: int
    process: subprocess.Popen | None = None
    best: dict[int, dict] = field(default_factory=dict)

    def keep(self, c: int, result: dict) -> None:
        old = self.best.get(c)
        if old is None:
            self.best[c] = result
            return
        # Best round: the most requests/s and, apart, the lowest p50 (load from elsewhere only hurts).
        merged = dict(old if old["rps"] >= result["rps"] else result)
        merged["p50"] = min(old["p50"], result["p50"])
        merged["failures"] = old["failures"] + result["failures"]
        self.best[c] = merged


def start_server(
    src: Path, port: int, upstream: str, *, router: str = "random", workers: int = 1
) -> subprocess.Popen:
    env = {**os.environ, "LMROUTE_API_KEYS": "", "PYTHONPATH": str(src)}
    argv = [sys.executable, "-m", "lmroute.cli", "serve", "--routers", router, "--port", str(port)]
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", upstream, f"--{tier}-model", f"{tier}-model"]
    argv += ["--log-level", "warning"] + (["--workers", str(workers)] if workers > 1 else [])
    return subprocess.Popen(argv, env=env)


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_mf_rss(upstream: str) -> float:
    """RSS of an ``lmroute serve --routers mf`` after 2,000 requests with distinct prompts at c=64."""
    port = free_port()
    server = start_server(SRC, port, upstream, router="mf")
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", server, seconds=300)
        requests = [
            chat_request("router-mf-0.5", f"Question {i}: how would you explain topic number {i} simply?")
            for i in range(2000)
        ]
        result = run_load(port, requests, concurrency=64, seconds=300)
        rss = rss_mb(server.pid)
        print(
            f"shipped mf, 2,000 distinct prompts at c=64: {result['rps']:.0f} req/s, "
            f"p50 {result['p50']:.1f} ms, {result['failures']} errors; server RSS {rss:.1f} MB"
        )
        # 8,000 more fill the LRU embedding cache (4,096 vectors): where the process levels off
        more = [
            chat_request("router-mf-0.5", f"Round {r}, question {i}: what is the gist of topic {i}?")
            for r in range(4)
            for i in range(2000)
        ]
        later = run_load(port, more, concurrency=64, seconds=300)
        print(
            f"  after 8,000 more distinct prompts: {later['failures']} errors; server RSS "
            f"{rss_mb(server.pid):.1f} MB (LRU embedding cache full)"
        )
        return rss
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=positive, nargs="+", default=[1, 64])
    parser.add_argument("--requests", type=positive, default=4000, help="requests per level and round")
    parser.add_argument(
        "--seconds", type=positive_seconds, default=10.0, help="time limit per level, target and round"
    )
    parser.add_argument(
        "--rounds", type=positive, default=3, help="rounds over all targets; the best is kept"
    )
    parser.add_argument("--baseline-src", type=Path, help="also measure lmroute from this source tree")
    parser.add_argument("--no-mf", action="store_true", help="skip the mf server's memory")
    parser.add_argument(
        "--load",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default: wrk when installed)",
    )
    args = parser.parse_args()
    if args.baseline_src and not (args.baseline_src / "lmroute" / "__init__.py").is_file():
        # Else its server imports the installed lmroute and the ratios compare this tree with that.
        parser.error(f"--baseline-src {args.baseline_src}: no lmroute package there (a tree's src folder)")

    print(f"load average before: {load_average()}; {os.cpu_count()} cores; load generator {args.load}")
    up_port = free_port()
    upstream_process = subprocess.Popen(
        [sys.executable, str(HERE / "fast_upstream.py"), str(up_port)], stdout=subprocess.DEVNULL
    )
    upstream = f"http://127.0.0.1:{up_port}/v1"
    direct = Target("upstream", up_port)
    servers = [Target("lmroute", free_port()), Target("2 workers", free_port())]
    if args.baseline_src:
        servers.append(Target("baseline", free_port()))
    try:
        for target in servers:
            src = args.baseline_src if target.name == "baseline" else SRC
            target.process = start_server(
                src, target.port, upstream, workers=2 if target.name == "2 workers" else 1
            )
        for target in servers:
            assert target.process is not None
            wait_ready(f"http://127.0.0.1:{target.port}/health", target.process)
        routed = chat_request("router-random-0.5")
        plain = chat_request("strong-model")
        for _ in range(args.rounds):
            for c in args.concurrency:
                direct.keep(
                    c,
                    run_load(
                        up_port, [plain] * args.requests, concurrency=c, seconds=args.seconds, tool=args.load
                    ),
                )
                for target in servers:
                    assert target.process is not None
                    before, busy_before = cpu_seconds(target.process.pid), machine_ticks()
                    result = run_load(
                        target.port,
                        [routed] * args.requests,
                        concurrency=c,
                        seconds=args.seconds,
                        tool=args.load,
                    )
                    # The warm-up's requests are in the CPU time too: wrk's is a second long.
                    spent = cpu_seconds(target.process.pid) - before
                    warm = result["warm"] if args.load == "python" else result["rps"]
                    result["cpu_ms"] = 1000 * spent / (result["n"] + warm)
                    # How busy all cores were (servers, upstream, load generator, kernel, anything
                    # else): a rate can only grow with more workers while this is below 100%.
                    busy, total = (a - b for a, b in zip(machine_ticks(), busy_before, strict=True))
                    result["box_busy"] = 100 * busy / total if total else float("nan")
                    target.keep(c, result)
        report(direct, servers, args.concurrency)
        checks = check(direct, servers)
        if not args.no_mf:
            for target in servers:
                stop(target.process)
            rss = measure_mf_rss(upstream)
            checks.append((f"shipped mf server RSS <= {TARGETS['mf_rss_mb']:.0f} MB", rss, rss <= 160))
    finally:
        for target in servers:
            stop(target.process)
        stop(upstream_process)
    print()
    for what, value, ok in checks:
        print(f"target: {what}: {value:.2f} {'met' if ok else 'NOT met'}")
    print(f"load average after: {load_average()}")
    return 0


def report(direct: Target, servers: list[Target], levels: list[int]) -> None:
    header = f"{'conc':>4} {'target':>10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}"
    print(header + " CPU ms/req  cores busy")
    for c in levels:
        for target in [direct, *servers]:
            r = target.best[c]
            cpu = f"{r['cpu_ms']:>10.3f} {r['box_busy']:>10.0f}%" if "cpu_ms" in r else ""
            print(
                f"{c:>4} {target.name:>10} {r['n']:>6} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.0f} "
                f"{r['failures']:>6} {cpu}"
            )
    print("\nadded p50 (lmroute - upstream alone), and ratios to one worker:")
    one = servers[0]
    for c in levels:
        for target in servers:
            r = target.best[c]
            added = r["p50"] - direct.best[c]["p50"]
            rps, cpu = r["rps"] / one.best[c]["rps"], r["cpu_ms"] / one.best[c]["cpu_ms"]
            print(f"{c:>4} {target.name:>10}: added p50 {added:.2f} ms, req/s x{rps:.2f}, CPU/req x{cpu:.2f}")


def check(direct: Target, servers: list[Target]) -> list[tuple[str, float, bool]]:
    one, two = servers[0].best, servers[1].best
    checks = []
    if 64 in one:
        rps, errors = one[64]["rps"], one[64]["failures"]
        checks.append(("random, 1 worker, c=64: req/s >= 800 with 0 errors", rps, rps >= 800 and errors == 0))
        ratio = two[64]["rps"] / one[64]["rps"]
        checks.append(("--workers 2 / 1 worker req/s at c=64 >= 1.5", ratio, ratio >= 1.5))
    if 1 in one:
        added = one[1]["p50"] - direct.best[1]["p50"]
        checks.append(("added p50 at c=1 <= 1.2 ms", added, added <= 1.2))
    return checks


if __name__ == "__main__":
    stop_on_sigterm()
    sys.exit(main())
