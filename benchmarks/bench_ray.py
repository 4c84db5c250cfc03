"""lmroute on Ray Serve: throughput and latency with 1 and 2 scoring replicas, in one run.

One command: ``python benchmarks/bench_ray.py`` (options: ``--router``, ``--requests``,
``--concurrency``, ``--seconds``). It starts a local Ray cluster in this process (``ray.init`` on
this machine), a canned-answer upstream (``fast_upstream.py``), deploys lmroute with one ingress
replica and 1 scoring replica, drives it with the same raw-HTTP load generator as
``bench_server.py``, redeploys with 2 scoring replicas, drives it again, and prints both with the
ratio, and ``lmroute serve`` (one process) alongside as the baseline. On a 2-core machine a second
replica adds no cores, so no gain is expected: the figure says what Ray's hops cost here.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from _args import positive, positive_seconds, stop_on_sigterm
from bench_server import (
    HERE,
    SRC,
    chat_request,
    free_port,
    load_average,
    run_load,
    start_server,
    stop,
    wait_ready,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default="random")
    parser.add_argument("--requests", type=positive, default=3000)
    parser.add_argument("--concurrency", type=positive, default=32)
    parser.add_argument("--seconds", type=positive_seconds, default=20.0)
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    os.environ["PYTHONPATH"] = str(SRC)  # Ray's workers import lmroute from this tree
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A cluster of this process on loopback: no token file written to ~/.ray for it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from lmroute.cluster.config import RayConfig, ScorerConfig
    from lmroute.cluster.serve import run_serve
    from lmroute.serving.config import build_config

    print(f"load average before: {load_average()}; {os.cpu_count()} cores")
    up_port = free_port()
    upstream_process = subprocess.Popen(
        [sys.executable, str(HERE / "fast_upstream.py"), str(up_port)], stdout=subprocess.DEVNULL
    )
    upstream = f"http://127.0.0.1:{up_port}/v1"
    request = chat_request(f"router-{args.router}-0.5")
    rows = []
    single = free_port()
    baseline = start_server(SRC, single, upstream, router=args.router)
    try:
        wait_ready(f"http://127.0.0.1:{single}/health", baseline)
        rows.append(("lmroute serve", run_load(single, [request] * args.requests, **_load(args))))
        stop(baseline)
        # "local": a new cluster in this process, never one a stale /tmp/ray file points at
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
        port = free_port()
        for replicas in (1, 2):
            config = build_config(
                overrides={
                    tier: {"base_url": upstream, "model": f"{tier}-model"} for tier in ("strong", "weak")
                }
                | {"routers": [args.router], "server": {"port": port, "log_level": "warning"}},
                api_keys=[],
            )
            ray_config = RayConfig(scorer=ScorerConfig(num_replicas=replicas))
            run_serve(config, ray_config, blocking=False)
            wait_ready(f"http://127.0.0.1:{port}/health", upstream_process, seconds=300)
            rows.append((f"Ray, {replicas} scorer", run_load(port, [request] * args.requests, **_load(args))))
    finally:
        stop(baseline)
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        stop(upstream_process)
    print(f"\nrouter {args.router}, concurrency {args.concurrency}")
    print(f"{'target':>16} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}")
    for name, r in rows:
        print(f"{name:>16} {r['n']:>6} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.0f} {r['failures']:>6}")
    one, two = rows[1][1], rows[2][1]
    print(f"\n2 scoring replicas / 1: req/s x{two['rps'] / one['rps']:.2f}")
    print(f"Ray (1 scorer) / lmroute serve: req/s x{one['rps'] / rows[0][1]['rps']:.2f}")
    print(f"load average after: {load_average()}")
    return 0


def _load(args: argparse.Namespace) -> dict:
    return {"concurrency": args.concurrency, "seconds": args.seconds}


if __name__ == "__main__":
    stop_on_sigterm()
    sys.exit(main())
