"""The console's HTTP side: its files and headers, what it never holds, and ``--no-ui``.

What the page does is tested in a real browser (``test_console_browser.py``).
"""

from __future__ import annotations

import os
import re
import sys

import httpx
import pytest
import yaml
from fake_openai import serve_in_thread
from serve_process import running_serve

from lmroute.routers.length import LengthRouter
from lmroute.serving import console
from lmroute.serving.app import create_app

pytestmark = pytest.mark.network_loopback

ROUTERS = {"length": LengthRouter()}
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def client(upstreams):
    with (
        serve_in_thread(create_app(upstreams.config(), routers=ROUTERS)) as url,
        httpx.Client(base_url=url, timeout=10, trust_env=False) as c,
    ):
        yield c


def test_every_file_the_page_loads_is_served_with_its_type_and_a_strict_policy(client):
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    loaded = set(re.findall(r'(?:src|href)="ui/([\w.]+)"', page.text))
    for script in ("console.js", "live.js", "playground.js", "report.js", "api.js"):
        imports = re.findall(r'from "\./([\w.]+)"', client.get(f"/ui/{script}").text)
        loaded |= set(imports)
    assert loaded and loaded <= set(console._FILES)
    for name in ["", *(f"/{n}" for n in console._FILES if n != "index.html")]:
        response = client.get(f"/ui{name}")
        assert response.status_code == 200, name
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/ui/live.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/console.css").headers["content-type"].startswith("text/css")


def test_no_cdn_no_inline_script_and_relative_paths(client):
    for name in ["", *(f"/{n}" for n in console._FILES)]:
        text = client.get(f"/ui{name}").text
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name
    page = client.get("/ui").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # the policy would refuse inline scripts
    assert "/v1/" not in page and '"/' not in page  # relative: works under a proxy's path prefix


def test_unknown_console_files_are_404_and_the_slash_redirects(client):
    for path in ("/ui/nope.js", "/ui/..%2Fapp.py", "/ui/__init__.py"):
        response = client.get(path)
        assert response.status_code == 404
        assert "error" in response.json()
    # The page's paths are relative to /ui: at /ui/ or /ui/index.html they would miss every file.
    for path in ("/ui/", "/ui/index.html"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 308 and response.headers["location"] == "../ui"
        assert client.get(path, follow_redirects=True).url.path == "/ui"


def test_console_is_not_in_the_api_schema(client):
    assert not any(path.startswith("/ui") for path in client.get("/openapi.json").json()["paths"])


def test_chat_answers_tell_the_routing_time(client):
    response = client.post("/v1/chat/completions", json={"model": "router-length-0.5", "messages": MESSAGES})
    assert response.status_code == 200
    assert re.fullmatch(r"routing;dur=\d+\.\d{3}", response.headers["server-timing"])


def test_no_ui_turns_the_console_off(upstreams, tmp_path):
    config = {
        "strong": {"base_url": upstreams.urls["strong"], "model": "big-model"},
        "weak": {"base_url": upstreams.urls["weak"], "model": "small-model"},
        "routers": ["length"],
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "LMROUTE_API_KEYS": ""}
    command = [sys.executable, "-m", "lmroute.cli", "serve", "--config", str(path), "--log-level", "warning"]

    def argv(port: int) -> list[str]:
        return [*command, "--port", str(port), "--no-ui"]

    with running_serve(argv, env=env, log_dir=tmp_path) as s:
        assert httpx.get(f"{s.url}/ui", trust_env=False).status_code == 404
        assert httpx.get(f"{s.url}/ui/console.js", trust_env=False).status_code == 404
        assert httpx.get(f"{s.url}/health", trust_env=False).status_code == 200
