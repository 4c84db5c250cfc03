"""Bad input to every HTTP endpoint gets an OpenAI-shaped 4xx, never a 500, and the server goes on.

Schemathesis generates requests from the server's own OpenAPI schema (valid and invalid bodies,
headers, methods); a hand-written matrix adds what a schema cannot express (bytes that are not
UTF-8, nesting, limits, lone surrogates). ``tests/serving/test_server.py`` has the basic 400s of chat.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import httpx
import pytest
import schemathesis
from fake_openai import serve_in_thread
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from lmroute.routers.length import LengthRouter
from lmroute.routers.random import RandomRouter
from lmroute.serving.app import create_app, openapi_schema
from lmroute.serving.config import build_config

pytestmark = pytest.mark.reliability

MAX_MESSAGES = 16
MAX_BYTES = 64 * 1024


def make_config(strong_url: str, weak_url: str, **server):
    return build_config(
        overrides={
            "strong": {"base_url": strong_url, "model": "big-model", "max_retries": 0, "timeout": 5},
            "weak": {"base_url": weak_url, "model": "small-model", "max_retries": 0, "timeout": 5},
            "routers": ["length", "random"],
            "thresholds": {"length": [0.2, 0.7]},
            "server": {"max_messages": MAX_MESSAGES, "max_request_bytes": MAX_BYTES, **server},
        }
    )


def make_app(config):
    return create_app(config, routers={"length": LengthRouter(), "random": RandomRouter()})


SERVED = ["router-length-0.2", "router-length-0.7", "router-random-0.5", "big-model", "small-model"]


def served_schema() -> dict:
    """The server's schema (the same for every config), told which model strings this app serves,
    so that generated requests reach routing and the upstreams as well as the validation errors."""
    schema = openapi_schema()
    for name in ("ChatCompletionRequest", "RouteRequest"):
        model = schema["components"]["schemas"][name]["properties"]["model"]
        schema["components"]["schemas"][name]["properties"]["model"] = {"anyOf": [{"enum": SERVED}, model]}
    return schema


SCHEMA = schemathesis.openapi.from_dict(served_schema())


@contextmanager
def serving(upstreams, **server):
    app = make_app(make_config(upstreams.urls["strong"], upstreams.urls["weak"], **server))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def client(upstreams):
    with serving(upstreams) as c:
        yield c


@pytest.fixture(scope="module")
def keyed(upstreams, tmp_path_factory):
    with serving(upstreams, api_keys=("secret-key-1",)) as c:
        yield c


@SCHEMA.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_schemathesis_finds_no_server_error(case, client):
    response = case.call(base_url=str(client.base_url))
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    # Every check (no 5xx, documented statuses and content types, response schemas, Allow on 405...)
    # but the acceptance of every schema-valid body: the schema cannot say which model strings
    # name a served router and a threshold in [0, 1], so some valid-looking ones get a 400.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_schemathesis_with_api_keys(case, keyed):
    """With keys configured, every generated request without the key is a 401 (health and metrics
    excepted), and none is a 500."""
    response = case.call(base_url=str(keyed.base_url))
    assert response.status_code < 500, response.text
    if case.path in ("/v1/chat/completions", "/v1/route", "/v1/models") and case.method != "OPTIONS":
        assert response.status_code in (401, 405), response.text


def _nested(depth: int) -> bytes:
    """A chat request with a pass-through field nested ``depth`` lists deep."""
    extra = b"[" * depth + b'"x"' + b"]" * depth
    head = b'{"model": "router-length-0.5", "messages": [{"role": "user", "content": "hi"}], "x": '
    return head + extra + b"}"


MESSAGES = [{"role": "user", "content": "hello"}]
CHAT = "/v1/chat/completions"


def _lone_surrogate(text: str, encoding: str = "utf-8", *, model: str = "router-length-0.5") -> bytes:
    """A request whose text is ``text``, in ``encoding``, its lone surrogates as bytes (no escape)."""
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return json.dumps(body, ensure_ascii=False).encode(encoding, "surrogatepass")


# (path, body: bytes or JSON-able, headers, status, code)
BAD_REQUESTS = [
    (CHAT, b"", {}, 400, "invalid_json"),
    (CHAT, b"\xff\xfe\x00garbage", {}, 400, "invalid_json"),
    (CHAT, "caf\u00e9".encode("latin-1"), {}, 400, "invalid_json"),
    (
        CHAT,
        b'{"model": "router-length-0.5", "messages": [{"role": "user", "content": "\\ud800"}]}',
        {},
        400,
        "invalid_json",
    ),
    # the bytes of a lone surrogate (json reads UTF-8 with "surrogatepass"), or one in UTF-16: the
    # upstream call could not encode them again, a 500
    (CHAT, _lone_surrogate("a\ud800"), {}, 400, "invalid_json"),
    (CHAT, _lone_surrogate("\udfff b"), {}, 400, "invalid_json"),
    (CHAT, _lone_surrogate("a\ud800", "utf-16-le"), {}, 400, "invalid_json"),
    ("/v1/route", _lone_surrogate("a\ud800", model="router-length-share-0.5"), {}, 400, "invalid_json"),
    (CHAT, b"[" * 50_000, {}, 400, "invalid_json"),
    (CHAT, b'{"model": "router-length-0.5", "n": ' + b"9" * 5000 + b"}", {}, 400, "invalid_json"),
    (CHAT, b'"just a string"', {}, 400, "invalid_json"),
    (CHAT, b"null", {}, 400, "invalid_json"),
    (CHAT, b'{"model": "router-length-0.5", "messages": [{"role": "user"', {}, 400, "invalid_json"),
    (CHAT, {"model": "router-length-0.5", "messages": "hello"}, {}, 400, "invalid_value"),
    (CHAT, {"model": "router-length-0.5", "messages": [None]}, {}, 400, "invalid_value"),
    (CHAT, {"model": "router-length-0.5", "messages": [{"content": "hi"}]}, {}, 400, "invalid_value"),
    (
        CHAT,
        {"model": "router-length-0.5", "messages": [{"role": "user", "content": 5}]},
        {},
        400,
        "invalid_value",
    ),
    (CHAT, {"model": 7, "messages": MESSAGES}, {}, 400, "invalid_value"),
    (CHAT, {"model": None, "messages": MESSAGES}, {}, 400, "invalid_value"),
    (CHAT, {"model": "", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (CHAT, {"model": "router-", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (CHAT, {"model": "router--0.5", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (CHAT, {"model": "router-length-1e-05", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (CHAT, {"model": "router-length--0.1", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (CHAT, {"model": "router-length-NaN", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (CHAT, {"model": "router-length-inf", "messages": MESSAGES}, {}, 400, "invalid_model"),
    (
        CHAT,
        {"model": "router-length-0.5", "messages": MESSAGES * (MAX_MESSAGES + 1)},
        {},
        400,
        "too_many_messages",
    ),
    (
        CHAT,
        {"model": "router-length-0.5", "messages": [{"role": "user", "content": "x" * MAX_BYTES}]},
        {},
        413,
        "request_too_large",
    ),
    (
        CHAT,
        {"model": "router-length-0.5", "messages": MESSAGES},
        {"content-length": str(MAX_BYTES + 1)},
        413,
        "request_too_large",
    ),
    (
        "/v1/route",
        {"model": "router-length-0.5", "messages": MESSAGES * (MAX_MESSAGES + 1)},
        {},
        400,
        "too_many_messages",
    ),
    ("/v1/route", {"model": "router-length-0.5", "prompt": 5}, {}, 400, "invalid_value"),
    ("/v1/route", {"model": "router-length-0.5", "prompt": "x", "threshold": 0.5}, {}, 400, "invalid_value"),
    ("/v1/route", {"router": "length", "threshold": None, "prompt": "x"}, {}, 400, "invalid_value"),
    ("/v1/route", {"router": "length", "threshold": True, "prompt": "x"}, {}, 400, "invalid_value"),
    ("/v1/route", b'{"router": "length", "threshold": NaN, "prompt": "x"}', {}, 400, "invalid_value"),
    ("/v1/route", b'{"router": "length", "threshold": Infinity, "prompt": "x"}', {}, 400, "invalid_value"),
    ("/v1/route", {"router": "nope", "threshold": 0.5, "prompt": "x"}, {}, 400, "router_not_found"),
    ("/v1/route", {"model": "small-model", "prompt": "x"}, {}, 400, "invalid_model"),
    ("/v1/route", {"router": "length", "threshold": "0.5", "prompt": "x"}, {}, 400, "invalid_value"),
    ("/v1/route", b"{}", {}, 400, "invalid_value"),
    ("/v1/route", b"\x00\x01", {}, 400, "invalid_json"),
]


@pytest.mark.parametrize("path, body, headers, status, code", BAD_REQUESTS)
def test_bad_request_matrix(client, upstreams, path, body, headers, status, code):
    strong, weak = upstreams.strong, upstreams.weak
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    if "content-length" in headers:  # a declared size over the limit is refused before reading
        content = content.ljust(MAX_BYTES + 1)
    response = client.post(path, content=content, headers={"content-type": "application/json", **headers})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]
    assert len(error["message"]) < 400  # one readable sentence, not a dump of the body
    assert not strong.requests and not weak.requests  # nothing reached a model
    assert client.get("/health").json()["status"] == "ok"


def test_deep_nesting_that_parses_is_relayed_or_refused_cleanly(client, upstreams):
    """Nesting the JSON parser accepts but the upstream call might not re-encode: 200, or a 4xx/5xx
    in OpenAI's shape, never a dropped connection."""
    for depth in (100, 400, 800, 950):
        response = client.post(CHAT, content=_nested(depth))
        assert response.status_code in (200, 400), (depth, response.text)
        assert ("choices" in response.json()) or response.json()["error"]["code"] == "invalid_json"


