"""The web console (/ui) in a real browser: headless Debian Chromium driven by Playwright.

A server with two fake upstreams (``fake_openai``) and the ``length`` and ``random`` routers runs on
loopback. The tests open each view, check what it shows against the API (``/v1/route``'s scores,
``/metrics``' counters), feed it bad input, and fail on any console error. Screenshots go to the
test's temporary folder, and also to ``$LMROUTE_CONSOLE_SCREENSHOTS`` when set (the docs' images:
``LMROUTE_CONSOLE_SCREENSHOTS=docs/images pytest tests/serving/test_console_browser.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from _fake_embedder import HashEmbedder
from browser import chromium_path, watch
from fake_openai import serve_in_thread
from serve_process import metric_value

from lmroute.cli import main
from lmroute.data.battles import Battle
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter
from lmroute.routers.random import RandomRouter
from lmroute.serving.app import create_app
from lmroute.serving.config import build_config
from lmroute.workflows.n_models import (
    NModelExperimentConfig,
    run_n_model_experiment,
    write_n_model_experiment,
)

pytestmark = pytest.mark.network_loopback

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the test extra")

ROUTERS = {"length": LengthRouter(), "random": RandomRouter()}
THRESHOLDS = {"length": [0.01, 0.9]}
PROMPT = "Name three fruits."
TO_STRONG, TO_WEAK = "router-length-0.01", "router-length-0.9"
#: Long enough for a poll of /metrics (every 2 s) on a busy machine.
WAIT_MS = 15_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(upstreams):
    with serve_in_thread(create_app(upstreams.config(thresholds=THRESHOLDS), routers=ROUTERS)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.console_log = watch(page)
    yield page
    context.close()
    assert page.console_log.errors == []


def screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=tmp_path / f"console-{name}.png", full_page=True)
    folder = os.environ.get("LMROUTE_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(folder) / f"console-{name}.png", full_page=True)


def metrics_text(url: str) -> str:
    return httpx.get(f"{url}/metrics", trust_env=False).text


def value(page, testid: str) -> float:
    return float(page.get_by_test_id(testid).get_attribute("data-value"))


def wait_value(page, testid: str, expected: float) -> None:
    """Wait until the element's data-value is ``expected`` (the Live view updates by itself)."""
    page.wait_for_function(
        "([id, v]) => { const e = document.querySelector(`[data-testid='${id}']`);"
        " return e !== null && Number(e.dataset.value) === v; }",
        arg=[testid, expected],
        timeout=WAIT_MS,
    )


def chat(url: str, model: str, text: str = PROMPT) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30, trust_env=False)


