"""The bounded load test (``benchmarks/load_test.py``) as a test: 10,000 requests at concurrency 64
against ``lmroute serve`` in its own process, from a load generator in another, on 127.0.0.1.

Zero errors, p99 within the bound, and server RSS after the last 2,000 requests within 16 MiB of RSS
after the first 2,000. Run with ``-s`` to see the figures; they are also in the test's report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


def shipped(name: str) -> bool:
    from lmroute.exceptions import CheckpointError
    from lmroute.routers._embedding_pair import shipped_checkpoint

    try:
        shipped_checkpoint(name)
    except CheckpointError:
        return False
    return True


@pytest.mark.parametrize("router", ["random", "mf"])
def test_ten_thousand_requests_at_concurrency_64(router, tmp_path, record_property):
    if router == "mf" and not shipped("mf"):
        pytest.skip("no shipped mf checkpoint in this tree yet (src/lmroute/checkpoints/mf)")
    out = tmp_path / "figures.json"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--router",
        router,
        "--requests",
        "10000",
        "--concurrency",
        "64",
        "--seconds",
        "400",
        "--window",
        "2000",
        "--max-p99-ms",
        "2000",
        "--max-growth-mib",
        "16",
        "--json",
        str(out),
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    print(run.stdout)
    assert out.exists(), run.stdout + run.stderr
    figures = json.loads(out.read_text())
    for key in ("requests", "errors", "p50_ms", "p99_ms", "rps", "rss_start_mib", "rss_end_mib"):
        record_property(key, figures[key])
    assert figures["requests"] == 10_000 and figures["errors"] == 0, run.stdout
    assert figures["p99_ms"] <= 2000, run.stdout
    assert figures["rss_end_mib"] - figures["rss_first_window_mib"] <= 16, run.stdout
    assert figures["passed"] and run.returncode == 0, run.stdout + run.stderr