def test_wrong_methods_paths_and_content_types(client):
    for method, path in [
        ("GET", CHAT),
        ("PUT", "/v1/route"),
        ("DELETE", "/v1/models"),
        ("POST", "/health"),
        ("POST", "/metrics"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    for path in ("/v1", "/v1/completions", "/v1/embeddings", "/../etc/passwd", "/v1/chat/completions/x"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # The body is read as JSON whatever content type is declared (as OpenAI's API does).
    body = json.dumps({"model": "router-length-1", "messages": MESSAGES})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = client.post(CHAT, content=body, headers={"content-type": content_type})
        assert response.status_code == 200 and response.json()["model"] == "small-model"


def test_a_client_that_sends_less_than_it_declared_does_not_hang_the_server(client):
    import socket

    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"model": '
        )
    # The half-sent request was dropped with its connection; the server still answers others.
    assert client.post("/v1/route", json={"model": "router-length-0.5", "prompt": "x"}).status_code == 200


def test_too_many_messages_limit_is_exact(client):
    at_limit = {"model": "router-length-1", "messages": MESSAGES * MAX_MESSAGES}
    assert client.post(CHAT, json=at_limit).status_code == 200
    over = {"model": "router-length-1", "messages": MESSAGES * (MAX_MESSAGES + 1)}
    response = client.post(CHAT, json=over)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages" and f"limit of {MAX_MESSAGES}" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Basic c2VjcmV0"},
        {"authorization": "Bearer secret-key-2"},
        {"authorization": "Bearer secret-key-1x"},
        {"authorization": "Bearer secret-key-"},
        {"authorization": "bearer\tsecret-key-1 extra"},
        {"authorization": "Bearer s\u00e9cret-key-1".encode()},
    ],
)
def test_wrong_keys_are_401_on_every_endpoint(keyed, headers):
    for method, path, body in [
        ("POST", CHAT, {"model": "router-length-1", "messages": MESSAGES}),
        ("POST", "/v1/route", {"model": "router-length-1", "prompt": "x"}),
        ("GET", "/v1/models", None),
    ]:
        response = keyed.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, path)
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert "secret-key-1" not in response.text
    good = {"authorization": "Bearer secret-key-1"}
    response = keyed.post(CHAT, json={"model": "router-length-1", "messages": MESSAGES}, headers=good)
    assert response.status_code == 200
