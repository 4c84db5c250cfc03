"""Bounded load test of ``lmroute serve``: zero errors, bounded p99, no memory growth.

One command: ``python benchmarks/load_test.py --router mf`` (default: 10,000 requests at concurrency
64, at most 600 s). It starts, on 127.0.0.1, a canned-answer upstream (``fast_upstream.py``) and
``lmroute serve`` with the chosen router in front of it, each as its own process; this process is
the load generator (raw asyncio HTTP/1.1, one keep-alive connection per concurrent user). Every
request is a chat completion with a prompt of its own (real traffic rarely repeats), alternating
between two thresholds so that both models are called. The run stops when all requests are done or
the time is up, whichever comes first, and prints requests, errors, p50/p99 latency, requests per
second and the server's resident memory (RSS) after the warm-up, after the first ``--window``
requests and after the last ``--window``.

It exits 1 when a check fails: any error, p99 over ``--max-p99-ms``, or RSS after the last window
more than ``--max-growth-mib`` above RSS after the first window. A soak run is the same command
with a longer bound, e.g. ``--requests 1000000 --seconds 3600`` (see docs/reliability.md).
The load generator, the server and the upstream share the machine's cores: figures are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _args import non_negative, positive, positive_seconds, stop_on_sigterm

HERE = Path(__file__).resolve().parent
TOPICS = [
    "Explain how a hash map handles collisions",
    "Write a haiku about autumn rain",
    "Prove that the square root of two is irrational",
    "What is the capital of Australia",
    "Summarise the causes of the First World War in three sentences",
    "Give me a Python function that merges two sorted lists",
    "How many minutes are there in a leap year",
    "Translate 'good morning, how are you' into French and Spanish",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (VmRSS); NaN where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wait_ready(url: str, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            # The server's own one-line error (an unknown router, a damaged router folder) is the reason.
            lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            reason = lines[-1] if lines else "no output"
            raise SystemExit(f"lmroute serve exited with {process.returncode}: {reason} (its log: {log})")
        try:
            opener.open(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {seconds:.0f} s (its log: {log})")


def request_bytes(i: int, router: str) -> bytes:
    """Request ``i``: a distinct prompt, and thresholds 0.3 / 0.7 in turn (both models are called)."""
    prompt = f"{TOPICS[i % len(TOPICS)]} (request {i}, variant {i * 7919 % 1000})."
    threshold = "0.3" if i % 2 else "0.7"
    body = json.dumps(
        {
            "model": f"router-{router}-{threshold}",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
        }
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class Load:
    """Shared state of the concurrent users: the next request, latencies, errors, RSS samples."""

    def __init__(
        self, *, port: int, router: str, first: int, requests: int, deadline: float, pid: int, window: int
    ):
        self.port, self.router, self.requests, self.deadline = port, router, requests, deadline
        self.first, self.pid, self.window = first, pid, window
        self.next = 0
        self.done = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.rss: dict[str, float] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def finished_one(self) -> None:
        self.done += 1
        if self.done == self.window:
            self.rss["first_window"] = rss_mib(self.pid)

    async def user(self) -> None:
        reader = writer = None
        try:
            while self.next < self.requests and time.monotonic() < self.deadline:
                i = self.first + self.next
                self.next += 1
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                start = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(self.exchange(reader, writer, i), 30)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    self.error(type(exc).__name__)
                    writer.close()
                    reader = writer = None
                    self.finished_one()
                    continue
                self.latencies.append(time.perf_counter() - start)
                if status != 200 or b'"choices"' not in body:
                    self.error(f"HTTP {status}")
                self.finished_one()
        finally:
            if writer is not None:
                writer.close()

    async def exchange(self, reader, writer, i: int) -> tuple[int, bytes]:
        writer.write(request_bytes(i, self.router))
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def run_load(load: Load, concurrency: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(load.user() for _ in range(concurrency)))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default="mf", help="router name or saved router directory (default mf)")
    parser.add_argument("--requests", type=positive, default=10_000, help="requests to send (default 10000)")
    parser.add_argument("--concurrency", type=positive, default=64, help="concurrent users (default 64)")
    parser.add_argument(
        "--seconds", type=positive_seconds, default=600.0, help="stop after this long (default 600)"
    )
    parser.add_argument(
        "--warmup", type=non_negative, default=256, help="requests before measuring (default 256)"
    )
    parser.add_argument(
        "--window", type=positive, default=2000, help="RSS after the first/last N (default 2000)"
    )
    parser.add_argument("--max-p99-ms", type=float, default=2000.0, help="p99 bound (default 2000 ms)")
    parser.add_argument(
        "--max-growth-mib",
        type=float,
        default=16.0,
        help="RSS growth bound between the windows (default 16 MiB)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.requests < 2 * args.window:
        parser.error("--requests must be at least twice --window")

    logs = Path(tempfile.mkdtemp(prefix="lmroute-load-"))
    keep = False  # the server's log, kept where a failure's message names it
    try:
        keep = not run(args, logs)
    except SystemExit:  # the server did not start
        keep = True
        raise
    finally:
        if not keep:
            shutil.rmtree(logs, ignore_errors=True)
    return 1 if keep else 0


def run(args: argparse.Namespace, logs: Path) -> bool:
    """Start the upstream and the server, load them and print the figures; whether every check passed."""
    up_port, lm_port = free_port(), free_port()
    name = args.router if not Path(args.router).is_dir() else "loadtest"
    spec = args.router if name == args.router else f"{name}={args.router}"
    env = {**os.environ, "LMROUTE_API_KEYS": ""}
    base = f"http://127.0.0.1:{up_port}/v1"
    serve = [sys.executable, "-m", "lmroute.cli", "serve", "--routers", spec, "--port", str(lm_port)]
    serve += ["--strong-base-url", base, "--strong-model", "strong-model"]
    serve += ["--weak-base-url", base, "--weak-model", "weak-model"]
    serve += ["--log-level", "warning", "--no-fallback"]
    processes: list[subprocess.Popen] = []
    try:
        upstream = [sys.executable, str(HERE / "fast_upstream.py"), str(up_port)]
        processes.append(subprocess.Popen(upstream, stdout=subprocess.DEVNULL))
        with open(logs / "serve.log", "wb") as log:
            server = subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(server)
        wait_ready(f"http://127.0.0.1:{lm_port}/health", server, 180, logs / "serve.log")
        print(
            f"lmroute serve (pid {server.pid}, router {args.router}) on 127.0.0.1:{lm_port} -> canned "
            f"upstream on {up_port}; {args.requests} requests at concurrency {args.concurrency}, "
            f"at most {args.seconds:g} s; {os.cpu_count()} cores",
            flush=True,
        )
        warm = Load(
            port=lm_port,
            router=name,
            first=0,
            requests=args.warmup,
            deadline=time.monotonic() + 60,
            pid=server.pid,
            window=args.warmup + 1,
        )
        asyncio.run(run_load(warm, args.concurrency))
        rss_start = rss_mib(server.pid)
        load = Load(
            port=lm_port,
            router=name,
            # after the warm-up's prompts: a prompt it sent would be answered from the server's LRU
            # embedding cache, without the embedding an embedding router's request costs
            first=args.warmup,
            requests=args.requests,
            deadline=time.monotonic() + args.seconds,
            pid=server.pid,
            window=args.window,
        )
        elapsed = asyncio.run(run_load(load, args.concurrency))
        rss_end = rss_mib(server.pid)
        alive = server.poll() is None
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    ms = np.array(load.latencies) * 1000 if load.latencies else np.array([np.nan])
    errors = sum(load.errors.values()) + (0 if alive else 1)
    figures = {
        "router": args.router,
        "requests": load.done,
        "planned": args.requests,
        "concurrency": args.concurrency,
        "errors": errors,
        "error_kinds": load.errors,
        "seconds": round(elapsed, 2),
        "rps": round(load.done / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "rss_start_mib": round(rss_start, 1),
        "rss_first_window_mib": round(load.rss.get("first_window", float("nan")), 1),
        "rss_end_mib": round(rss_end, 1),
        "window": args.window,
    }
    growth = figures["rss_end_mib"] - figures["rss_first_window_mib"]
    checks = {
        "zero errors": errors == 0,
        f"p99 <= {args.max_p99_ms:g} ms": figures["p99_ms"] <= args.max_p99_ms,
        f"RSS growth <= {args.max_growth_mib:g} MiB": growth <= args.max_growth_mib,
    }
    figures["rss_growth_mib"] = round(growth, 1)
    figures["passed"] = all(checks.values())
    print(
        f"requests {figures['requests']} of {args.requests} in {elapsed:.1f} s ({figures['rps']} req/s), "
        f"errors {errors} {load.errors or ''}"
    )
    print(f"latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms")
    print(
        f"server RSS: after warm-up {figures['rss_start_mib']} MiB, after the first {args.window} "
        f"{figures['rss_first_window_mib']} MiB, after the last {args.window} {figures['rss_end_mib']} MiB "
        f"(growth {growth:+.1f} MiB)"
    )
    for check, ok in checks.items():
        print(f"check {check}: {'ok' if ok else 'FAILED'}")
    if not alive:
        print(f"the server died; its log: {logs / 'serve.log'}")
    elif not figures["passed"]:
        print(f"the server's log: {logs / 'serve.log'}")
    print("RESULT " + json.dumps(figures), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures["passed"]


if __name__ == "__main__":
    stop_on_sigterm()
    sys.exit(main())