def route(url: str, body: dict) -> dict:
    response = httpx.post(f"{url}/v1/route", json=body, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()


def histogram_quantile(q: float, text: str, name: str, **labels: str) -> float:
    """Prometheus's histogram_quantile over the cumulative buckets of ``name`` with ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{name}_bucket" and all(s.labels.get(k) == v for k, v in labels.items())
    )
    rank = q * buckets[-1][1]
    i = next(k for k, (_, count) in enumerate(buckets) if count >= rank)
    if i == len(buckets) - 1:
        return buckets[-2][0]
    lower, below = buckets[i - 1] if i else (0.0, 0.0)
    upper, count = buckets[i]
    return lower + (upper - lower) * (rank - below) / (count - below)


def test_first_load_shows_the_live_view(page, server):
    response = page.goto(f"{server}/ui")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_test_id("live-requests").wait_for()
    load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    print(f"first load of /ui: {load_ms:.0f} ms (loopback; timing figures: benchmarks/bench_console.py)")
    assert page.get_by_role("tab", name="Live").get_attribute("aria-selected") == "true"
    assert page.get_by_test_id("router-models").inner_text().count("router-") == 3


def test_playground_scores_equal_the_route_endpoint_and_the_answer_shows(page, server, tmp_path):
    page.goto(f"{server}/ui#playground")
    page.locator("#prompt").fill(PROMPT)
    page.get_by_role("button", name="Score with every router").click()
    page.get_by_test_id("scores").wait_for()
    models = [m["id"] for m in httpx.get(f"{server}/v1/models", trust_env=False).json()["data"]]
    router_models = [m for m in models if m.startswith("router-")]
    assert len(router_models) == 3
    for model in router_models:
        api = route(server, {"model": model, "prompt": PROMPT})
        assert value(page, f"score:{model}") == api["score"]
        assert page.get_by_test_id(f"decision:{model}").get_attribute("data-value") == api["decision"]
    assert value(page, f"score:{TO_STRONG}") == pytest.approx(len(PROMPT) / (len(PROMPT) + 500))

    page.locator("#send-model").select_option(TO_STRONG)
    page.get_by_role("button", name="Send").click()
    assert page.get_by_test_id("answer-text").inner_text() == "strong says hi"
    assert page.get_by_test_id("answered-by").inner_text() == "big-model"
    assert page.get_by_test_id("answer-decision").inner_text() == "strong"
    assert re.fullmatch(r"\d+\.\d\d ms", page.get_by_test_id("answer-routing").inner_text())
    screenshot(page, tmp_path, "playground")

    page.locator("#send-model").select_option(TO_WEAK)
    page.get_by_role("button", name="Send").click()
    page.get_by_test_id("answered-by").filter(has_text="small-model").wait_for()
    assert page.get_by_test_id("answer-text").inner_text() == "weak says hi"


def test_playground_conversation(page, server):
    page.goto(f"{server}/ui#playground")
    page.get_by_label("Conversation (JSON messages)").check()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    page.locator("#prompt").fill(json.dumps(messages))
    page.get_by_role("button", name="Score with every router").click()
    page.get_by_test_id("scores").wait_for()
    api = route(server, {"model": TO_WEAK, "messages": messages})
    assert value(page, f"score:{TO_WEAK}") == api["score"]


def test_playground_conversation_of_content_parts(page, server):
    """Messages whose content is a list of parts, as OpenAI's SDKs write them, have user text."""
    page.goto(f"{server}/ui#playground")
    page.get_by_label("Conversation (JSON messages)").check()
    parts = [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    messages = [{"role": "user", "content": parts}]
    page.locator("#prompt").fill(json.dumps(messages))
    page.get_by_role("button", name="Score with every router").click()
    page.get_by_test_id("scores").wait_for()
    assert value(page, f"score:{TO_WEAK}") == route(server, {"model": TO_WEAK, "messages": messages})["score"]
    page.locator("#send-model").select_option(TO_STRONG)
    page.get_by_role("button", name="Send").click()
    assert page.get_by_test_id("answer-text").inner_text() == "strong says hi"
    assert page.locator("#playground-message").inner_text() == ""


@pytest.fixture(scope="module")
def fleet(upstreams):
    """A server of three priced models (two fake upstreams, ``mid`` sharing the weak one's) routed by
    an ``mf`` that knows them."""
    names = ["top", "mid", "low"]
    rng = np.random.default_rng(0)
    battles = []
    for i in range(120):  # the earlier model of a pair wins
        a, b = sorted(rng.choice(3, size=2, replace=False))
        battles.append(Battle(f"hello w{i % 9} {i}", names[a], names[b], "model_a"))
    fast = {"dim": 8, "epochs": 5, "batch_size": 32, "noise": 0.02, "ties": "half"}
    mf = MFRouter(embedder=HashEmbedder(32), strong_model="top", weak_model="low", **fast).fit(battles)
    urls = {"top": upstreams.urls["strong"], "mid": upstreams.urls["weak"], "low": upstreams.urls["weak"]}
    prices = {"top": 5.0, "mid": 1.0, "low": 0.1}
    models = [
        {
            "name": n,
            "base_url": urls[n],
            "model": f"{n}-upstream",
            "max_retries": 0,
            "timeout": 2.0,
            "price": {"input_per_1m": prices[n], "output_per_1m": prices[n]},
        }
        for n in names
    ]
    config = build_config(overrides={"models": models, "routers": ["mf"]})
    with serve_in_thread(create_app(config, routers={"mf": mf})) as url:
        yield url


def test_playground_scores_and_sends_with_an_n_model_policy(page, fleet):
    """/v1/models lists no N-model policy name (router-mf-lambda-<value>): typed by hand, it is
    scored beside the listed routers, its qualities and costs under details, and sent to."""
    policy = "router-mf-lambda-0"  # the best predicted model, whatever it costs
    api = route(fleet, {"model": policy, "prompt": PROMPT})
    page.goto(f"{fleet}/ui#playground")
    page.locator("#prompt").fill(PROMPT)
    page.locator("#send-model-name").fill(policy)
    assert page.locator("#send-model").is_disabled()
    page.get_by_role("button", name="Score with every router").click()
    decision = page.get_by_test_id(f"decision:{policy}")
    assert decision.get_attribute("data-value") == api["decision"]
    assert decision.inner_text() == f"{api['decision']} → {api['routed_model']}"
    details = page.get_by_test_id("scores").locator("tr", has=decision).locator("td").last.inner_text()
    assert json.loads(details)["candidates"] == api["candidates"]  # each model's quality and cost
    assert page.get_by_test_id("score:router-mf-0.5").is_visible()  # the listed router too
    page.get_by_role("button", name="Send").click()
    assert page.get_by_test_id("answer-decision").inner_text() == api["decision"]
    assert page.get_by_test_id("answered-by").inner_text() == api["decision"]
    said = "strong says hi" if api["decision"] == "top" else "weak says hi"
    assert page.get_by_test_id("answer-text").inner_text() == said
    page.locator("#send-model-name").fill("")
    assert page.locator("#send-model").is_enabled()


def test_playground_shows_a_model_named_beyond_ascii_as_named(page, upstreams):
    # The server put "千问" in x-lmroute-model as it was: a 500 once the model had answered. It now
    # sends it percent-encoded, which the answer's facts decode.
    models = [
        {
            "name": name,
            "base_url": upstreams.urls[tier],
            "model": f"{tier}-upstream",
            "price": {"input_per_1m": price, "output_per_1m": price},
        }
        for name, tier, price in (("千问", "strong", 2.0), ("low", "weak", 1.0))
    ]
    config = build_config(overrides={"models": models, "routers": ["length"]})
    with serve_in_thread(create_app(config, routers={"length": LengthRouter()})) as url:
        page.goto(f"{url}/ui#playground")
        page.locator("#prompt").fill(PROMPT)
        page.locator("#send-model-name").fill("千问")
        page.get_by_role("button", name="Send").click()
        assert page.get_by_test_id("answer-text").inner_text() == "strong says hi"
        assert page.get_by_test_id("answered-by").inner_text() == "千问"
        assert page.get_by_test_id("answer-decision").inner_text() == "千问"


def test_playground_bad_input_shows_a_message(page, server):
    page.console_log.expected_statuses["/v1/"] = {413}
    page.goto(f"{server}/ui#playground")
    message = page.locator("#playground-message")
    page.get_by_role("button", name="Score with every router").click()
    assert "The prompt is empty" in message.inner_text()
    page.get_by_role("button", name="Send").click()
    assert "The prompt is empty" in message.inner_text()

    page.locator("#prompt").fill("x" * (1 << 20) + "y")  # a 1 MB paste: over the server's body limit
    page.get_by_role("button", name="Score with every router").click()
    page.get_by_test_id("scores").wait_for()
    assert "larger than this server's limit" in message.inner_text()
    page.get_by_role("button", name="Send").click()
    page.locator("#playground-message", has_text="The request failed").wait_for()
    assert "larger than this server's limit" in message.inner_text()

    page.get_by_label("Conversation (JSON messages)").check()
    page.locator("#prompt").fill("[{'role': 'user'")
    page.get_by_role("button", name="Score with every router").click()
    assert "The conversation is not JSON" in message.inner_text()
    page.locator("#prompt").fill('[{"role": "system", "content": "only a system message"}]')
    page.get_by_role("button", name="Send").click()
    assert "no user message" in message.inner_text()
    assert page.locator("header h1").is_visible()


@pytest.mark.parametrize(
    ("button", "path"), [("Send", "chat/completions"), ("Score with every router", "route")]
)
def test_playground_sends_once_while_a_request_is_in_flight(page, server, button, path):
    """A double click on a slow server sent (and paid for) the request twice, and the slower answer
    could land last; the button now waits for its answer."""
    held = []
    page.route(f"**/v1/{path}", lambda route: held.append(route))
    page.goto(f"{server}/ui#playground")
    page.locator("#prompt").fill(PROMPT)
    page.locator("#send-model").select_option(TO_STRONG)
    page.get_by_role("button", name=button, exact=True).dblclick()
    page.wait_for_timeout(500)  # time for a second click's requests to be made
    per_click = 1 if path == "chat/completions" else 3  # Score asks every router model
    assert len(held) == per_click
    sync_api.expect(page.get_by_role("button", name=button, exact=True)).to_be_disabled()
    for request in held:
        request.continue_()
    sync_api.expect(page.get_by_role("button", name=button, exact=True)).to_be_enabled()
    if path == "route":
        api = route(server, {"model": TO_STRONG, "prompt": PROMPT})
        assert value(page, f"score:{TO_STRONG}") == api["score"]
    else:
        assert page.get_by_test_id("answer-text").inner_text() == "strong says hi"


def test_playground_says_when_an_answer_is_not_json(page, server):
    """A proxy in front of the server (its sign-in page after a session expired) answers 200 with
    HTML: scoring and sending say so, rather than hang on "Scoring..." or show an empty answer."""
    login = {"status": 200, "body": "<html>Sign in</html>", "content_type": "text/html"}
    page.route("**/v1/route", lambda route: route.fulfill(**login))
    page.route("**/v1/chat/completions", lambda route: route.fulfill(**login))
    page.goto(f"{server}/ui#playground")
    page.locator("#prompt").fill(PROMPT)
    page.get_by_role("button", name="Score with every router").click()
    error = page.get_by_test_id(f"score-error:{TO_STRONG}")
    sync_api.expect(error).to_contain_text("text/html, not JSON")
    assert "text/html, not JSON" in page.locator("#playground-message").inner_text()
    page.locator("#send-model").select_option(TO_STRONG)
    page.get_by_role("button", name="Send").click()
    message = page.locator("#playground-message", has_text="The request failed")
    message.wait_for()
    assert "v1/chat/completions answered HTTP 200 with text/html" in message.inner_text()
    assert page.locator("#answer").inner_text() == ""


def test_live_numbers_equal_the_metrics(page, server, upstreams, tmp_path):
    before = metrics_text(server)
    page.goto(f"{server}/ui")
    page.get_by_test_id("live-requests").wait_for()
    sent = {TO_STRONG: 3, TO_WEAK: 2}
    for model, n in sent.items():
        for _ in range(n):
            assert chat(server, model).status_code == 200
    upstreams.weak.mode = "status"  # one weak answer fails: the strong model answers instead
    assert chat(server, TO_WEAK).headers["x-lmroute-fallback"] == "true"
    upstreams.weak.mode = "ok"
    after = metrics_text(server)

    requests = metric_value(after, "lmroute_requests_total")
    assert requests == metric_value(before, "lmroute_requests_total") + 6
    wait_value(page, "live-requests", requests)
    for model in ("big-model", "small-model"):
        assert value(page, f"routed:{model}") == metric_value(after, "lmroute_requests_total", model=model)
        calls = metric_value(after, "lmroute_upstream_latency_seconds_count", model=model)
        assert value(page, f"upstream-calls:{model}") == calls
        for q in (0.5, 0.99):
            shown = value(page, f"upstream-p{round(q * 100)}:{model}")
            assert shown == pytest.approx(
                histogram_quantile(q, after, "lmroute_upstream_latency_seconds", model=model), rel=1e-9
            )
    assert value(page, "live-fallbacks") == metric_value(after, "lmroute_fallbacks_total") >= 1
    assert value(page, "live-upstream-errors") == metric_value(after, "lmroute_upstream_errors_total") >= 1
    assert value(page, "endpoint:chat") == metric_value(after, "lmroute_requests_total", endpoint="chat")
    assert value(page, "decisions:length") == metric_value(
        after, "lmroute_routing_latency_seconds_count", router="length"
    )
    page.locator("#live-rate path").wait_for()  # the rate drawn after three readings
    screenshot(page, tmp_path, "live")


def test_live_view_keeps_saying_why_the_routers_are_not_listed(page, server):
    """/v1/models failing (not for a key) stays in the banner: the good reads of /metrics after it
    used to clear it at once, leaving "No router listed (is an API key needed?)" alone."""
    page.console_log.expected_statuses["/v1/models"] = {500}
    failure = {"error": {"message": "models are down", "type": "server_error", "param": None, "code": None}}
    page.route("**/v1/models", lambda route: route.fulfill(status=500, json=failure))
    page.goto(f"{server}/ui")
    page.get_by_test_id("live-requests").wait_for()
    page.wait_for_function("document.querySelector('#live-updated').textContent !== ''")
    assert page.locator("#banner").inner_text() == "Could not list the routers: models are down"
    before = page.locator("#live-updated").inner_text()
    page.wait_for_function("t => document.querySelector('#live-updated').textContent !== t", arg=before)
    assert page.locator("#banner").is_visible()


def test_live_view_shows_metrics_it_does_not_know(page, server):
    """Models, gauges and counters a later server adds (N models, drift, spend) show without changes."""
    extra = (
        "# HELP lmroute_requests Requests\n# TYPE lmroute_requests counter\n"
        'lmroute_requests_total{endpoint="chat",router="mf",model="model-c",status="200"} 7.0\n'
        "# HELP lmroute_drift_state Drift of the score distribution (0 ok, 1 drifting)\n"
        "# TYPE lmroute_drift_state gauge\n"
        'lmroute_drift_state{router="mf"} 1.0\n'
        "# HELP lmroute_spend_dollars Estimated spend\n# TYPE lmroute_spend_dollars counter\n"
        'lmroute_spend_dollars_total{model="model-c"} 0.25\n'
        "# HELP lmroute_target_share Strong-call share target\n# TYPE lmroute_target_share gauge\n"
        'lmroute_target_share{router="mf"} 0.3\n'
    )
    page.route("**/metrics", lambda route: route.fulfill(status=200, body=extra, content_type="text/plain"))
    page.goto(f"{server}/ui")
    wait_value(page, "routed:model-c", 7)
    assert value(page, "live-spend") == 0.25
    assert page.get_by_test_id("live-drift").inner_text() == "1"
    assert value(page, "other:lmroute_drift_state:router=mf") == 1
    assert value(page, "other:lmroute_target_share:router=mf") == 0.3
    assert "lmroute_target_share" in page.locator("#live-routers").inner_text()


def test_live_spend_is_the_estimated_spend_of_n_priced_models(page, upstreams):
    """Issue 14's per-model spend counter (lmroute_estimated_spend_usd) fills the spend tile."""
    priced = {"strong": ("big-model", 5.0, 15.0), "weak": ("small-model", 0.1, 0.4)}
    models = [
        {
            "name": model,
            "base_url": upstreams.urls[tier],
            "model": model,
            "max_retries": 0,
            "timeout": 2.0,
            "price": {"input_per_1m": inp, "output_per_1m": out},
        }
        for tier, (model, inp, out) in priced.items()
    ]
    config = build_config(overrides={"models": models, "routers": ["length"]})
    with serve_in_thread(create_app(config, routers=ROUTERS)) as url:
        page.goto(f"{url}/ui")
        page.get_by_test_id("live-requests").wait_for()
        for model in (TO_STRONG, TO_STRONG, TO_WEAK):
            assert chat(url, model).status_code == 200
        text = metrics_text(url)
        spend = metric_value(text, "lmroute_estimated_spend_usd_total")
        per_model = [
            metric_value(text, "lmroute_estimated_spend_usd_total", model=m) for m, _, _ in priced.values()
        ]
        assert spend == pytest.approx(sum(per_model)) and per_model[0] > 0
        page.wait_for_function(
            "v => { const e = document.querySelector(\"[data-testid='live-spend']\");"
            " return e !== null && Math.abs(Number(e.dataset.value) - v) <= 1e-12; }",
            arg=spend,
            timeout=WAIT_MS,
        )


def test_a_server_without_prices_exports_no_spend(page, server):
    assert "lmroute_estimated_spend_usd" not in metrics_text(server)
    page.goto(f"{server}/ui")
    page.get_by_test_id("live-spend").wait_for()
    assert page.get_by_test_id("live-spend").inner_text() == "not exported"


def test_a_slow_metrics_read_is_not_overlapped_by_the_next_poll(page, server):
    """On a server slower than the 2 s poll, reads of /metrics piled up, each answered late."""
    held = []
    page.route("**/metrics", lambda route: held.append(route))
    page.goto(f"{server}/ui")
    page.wait_for_timeout(5_000)  # two more polls' time
    assert len(held) == 1
    held.pop().continue_()
    page.get_by_test_id("live-requests").wait_for()
    page.unroute("**/metrics")
    page.wait_for_function(
        "() => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.endsWith('/metrics')).length >= 2"
    )  # polling goes on after the slow read


def test_live_view_names_the_routers_the_drift_detector_flags(page, server):
    """The server's own drift gauges (lmroute.control) read as a state, not as numbers."""
    feed = (
        "# HELP lmroute_drift_drifted 1 from a drift alarm until a new reference is set\n"
        "# TYPE lmroute_drift_drifted gauge\n"
        'lmroute_drift_drifted{router="mf"} 1.0\nlmroute_drift_drifted{router="length"} 0.0\n'
        "# HELP lmroute_control_threshold Current threshold of each target mode\n"
        "# TYPE lmroute_control_threshold gauge\n"
    )
    served = {"body": feed}
    page.route(
        "**/metrics", lambda route: route.fulfill(status=200, body=served["body"], content_type="text/plain")
    )
    page.goto(f"{server}/ui")
    drift = page.get_by_test_id("live-drift")
    sync_api.expect(drift).to_have_text("drifted: mf")
    # a family without samples (no target mode in use) draws no empty table
    assert "lmroute_control_threshold" not in page.locator("#live-routers").inner_text()
    served["body"] = feed.replace('router="mf"} 1.0', 'router="mf"} 0.0')
    sync_api.expect(drift).to_have_text("no drift (2 watched)", timeout=10_000)


@pytest.mark.parametrize("drift", [True, False])
def test_the_drift_tile_says_no_router_is_watched_before_one_is(page, upstreams, drift):
    """Before a routed request, and with drift detection off, the server exports the drift families
    without samples: the tile read "no drift (0 watched)", as if 0 routers were found sound."""
    config = upstreams.config(thresholds=THRESHOLDS, control={"drift": {"enabled": drift}})
    with serve_in_thread(create_app(config, routers=ROUTERS)) as url:
        assert "# TYPE lmroute_drift_drifted gauge" in metrics_text(url)
        assert "lmroute_drift_drifted{" not in metrics_text(url)
        page.goto(f"{url}/ui")
        tile = page.get_by_test_id("live-drift")
        sync_api.expect(tile).to_have_text("none watched")
        assert "no request routed yet, or drift detection off" in page.locator("#live-tiles").inner_text()
        assert chat(url, TO_STRONG).status_code == 200
        watched = 'lmroute_drift_drifted{router="length"} 0.0' in metrics_text(url)
        assert watched == drift
        # Its first requests are the router's reference: it is not watched yet.
        sync_api.expect(tile).to_have_text("collecting (1/300)" if drift else "none watched")


def test_the_drift_tile_shows_a_reference_being_collected_then_watched(page, upstreams):
    """During a router's first reference_size requests the tile read "no drift (1 watched)", though
    the detector was only collecting its reference and could not alarm."""
    config = upstreams.config(thresholds=THRESHOLDS, control={"drift": {"reference_size": 20}})
    with serve_in_thread(create_app(config, routers=ROUTERS)) as url:
        page.goto(f"{url}/ui")
        tile = page.get_by_test_id("live-drift")
        for _ in range(3):
            route(url, {"model": TO_STRONG, "prompt": PROMPT})
        sync_api.expect(tile).to_have_text("collecting (3/20)")
        assert "its first requests become the reference" in page.locator("#live-tiles").inner_text()
        for _ in range(17):
            route(url, {"model": TO_STRONG, "prompt": PROMPT})
        sync_api.expect(tile).to_have_text("no drift (1 watched)")


@pytest.fixture(scope="module")
def eval_json(tmp_path_factory) -> Path:
    """An ``lmroute eval --json`` file of a small custom benchmark."""
    folder = tmp_path_factory.mktemp("eval")
    bench = folder / "custom.jsonl"
    lines = [{"prompt": "x" * (i + 1), "scores": {"A": float(i % 3 == 0), "B": 0.0}} for i in range(40)]
    bench.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = folder / "eval.json"
    argv = ["eval", "--benchmark", str(bench), "--strong-model", "A", "--weak-model", "B"]
    assert main([*argv, "--routers", "random", "length", "--json", str(out), "--quiet"]) == 0
    return out


def test_report_shows_an_eval_file(page, server, eval_json, tmp_path):
    report = json.loads(eval_json.read_text())
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(eval_json)
    assert page.get_by_test_id("report-title").inner_text().startswith("custom: 40 prompts")
    for name, result in report["routers"].items():
        assert value(page, f"apgr:{name}") == result["apgr"]
    # One path per router, and the strong and weak lines.
    assert page.locator("svg.chart path.series").count() == len(report["routers"])
    assert page.locator("svg.chart line.series").count() == 2 + 2 + len(report["routers"])
    screenshot(page, tmp_path, "report")


def test_report_shows_an_eval_file_of_the_exact_protocol(page, server, tmp_path):
    # Its curves start at threshold infinity, written as Infinity: "eval.json is not JSON" here.
    bench = tmp_path / "custom.jsonl"
    lines = [{"prompt": "x" * (i + 1), "scores": {"A": float(i % 3 == 0), "B": 0.0}} for i in range(12)]
    bench.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "eval.json"
    argv = ["eval", "--benchmark", str(bench), "--strong-model", "A", "--weak-model", "B"]
    assert main([*argv, "--protocol", "exact", "--routers", "length", "--json", str(out), "--quiet"]) == 0
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(out)
    assert page.get_by_test_id("report-title").inner_text().startswith("custom: 12 prompts, protocol exact")
    assert value(page, "apgr:length") == json.loads(out.read_text())["routers"]["length"]["apgr"]


def test_report_draws_an_exact_protocol_eval_of_many_prompts(page, server, tmp_path):
    """The exact protocol has a point per distinct score: 130,000 prompts' curve was 'not an lmroute
    evaluation ... (Maximum call stack size exceeded)' (its extent taken as Math.min(...points))."""
    bench = tmp_path / "many.jsonl"
    lines = (
        json.dumps({"prompt": f"p{i}", "scores": {"A": float(i % 5 > 0), "B": float(i % 3 == 0)}})
        for i in range(130_000)
    )
    bench.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval.json"
    argv = [
        "eval",
        "--benchmark",
        str(bench),
        "--strong-model",
        "A",
        "--weak-model",
        "B",
        "--protocol",
        "exact",
    ]
    assert main([*argv, "--routers", "random", "--no-oracle", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert len(report["routers"]["random"]["points"]) > 130_000
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(out)
    assert page.get_by_test_id("report-title").inner_text().startswith("many: 130000 prompts, protocol exact")
    assert value(page, "apgr:random") == report["routers"]["random"]["apgr"]
    assert page.locator("svg.chart path.series").count() == 1
    assert page.locator("#report-message").inner_text() == ""


@pytest.fixture(scope="module")
def n_model_json(tmp_path_factory) -> Path:
    """An ``lmroute eval --models ... --json`` file: the packaged mf router over three priced models."""
    folder = tmp_path_factory.mktemp("n-models")
    models = {"gpt-4o-2024-08-06": 0.9, "Meta-Llama-3-8B-Instruct": 0.4, "gpt-3.5-turbo-0125": 0.6}
    prices = folder / "prices.yaml"
    prices.write_text(
        "gpt-4o-2024-08-06: {input_per_1m: 2.5, output_per_1m: 10}\n"
        "Meta-Llama-3-8B-Instruct: {input_per_1m: 0.2, output_per_1m: 0.2}\n"
        "gpt-3.5-turbo-0125: {input_per_1m: 0.5, output_per_1m: 1.5}\n"
    )
    rng = np.random.default_rng(0)
    scores = [{m: float(rng.uniform() < p) for m, p in models.items()} for _ in range(30)]
    rows = [{"prompt": f"question {i} " + "x" * i, "scores": s} for i, s in enumerate(scores)]
    bench = folder / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = folder / "n-models.json"
    argv = ["eval", "--benchmark", str(bench), "--routers", "mf", "--models", *models]
    assert main([*argv, "--prices", str(prices), "--json", str(out), "--quiet"]) == 0
    return out


def test_report_shows_an_n_model_eval_file(page, server, n_model_json, tmp_path):
    """eval --models --json writes the cost–quality evaluation: models, curves, no "routers"; it was
    refused as 'not an lmroute evaluation'."""
    report = json.loads(n_model_json.read_text())
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(n_model_json)
    title = page.get_by_test_id("report-title").inner_text()
    assert title.startswith("bench: 30 prompts (0 lines skipped), 3 models")
    assert page.locator("#report-message").inner_text() == ""
    for curve in [*report["curves"], report["mixing_baseline"]]:
        assert value(page, f"aiq:{curve['label']}") == curve["aiq"]
    # The mixing baseline and each curve's hull, and a point per single model.
    assert page.locator("svg.chart path.series").count() == 1 + len(report["curves"])
    chart = page.locator("svg.chart").text_content()
    assert "single models" in chart and "USD per 1,000 requests (log scale)" in chart
    best = page.get_by_test_id("report-table").locator("tr", has_text="best single: gpt-4o-2024-08-06")
    assert best.locator("td").nth(1).inner_text() == "–"  # a single model has no AIQ
    # NaN written as null (a router that never reaches the best model's quality): drawn as "–".
    for curve in report["curves"]:
        curve.update(aiq=None, reach_cost=None, saving=None, quality_at_cheapest=None)
    nulls = tmp_path / "nulls.json"
    nulls.write_text(json.dumps(report))
    page.locator("#report-file").set_input_files(nulls)
    row = page.get_by_test_id("report-table").locator("tr", has_text="mf")
    sync_api.expect(row).to_have_text(re.compile(r"^mf\s*–\s*–\s*–\s*–$"))
    assert "mf (AIQ n/a)" in page.locator("svg.chart").text_content()


def test_report_shows_an_n_model_experiment_file(page, server, tmp_path):
    """A kind: n-models experiment's results.json holds "evaluations" (eval --models' cost–quality
    evaluations, one per protocol and file); it was refused as 'not an lmroute ... result'."""
    prices = {"big": 10.0, "mid": 1.0, "small": 0.1}
    for name, models in (("one", ["big", "mid", "small"]), ("two", ["big", "small"])):
        scores = [{m: float(i % 2 == 0 or m == "big") for m in models} for i in range(40)]
        rows = [
            {"prompt": f"{'chat' if i % 2 == 0 else 'prove'} {name} {i}", "scores": s}
            for i, s in enumerate(scores)
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "prices.yaml").write_text(
        yaml.safe_dump({m: {"input_per_1m": p, "output_per_1m": p} for m, p in prices.items()})
    )
    config = NModelExperimentConfig.model_validate(
        {
            "kind": "n-models",
            "files": ["one.jsonl", "two.jsonl"],
            "prices": "prices.yaml",
            "router": {"name": "mf", "options": {"dim": 8, "epochs": 2, "batch_size": 64, "ties": "half"}},
            "folds": 2,
            "knobs": 20,
        }
    )
    result = run_n_model_experiment(config, data_dir=tmp_path, config_dir=tmp_path, embedder=HashEmbedder(32))
    write_n_model_experiment(result, tmp_path / "out")
    path = tmp_path / "out" / "results.json"
    evaluations = json.loads(path.read_text())["evaluations"]
    assert len(evaluations) >= 2
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(path)
    assert (
        page.get_by_test_id("report-title").inner_text()
        == f"N-model experiment: {len(evaluations)} evaluations"
    )
    for e in evaluations:
        for curve in [*e["curves"], e["mixing_baseline"]]:
            assert value(page, f"aiq:{e['protocol']}:{e['benchmark']}:{curve['label']}") == curve["aiq"]
    assert page.locator("svg.chart").count() == len(evaluations)
    assert page.locator("#report-message").inner_text() == ""


LEGEND_OVERFLOW = """() => [...document.querySelectorAll("svg.chart")].flatMap((chart) => {
    const width = chart.viewBox.baseVal.width;
    return [...chart.querySelectorAll("text.legend")]
        .map((t) => [t.textContent, t.getBBox().x + t.getBBox().width])
        .filter(([, right]) => right > width);
})"""


def test_report_legend_shows_long_model_names_whole(page, server, tmp_path):
    """The paper's weak model, mistralai/Mixtral-8x7B-Instruct-v0.1, ran past the chart's right edge
    in the legend (cut off at '...Instruct-v0'): the legend was placed for 250 px whatever its labels."""
    strong, weak = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
    bench = tmp_path / "pair.jsonl"
    lines = [{"prompt": "x" * (i + 1), "scores": {strong: float(i % 3 == 0), weak: 0.0}} for i in range(20)]
    bench.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "eval.json"
    argv = ["eval", "--benchmark", str(bench), "--strong-model", strong, "--weak-model", weak]
    assert main([*argv, "--routers", "length", "--json", str(out), "--quiet"]) == 0
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(out)
    page.get_by_test_id("report-title").wait_for()
    assert f"weak: {weak}" in page.locator("svg.chart").text_content()
    assert page.evaluate(LEGEND_OVERFLOW) == []


def test_report_shows_the_costs_of_a_benchmark_with_costs(page, server, tmp_path):
    """With a cost per item the CLI's table gives each model's mean cost and each router's at the
    threshold; the report left both out."""
    bench = tmp_path / "priced.jsonl"
    lines = [
        {
            "prompt": "x" * (i + 1),
            "scores": {"A": float(i % 3 == 0), "B": 0.0},
            "cost": {"A": 0.01, "B": 0.001},
        }
        for i in range(20)
    ]
    bench.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "eval.json"
    argv = ["eval", "--benchmark", str(bench), "--strong-model", "A", "--weak-model", "B"]
    assert main([*argv, "--routers", "length", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(out)
    title = page.get_by_test_id("report-title").inner_text()
    strong, weak = re.search(r"; mean cost per item: strong (\S+), weak (\S+)$", title).groups()
    assert float(strong) == pytest.approx(report["strong_cost"], rel=1e-3)
    assert float(weak) == pytest.approx(report["weak_cost"], rel=1e-3)
    row = page.get_by_test_id("report-table").locator("tr", has=page.get_by_test_id("apgr:length"))
    shown = re.search(r"@0\.5, cost (\S+)", row.inner_text()).group(1)
    assert float(shown) == pytest.approx(report["routers"]["length"]["cost_at_threshold"], rel=1e-3)


def test_report_shows_the_warnings_the_cli_prints(page, server, tmp_path):
    """A pair named the wrong way round (the strong model below the weak): the CLI warns under its
    title and the file holds the warning; the report drew the negative APGRs without it."""
    bench = tmp_path / "swapped.jsonl"
    lines = [{"prompt": "x" * (i + 1), "scores": {"A": float(i % 3 == 0), "B": 1.0}} for i in range(20)]
    bench.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "eval.json"
    argv = ["eval", "--benchmark", str(bench), "--strong-model", "A", "--weak-model", "B"]
    assert main([*argv, "--routers", "length", "--json", str(out), "--quiet"]) == 0
    [warning] = json.loads(out.read_text())["warnings"]
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(out)
    page.get_by_test_id("report-title").wait_for()
    assert page.get_by_test_id("report-warning").inner_text() == f"warning: {warning}"


def test_report_shows_an_experiment_file(page, server):
    path = REPO / "docs" / "results" / "results.json"
    cells = json.loads(path.read_text())["cells"]
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(path)
    page.get_by_test_id("report-title").wait_for()
    c = cells[0]
    assert value(page, f"apgr:{c['protocol']}:{c['benchmark']}:{c['router']}") == c["apgr"]
    charts = {(c["protocol"], c["benchmark"]) for c in cells}
    assert page.locator("svg.chart").count() == len(charts)


@pytest.mark.parametrize("kind", ["pair-transfer", "onboarding-curve", "similarity-vs-apgr"])
def test_report_names_an_experiment_kind_it_does_not_draw(page, server, kind):
    """These kinds' results.json hold neither cells nor evaluations: it read 'results.json is not an
    lmroute evaluation or experiment result', though lmroute experiment wrote it."""
    folder = {"onboarding-curve": "onboarding"}.get(kind, kind)
    path = REPO / "docs" / "results" / folder / "results.json"
    assert json.loads(path.read_text())["config"]["kind"] == kind
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(path)
    message = (
        f"results.json holds the results of a kind: {kind} experiment, which the report view does not draw"
    )
    page.locator("#report-message", has_text=message).wait_for()
    assert "results.md" in page.locator("#report-message").inner_text()
    assert page.locator("#report").inner_text() == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"benchmark": "x", "routers": {"r": {"apgr": "high", "points": []}}}', '"apgr" must be a number'),
        (
            '{"cells": [{"router": "r", "benchmark": "b", "protocol": "p", "apgr": 0.5, "points": [{}]}]}',
            "each point needs",
        ),
        ("{}", 'no "routers"'),
    ],
)
def test_report_bad_file_shows_a_message(page, server, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    page.goto(f"{server}/ui#report")
    page.locator("#report-file").set_input_files(bad)
    page.locator("#report-message", has_text=message).wait_for()
    assert "bad.json" in page.locator("#report-message").inner_text()
    assert page.locator("#report").inner_text() == ""


DROP = """([target, types]) => {
    const data = new DataTransfer();
    if (types.includes("file")) data.items.add(new File(["{}"], "eval.json", { type: "application/json" }));
    if (types.includes("text")) data.setData("text/plain", "dragged text");
    const node = document.querySelector(target);
    return ["dragover", "drop"].map((type) => {
        const event = new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data });
        node.dispatchEvent(event);
        return event.defaultPrevented;
    });
}"""


def test_a_file_dropped_outside_the_drop_zone_does_not_leave_the_console(page, server):
    """The browser's default for a file dropped on a page is to open it in place of the console
    (its state lost); text dragged into the prompt is still dropped there."""
    page.goto(f"{server}/ui#report")
    for target in ("header", "#report-message", "#prompt"):
        assert page.evaluate(DROP, [target, ["file"]]) == [True, True], target
    assert page.evaluate(DROP, ["#prompt", ["text"]]) == [False, False]
    assert page.locator("#report-message").inner_text() == ""
    page.evaluate(DROP, ["#report-drop", ["file"]])  # the drop zone still opens what it gets
    page.locator("#report-message", has_text="eval.json is not an lmroute evaluation").wait_for()


def test_the_same_file_chosen_again_after_fixing_it_is_read_again(page, server, eval_json, tmp_path):
    """The browser fires no change event for the file already chosen: the fixed file was not read."""
    result = tmp_path / "result.json"
    result.write_text("{not json")
    page.goto(f"{server}/ui#report")
    with page.expect_file_chooser() as chooser:
        page.locator("#report-file").click()
    chooser.value.set_files(result)
    page.locator("#report-message", has_text="is not JSON").wait_for()
    result.write_text(eval_json.read_text())
    with page.expect_file_chooser() as chooser:
        page.locator("#report-file").click()
    chooser.value.set_files(result)
    page.get_by_test_id("report-title").wait_for()
    assert page.locator("#report-message").inner_text() == ""


def test_api_key_is_asked_for_and_sent(browser, upstreams, monkeypatch):
    monkeypatch.setenv("LMROUTE_API_KEYS", "console-key-1")
    config = upstreams.config(thresholds=THRESHOLDS)
    with serve_in_thread(create_app(config, routers=ROUTERS)) as url:
        files = ["", *(f"/{n}" for n in ("api.js", "console.js", "live.js", "playground.js", "report.js"))]
        for name in files:
            text = httpx.get(f"{url}/ui{name}", trust_env=False).text
            assert "console-key-1" not in text
            assert not any(u.removesuffix("/v1") in text for u in upstreams.urls.values())
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        log = watch(page)
        log.expected_statuses["/v1/"] = {401}
        sent = []
        page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
        page.goto(f"{url}/ui")
        page.locator("#key-form").wait_for()
        page.locator("#key-input").fill("wrong")
        page.get_by_role("button", name="Use key").click()
        page.locator("#key-message", has_text="refused").wait_for()
        page.locator("#key-input").fill("console-key-1")
        page.get_by_role("button", name="Use key").click()
        page.get_by_test_id("router-models").filter(has_text=TO_STRONG).wait_for()
        assert page.locator("#key-form").is_hidden()
        page.get_by_role("tab", name="Playground").click()
        page.locator("#prompt").fill(PROMPT)
        page.get_by_role("button", name="Score with every router").click()
        page.get_by_test_id(f"score:{TO_STRONG}").wait_for()
        authorized = [auth for u, auth in sent if "/v1/route" in u]
        assert authorized and set(authorized) == {"Bearer console-key-1"}
        context.close()
        assert log.errors == []


def test_a_key_no_header_can_carry_is_refused_in_the_form(browser, upstreams, monkeypatch):
    """A key pasted with a zero-width space: fetch refuses the header, so kept it would fail every
    call (/metrics too) with "the server did not answer" and never bring the key field back."""
    monkeypatch.setenv("LMROUTE_API_KEYS", "console-key-1")
    with serve_in_thread(create_app(upstreams.config(thresholds=THRESHOLDS), routers=ROUTERS)) as url:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        log = watch(page)
        log.expected_statuses["/v1/"] = {401}
        page.goto(f"{url}/ui")
        page.locator("#key-form").wait_for()
        page.locator("#key-input").fill("console-key-1\u200b")
        page.get_by_role("button", name="Use key").click()
        page.locator("#key-message", has_text="U+200B").wait_for()
        assert page.locator("#key-form").is_visible()
        page.locator("#key-input").fill("console-key-1")
        page.get_by_role("button", name="Use key").click()
        page.get_by_test_id("router-models").filter(has_text=TO_STRONG).wait_for()
        page.wait_for_timeout(2500)  # a poll of /metrics with the key
        assert page.locator("#banner").is_hidden()
        context.close()
        assert log.errors == []


def test_prometheus_reading_matches_prometheus(page, server):
    """The page's parser and quantiles against prometheus_client's parser and histogram_quantile."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    counter = Counter("c", "a counter", ["model"], registry=registry)
    counter.labels('odd "name"\\ with\nnewline').inc(3)
    counter.labels("plain").inc(0.5)
    hist = Histogram("h", "a histogram", buckets=(0.1, 0.5, 1.0, 5.0), registry=registry)
    for v in (0.05, 0.2, 0.3, 0.7, 0.9, 2.0, 7.0):
        hist.observe(v)
    text = generate_latest(registry).decode()
    page.goto(f"{server}/ui")
    shown = page.evaluate(
        """async (text) => {
            const p = await import("./ui/prometheus.js");
            const families = p.parseMetrics(text);
            const h = p.histograms(families.get("h"))[0];
            return {
                names: [...families.keys()].sort(),
                counts: Object.fromEntries(p.sumBy(p.values(families.get("c"), "_total"), "model")),
                quantiles: [0.1, 0.5, 0.9, 0.99].map((q) => p.quantile(q, h.buckets)),
                count: h.count,
            };
        }""",
        text,
    )
    assert shown["names"] == ["c", "h"]
    assert shown["counts"] == {'odd "name"\\ with\nnewline': 3, "plain": 0.5}
    assert shown["count"] == 7
    for q, value in zip((0.1, 0.5, 0.9, 0.99), shown["quantiles"], strict=True):
        assert value == pytest.approx(histogram_quantile(q, text, "h"), rel=1e-12)


def test_playground_shows_fields_a_later_route_answer_adds(page, server):
    """An N-model /v1/route answer (qualities and costs, no single score) shows under details."""
    answer = {
        "router": "mf",
        "threshold": None,
        "decision": "mid",
        "model": "model-c",
        "qualities": {"model-a": 0.9, "model-c": 0.7},
        "costs": {"model-a": 0.01, "model-c": 0.001},
    }
    page.route("**/v1/route", lambda route: route.fulfill(status=200, json=answer))
    page.goto(f"{server}/ui#playground")
    page.locator("#prompt").fill(PROMPT)
    page.get_by_role("button", name="Score with every router").click()
    cell = page.get_by_test_id(f"score:{TO_STRONG}")
    assert cell.inner_text() == "n/a"
    row = page.get_by_test_id("scores").locator("tr", has=cell).inner_text()
    assert "mid → model-c" in row and '"qualities":{"model-a":0.9,"model-c":0.7}' in row
    assert page.locator("#playground-message").inner_text() == ""
