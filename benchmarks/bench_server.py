"""The latency lmroute's server adds, and its throughput, next to calling the upstream directly.

One command: ``python benchmarks/bench_server.py`` (options: ``--requests``, ``--seconds``,
``--concurrency``). It starts, on 127.0.0.1, a canned-answer upstream (``fast_upstream.py``) and
``lmroute serve`` with the ``random`` router in front of it, each as its own process, and this
process is the load generator: a raw-asyncio HTTP/1.1 client with one keep-alive connection per
concurrent user, bounded in requests and seconds per level. For each concurrency level it measures
the upstream alone, then the same requests through lmroute, and prints p50/p99 latency, the
difference (the added latency), and requests per second.

Targets on 2 cores: added p50 <= 3 ms at concurrency 1, >= 400 requests/s at concurrency 64. The
load generator, the server and the upstream share those cores, so the figures are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BODY = {
    "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    "max_tokens": 16,
    "temperature": 0.0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process so far; NaN where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[:3]} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {seconds:.0f} s")


async def _user(port: int, request: bytes, n: int, deadline: float, latencies: list[float]) -> int:
    """One keep-alive connection sending ``n`` requests one after another; returns failures."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    failures = 0
    try:
        for _ in range(n):
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


async def load(port: int, model: str, *, concurrency: int, requests: int, seconds: float) -> dict:
    payload = json.dumps({**BODY, "model": model}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )
    latencies: list[float] = []
    per_user = max(1, requests // concurrency)
    # A short warm-up: connections, the server's first-call paths.
    await asyncio.gather(*(_user(port, request, 5, time.perf_counter() + 5, []) for _ in range(concurrency)))
    start = time.perf_counter()
    deadline = start + seconds
    failures = await asyncio.gather(
        *(_user(port, request, per_user, deadline, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "n": len(latencies),
        "failures": sum(failures),
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--requests", type=int, default=3000, help="requests per level (default 3000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time limit per level and target")
    args = parser.parse_args()

    up_port, lm_port = free_port(), free_port()
    env = {**os.environ, "LMROUTE_API_KEYS": ""}
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "fast_upstream.py"), str(up_port)], stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{up_port}/v1"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmroute.cli",
            "serve",
            "--routers",
            "random",
            "--port",
            str(lm_port),
            "--strong-base-url",
            base,
            "--strong-model",
            "strong-model",
            "--weak-base-url",
            base,
            "--weak-model",
            "weak-model",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        time.sleep(0.2)
        wait_ready(f"http://127.0.0.1:{lm_port}/health", server)
        fast = ", ".join(m for m in ("uvloop", "httptools", "aiohttp") if importlib.util.find_spec(m))
        print(
            f"lmroute {lm_port} -> upstream {up_port}; random router at threshold 0.5; "
            f"{os.cpu_count()} cores; fast paths installed: {fast or 'none'}"
        )
        widths = {"conc": 4, "target": 8, "n": 6, "p50 ms": 8, "p99 ms": 8, "req/s": 8}
        print(" ".join(f"{c:>{w}}" for c, w in widths.items()), "server CPU ms/req")
        rows = []
        for c in args.concurrency:
            direct = asyncio.run(
                load(up_port, "strong-model", concurrency=c, requests=args.requests, seconds=args.seconds)
            )
            before = cpu_seconds(server.pid)
            routed = asyncio.run(
                load(
                    lm_port, "router-random-0.5", concurrency=c, requests=args.requests, seconds=args.seconds
                )
            )
            # Warm-up requests (5 per connection) are in the CPU time too.
            routed["cpu_ms"] = 1000 * (cpu_seconds(server.pid) - before) / (routed["n"] + 5 * c)
            for name, r in (("direct", direct), ("lmroute", routed)):
                failed = f"  ({r['failures']} failed)" if r["failures"] else ""
                cpu = f"{r['cpu_ms']:>18.2f}" if "cpu_ms" in r else ""
                row = f"{c:>4} {name:>8} {r['n']:>6} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.0f}"
                print(f"{row}{cpu}{failed}")
            rows.append((c, direct, routed))
        print("\nadded by lmroute (lmroute - direct, same run):")
        print(f"{'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'share of direct req/s':>22}")
        for c, direct, routed in rows:
            print(
                f"{c:>4} {routed['p50'] - direct['p50']:>8.2f} {routed['p99'] - direct['p99']:>8.2f} "
                f"{routed['rps']:>8.0f} {routed['rps'] / direct['rps']:>22.2f}"
            )
        by_c = {c: (d, r) for c, d, r in rows}
        if 1 in by_c:
            added = by_c[1][1]["p50"] - by_c[1][0]["p50"]
            print(
                f"\ntarget: added p50 at concurrency 1 <= 3 ms: {added:.2f} ms "
                f"{'met' if added <= 3 else 'NOT met'}"
            )
        if 64 in by_c:
            rps = by_c[64][1]["rps"]
            print(f"target: >= 400 req/s at concurrency 64: {rps:.0f} {'met' if rps >= 400 else 'NOT met'}")
    finally:
        for process in (server, upstream):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
