"""Security: no unsafe deserialisation anywhere in the source, loopback by default, client keys
compared in constant time, upstream keys only from the environment and never in logs, errors or
/metrics. Request size/message limits and router-directory validation are in test_http_inputs.py and
test_cli_inputs.py."""

from __future__ import annotations

import ast
import logging
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fake_openai import free_port, serve_in_thread
from faulty_upstream import FaultyUpstream, running

from lmroute.cli import main
from lmroute.routers.length import LengthRouter
from lmroute.serving.app import create_app
from lmroute.serving.config import ServeConfig, build_config

pytestmark = pytest.mark.reliability

SRC = Path(__file__).resolve().parents[2] / "src" / "lmroute"
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(source: str) -> list[str]:
    """Each unsafe deserialisation in ``source``, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: import {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name in ("torch.load", "eval", "exec") or name.endswith(
            ("yaml.load", "yaml.unsafe_load", "yaml.full_load")
        ):
            found.append(f"{node.lineno}: {name}()")
        elif name in ("np.load", "numpy.load"):
            allow = _keyword(node, "allow_pickle")
            if not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f"{node.lineno}: {name}() without allow_pickle=False")
        elif last == "from_pretrained" and "Tokenizer" not in name:
            safe = _keyword(node, "use_safetensors")
            if not ((isinstance(safe, ast.Constant) and safe.value is True) or _keyword(node, "gguf_file")):
                found.append(f"{node.lineno}: {name}() without use_safetensors=True (may unpickle .bin)")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = (
        "import pickle\nfrom joblib import load\nimport torch\nx = torch.load(p)\nimport numpy as np\n"
        "np.load(p)\nnp.load(p, allow_pickle=True)\nimport yaml\nyaml.load(t)\n"
        "AutoModel.from_pretrained(p)\neval(s)\n"
    )
    assert len(unsafe_calls(bad)) == 8
    good = "np.load(p, allow_pickle=False)\nAutoModel.from_pretrained(p, use_safetensors=True)\n"
    assert unsafe_calls(good) == []


def test_no_pickle_or_torch_load_in_the_source():
    problems = {
        str(path.relative_to(SRC)): found
        for path in sorted(SRC.rglob("*.py"))
        if (found := unsafe_calls(path.read_text()))
    }
    assert problems == {}


# -- binding --------------------------------------------------------------------------------------


def test_serve_binds_to_loopback_unless_told(monkeypatch, caplog):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.delenv("LMROUTE_API_KEYS", raising=False)
    base = [
        "serve",
        "--routers",
        "length",
        "--strong-base-url",
        "http://127.0.0.1:9/v1",
        "--strong-model",
        "s",
        "--weak-base-url",
        "http://127.0.0.1:9/v1",
        "--weak-model",
        "w",
        "--port",
        str(free_port()),
    ]
    assert main(base) == 0
    assert calls[-1]["host"] == "127.0.0.1" and ServeConfig.model_fields["server"].default_factory().host == (
        "127.0.0.1"
    )
    with caplog.at_level(logging.WARNING, logger="lmroute"):
        assert main([*base, "--host", "0.0.0.0"]) == 0
    assert calls[-1]["host"] == "0.0.0.0"
    assert "without API keys" in caplog.text  # exposing it without keys is said out loud


def test_a_busy_port_is_one_line(capsys):
    """Issue 21 item 10: a busy port was uvicorn's multi-line error and exit status 3."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        upstreams = ["--strong-base-url", "http://127.0.0.1:9/v1", "--strong-model", "s"]
        upstreams += ["--weak-base-url", "http://127.0.0.1:9/v1", "--weak-model", "w"]
        assert main(["serve", "--routers", "length", *upstreams, "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"lmroute: error: cannot listen on 127.0.0.1:{port}: Address already in use (another server on it? "
        "choose another with `lmroute serve --port`)"
    )


# -- client keys ----------------------------------------------------------------------------------


@contextmanager
def serving(cfg):
    with (
        serve_in_thread(create_app(cfg, routers={"length": LengthRouter()})) as url,
        httpx.Client(base_url=url, timeout=15) as client,
    ):
        yield client


def test_every_key_is_compared_in_constant_time(monkeypatch):
    import hmac

    from lmroute.serving import routes

    compared = []
    original = hmac.compare_digest

    def compare(a, b):
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(routes.hmac, "compare_digest", compare)
    keys = ["first-key", "second-key-longer", "third"]
    cfg = build_config(
        overrides={
            "strong": {"base_url": "http://127.0.0.1:9/v1", "model": "s"},
            "weak": {"base_url": "http://127.0.0.1:9/v1", "model": "w"},
            "routers": ["length"],
        },
        api_keys=keys,
    )
    with serving(cfg) as client:
        for token in ("first-key", "wrong", "third-"):
            compared.clear()
            status = client.get("/v1/models", headers={"authorization": f"Bearer {token}"}).status_code
            assert status == (200 if token == "first-key" else 401)
            # No early exit: a match on the first key costs as many comparisons as no match at all.
            assert len(compared) == len(keys)


# -- upstream keys --------------------------------------------------------------------------------

SECRET = "sk-live-0123456789abcdefSECRET"
CLIENT_KEY = "lmroute-client-key-SECRET"


def test_upstream_config_holds_no_keys():
    from lmroute.exceptions import ConfigError
    from lmroute.upstream import UpstreamConfig

    assert "api_key" not in UpstreamConfig.model_fields
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        build_config(
            overrides={
                "strong": {"base_url": "http://x/v1", "model": "s", "api_key_env": SECRET},
                "weak": {"base_url": "http://x/v1", "model": "w"},
            }
        )


def test_keys_never_reach_logs_errors_or_metrics(monkeypatch, caplog):
    monkeypatch.setenv("LMROUTE_TEST_UPSTREAM_KEY", SECRET)
    strong, weak = FaultyUpstream("strong"), FaultyUpstream("weak")
    seen: list[str] = []
    with running(strong) as strong_url, running(weak):
        cfg = build_config(
            overrides={
                "strong": {
                    "base_url": strong_url,
                    "model": "big",
                    "api_key_env": "LMROUTE_TEST_UPSTREAM_KEY",
                    "max_retries": 1,
                    "retry_backoff": 0.01,
                    "timeout": 0.5,
                },
                "weak": {
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "model": "small",
                    "api_key_env": "LMROUTE_TEST_UPSTREAM_KEY",
                    "max_retries": 0,
                },
                "routers": ["length"],
                "server": {"log_level": "debug"},
                "circuit_breaker": 0,  # every fault kind must reach the upstream
            },
            api_keys=[CLIENT_KEY],
        )
        auth = {"authorization": f"Bearer {CLIENT_KEY}"}
        body = {"model": "router-length-0", "messages": [{"role": "user", "content": "hello"}]}
        with caplog.at_level(logging.DEBUG), serving(cfg) as client:
            for behaviour in (
                "ok",
                "status:401",
                "status:403",
                "status:500",
                "status:429:1",
                "reset",
                "hang:2",
                "malformed",
                "stream_error",
                "stream_cut",
            ):
                strong.set(behaviour)
                for stream in (False, True):
                    response = client.post(
                        "/v1/chat/completions", json={**body, "stream": stream}, headers=auth
                    )
                    seen.append(response.text + str(response.headers))
            bad = client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer guess"})
            seen.append(bad.text + str(bad.headers))
            seen.append(client.get("/metrics").text)
            seen.append(client.get("/v1/models", headers=auth).text)
        assert strong.requests[0][2] == f"Bearer {SECRET}"  # the key was really used
    logs = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert logs, "nothing was logged: the test would prove nothing"
    for text in [*seen, logs]:
        assert SECRET not in text and CLIENT_KEY not in text
