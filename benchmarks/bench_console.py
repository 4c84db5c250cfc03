"""How fast the web console's first load is, on loopback, in headless Chromium.

One command: ``python benchmarks/bench_console.py`` (option: ``--loads``). It starts, on 127.0.0.1,
two fake upstreams and an lmroute server with the ``length`` router (in this process, as the tests
do), then opens ``/ui`` in a fresh browser context (empty cache) ``--loads`` times and measures

- load: the page and its scripts and styles loaded (the navigation's ``loadEventEnd``);
- first data: the Live view drawn from the server's ``/metrics`` (the first tile on screen).

The baseline, measured in the same run and the same way, is a fresh context loading ``/health``
(one small JSON answer): the ratio says what the console costs beyond any request to the server.
Target: first load <= 1 s. Needs Chromium (``bash .ci/install-chromium.sh``) and Playwright (test extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _args import positive

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import chromium_path
from fake_openai import running_upstreams, serve_in_thread

from lmroute.routers.length import LengthRouter
from lmroute.serving.app import create_app


def _load(browser, url: str, *, ready: str | None) -> tuple[float, float]:
    """(load ms, first data ms) of ``url`` in a fresh context; first data is when ``ready`` is visible."""
    context = browser.new_context()
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url)
    if ready is not None:
        page.locator(ready).wait_for()
    first_data = 1000 * (time.perf_counter() - start)
    load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    context.close()
    return load, first_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=positive, default=20)
    args = parser.parse_args()
    try:  # what is missing, in one line, before any server starts
        from playwright.sync_api import sync_playwright

        chromium = chromium_path()
    except ImportError:
        raise SystemExit('Playwright is not installed: pip install -e ".[test]"') from None
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None

    with (
        running_upstreams() as upstreams,
        serve_in_thread(create_app(upstreams.config(), routers={"length": LengthRouter()})) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        _load(browser, f"{url}/ui", ready="[data-testid=live-requests]")  # warm up the server and browser
        base = [_load(browser, f"{url}/health", ready=None) for _ in range(args.loads)]
        ui = [_load(browser, f"{url}/ui", ready="[data-testid=live-requests]") for _ in range(args.loads)]
        browser.close()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.loads} fresh loads each")
    base_load = statistics.median(b[0] for b in base)
    for label, i in (("load", 0), ("first data", 1)):
        values = sorted(u[i] for u in ui)
        median = statistics.median(values)
        print(
            f"/ui {label:>10}: median {median:7.1f} ms, max {values[-1]:7.1f} ms "
            f"({median / base_load:.1f}x /health's load of {base_load:.1f} ms)"
        )
    worst = max(u[1] for u in ui)
    verdict = "met" if worst <= 1000 else "NOT met"
    print(f"target first load <= 1000 ms: {verdict} (worst first data {worst:.0f} ms)")


if __name__ == "__main__":
    main()
