"""The OpenAI-compatible embedder against a small fake /v1/embeddings server on 127.0.0.1."""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from lmroute.embeddings import get_embedder
from lmroute.embeddings.cache import CachedEmbedder
from lmroute.embeddings.openai import OpenAIEmbedder
from lmroute.exceptions import ConfigError, UpstreamError, UpstreamTimeoutError

pytestmark = pytest.mark.network_loopback

DIM = 4


def fake_vector(text):
    """Not unit length, so the test sees the embedder normalise."""
    return [float(len(text)), 1.0, 2.0, float(sum(map(ord, text)) % 7)]


class FakeServer:
    """Answers POST /v1/embeddings; ``script`` holds (status, body, headers) replies to give first."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.delay = 0.0
        self.vector = fake_vector
        self.fail_after = None  # embedding requests answered before all others fail
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, dict(self.headers), body))
                time.sleep(server.delay)
                if server.fail_after is not None and len(server.requests) > server.fail_after:
                    status, reply, headers = 400, {"error": {"message": "quota exceeded"}}, {}
                elif server.script:
                    status, reply, headers = server.script.pop(0)
                else:
                    data = [
                        {"object": "embedding", "index": i, "embedding": server.vector(text)}
                        for i, text in enumerate(body["input"])
                    ]
                    status, reply, headers = 200, {"object": "list", "data": data[::-1]}, {}
                payload = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def sleeps():
    return []


def make(server, sleeps, **options):
    options.setdefault("dim", DIM)
    return OpenAIEmbedder("fake-embed", base_url=server.base_url, sleep=sleeps.append, **options)


def expected(texts):
    rows = np.array([fake_vector(t) for t in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_batches_order_normalisation_and_key_from_named_variable(server, sleeps, monkeypatch):
    monkeypatch.setenv("MY_EMBED_KEY", "sk-test-123")
    texts = ["one", "two", "three", "four", "five"]
    embedder = make(server, sleeps, batch_size=2, api_key_env="MY_EMBED_KEY")
    out = embedder.embed(texts)
    assert out.shape == (5, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected(texts), rtol=1e-6)  # reply order was reversed
    assert [body["input"] for _, _, body in server.requests] == [["one", "two"], ["three", "four"], ["five"]]
    path, headers, body = server.requests[0]
    assert path == "/v1/embeddings" and body["model"] == "fake-embed"
    assert headers["Authorization"] == "Bearer sk-test-123"
    assert sleeps == []


def test_a_key_read_with_its_line_end_is_sent_without_it(server, sleeps, monkeypatch):
    # A key from a mounted secret or a CRLF env file ends in a line break: httpx refused the header,
    # reported as "cannot reach" the endpoint and retried, never sent.
    monkeypatch.setenv("MY_EMBED_KEY", " sk-test-123\r\n")
    make(server, sleeps, api_key_env="MY_EMBED_KEY").embed(["x"])
    assert server.requests[0][1]["Authorization"] == "Bearer sk-test-123" and sleeps == []
    monkeypatch.setenv("MY_EMBED_KEY", "sk-test\n123")
    with pytest.raises(ConfigError, match="MY_EMBED_KEY holds a line break or another control character"):
        make(server, sleeps, api_key_env="MY_EMBED_KEY").embed(["y"])
    assert len(server.requests) == 1 and sleeps == []


def test_no_key_no_authorization_header(server, sleeps, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make(server, sleeps).embed(["x"])
    assert "Authorization" not in server.requests[0][1]


def test_429_is_retried_after_the_servers_delay(server, sleeps):
    server.script = [(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "3"})]
    out = make(server, sleeps).embed(["a", "b"])
    np.testing.assert_allclose(out, expected(["a", "b"]), rtol=1e-6)
    assert len(server.requests) == 2 and sleeps == [3.0]


def test_5xx_backs_off_exponentially_then_raises(server, sleeps):
    server.script = [(503, "upstream overloaded", {})] * 3
    with pytest.raises(UpstreamError, match="answered 503: upstream overloaded") as info:
        make(server, sleeps, max_retries=2, backoff=0.5).embed(["a"])
    assert info.value.status_code == 503 and info.value.model == "fake-embed"
    assert sleeps == [0.5, 1.0] and len(server.requests) == 3


def test_client_error_is_raised_at_once_with_the_servers_message(server, sleeps):
    server.script = [(400, {"error": {"message": "input too long", "type": "invalid_request_error"}}, {})]
    with pytest.raises(UpstreamError, match="answered 400: input too long") as info:
        make(server, sleeps).embed(["a"])
    assert info.value.status_code == 400 and len(server.requests) == 1 and sleeps == []


def test_501_not_implemented_is_raised_at_once(server, sleeps):
    # llama.cpp's server started without --embeddings: asking again cannot help, and the retries
    # held every request 15 s (1 + 2 + 4 + 8) before the error or a server's fallback
    message = "This server does not support embeddings. Start it with `--embeddings`"
    server.script = [(501, {"error": {"message": message, "type": "not_supported_error"}}, {})]
    with pytest.raises(UpstreamError, match="answered 501: This server does not support embeddings"):
        make(server, sleeps).embed(["a"])
    assert len(server.requests) == 1 and sleeps == []


def test_401_names_the_key_variable(server, sleeps, monkeypatch):
    monkeypatch.delenv("TEAM_KEY", raising=False)
    server.script = [(401, {"error": {"message": "Incorrect API key"}}, {})]
    with pytest.raises(UpstreamError, match=r"\$TEAM_KEY, which is not set"):
        make(server, sleeps, api_key_env="TEAM_KEY").embed(["a"])


@pytest.mark.parametrize(
    "reply",
    [
        "not json",
        {"data": [{"index": 0}]},
        {"data": [{"index": 0, "embedding": [1.0, 2.0]}]},  # wrong size
        {"data": []},  # too few rows
    ],
)
def test_malformed_replies(server, sleeps, reply):
    server.script = [(200, reply, {})]
    with pytest.raises(UpstreamError, match=r"malformed|shape"):
        make(server, sleeps).embed(["a"])


def test_unreachable_server_is_retried_then_raises(sleeps):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    embedder = OpenAIEmbedder("fake", dim=DIM, base_url=f"http://127.0.0.1:{port}/v1", sleep=sleeps.append)
    with pytest.raises(UpstreamError, match="cannot reach"):
        embedder.embed(["a"])
    assert len(sleeps) == 4


def test_timeout(server, sleeps):
    server.delay = 0.5
    with pytest.raises(UpstreamTimeoutError, match=r"did not answer within 0\.1 s"):
        make(server, sleeps, timeout=0.1, max_retries=0).embed(["a"])


def test_long_texts_are_cut_to_max_chars_and_counted(server, sleeps):
    embedder = make(server, sleeps, max_chars=10)
    embedder.embed(["short", "x" * 25, ""])
    assert server.requests[0][2]["input"] == ["short", "x" * 10, " "]
    assert embedder.truncated == 1 and embedder.embedded == 3
    assert embedder.name == "openai:fake-embed?max_chars=10"


def test_dimensions_are_sent_and_named(server, sleeps):
    embedder = make(server, sleeps, dim=None, dimensions=DIM)
    embedder.embed(["a"])
    assert server.requests[0][2]["dimensions"] == DIM
    assert embedder.name == "openai:fake-embed?dimensions=4" and embedder.dim == DIM


def test_empty_input_sends_nothing(server, sleeps):
    assert make(server, sleeps).embed([]).shape == (0, DIM)
    assert server.requests == []


def test_get_embedder_openai_with_cache(server, sleeps, cache_dir):
    embedder = get_embedder(
        "openai:text-embedding-3-small?dimensions=4", base_url=server.base_url, sleep=sleeps.append
    )
    assert isinstance(embedder, CachedEmbedder) and embedder.dim == 4
    assert embedder.name == "openai:text-embedding-3-small?dimensions=4"
    embedder.embed(["a", "b"])
    embedder.embed(["b", "a"])
    assert len(server.requests) == 1 and server.requests[0][2]["dimensions"] == 4
    assert get_embedder("openai:text-embedding-3-large", cache=False).dim == 3072


def test_endpoints_serving_a_model_of_one_name_do_not_share_cached_vectors(sleeps, cache_dir):
    # two local servers (vLLM, Ollama) both calling their model "embed": the second was answered
    # with the first one's vectors from the disk cache, without a request
    first, second = FakeServer(), FakeServer()
    second.vector = lambda text: fake_vector(text[::-1] + "!")
    try:
        for server in (first, second):
            embedder = get_embedder("openai:fake-embed?dim=4", base_url=server.base_url, sleep=sleeps.append)
            out = embedder.embed(["hello"])
            rows = np.array([server.vector("hello")], dtype=np.float32)
            np.testing.assert_allclose(out, rows / np.linalg.norm(rows), rtol=1e-6)
            assert len(server.requests) == 1
        # the key and the cache folder name the endpoint, not the user in its URL nor the key
        embedder = OpenAIEmbedder("fake-embed", dim=4, base_url="http://me:secret@127.0.0.1:9/v1/")
        assert embedder.cache_name == "openai:fake-embed@http://127.0.0.1:9/v1"
        assert "secret" not in embedder.cache_name and embedder.name == "openai:fake-embed"
    finally:
        first.close()
        second.close()


def test_the_default_endpoint_keeps_the_cache_written_before_endpoints_were_told_apart():
    embedder = OpenAIEmbedder("text-embedding-3-small", base_url="https://api.openai.com/v1/")
    assert embedder.cache_name == embedder.name == "openai:text-embedding-3-small"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"api_key_env": "sk-abcdef0123456789"}, "NAME of the environment variable"),
        ({}, "pass dim="),
        ({"dim": 4, "batch_size": 0}, "batch_size"),
        ({"dim": 4, "dimensions": 8}, "contradicts"),
        ({"dim": 4, "max_chars": 0}, "max_chars"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        OpenAIEmbedder("some-local-model", **options)
    assert "abcdef0123456789" not in str(info.value)  # a key put in the wrong place is not echoed


def test_batches_embedded_before_a_failure_are_cached(server, sleeps, cache_dir):
    # a run that failed at its last batch had paid for all the others, and paid again on a rerun
    texts = [f"prompt {i}" for i in range(7)]
    server.fail_after = 2

    def cached_embedder():  # each run's own, as each process has
        name = "openai:fake-embed?dim=4&batch_size=2"
        return get_embedder(name, base_url=server.base_url, sleep=sleeps.append)

    with pytest.raises(UpstreamError, match="quota exceeded"):
        cached_embedder().embed(texts)
    assert len(server.requests) == 3
    server.fail_after = None
    np.testing.assert_allclose(cached_embedder().embed(texts), expected(texts), rtol=1e-6)
    assert [body["input"] for _, _, body in server.requests[3:]] == [texts[4:6], texts[6:]]


def test_a_wrong_dim_loses_no_cached_vector(server, sleeps, cache_dir):
    # an embedder named alike but stating another size took the cached shards for damaged ones and
    # deleted them, before its first request failed: the paid vectors were gone once dim was fixed
    def cached_embedder(dim):
        return get_embedder(f"openai:fake-embed?dim={dim}", base_url=server.base_url, sleep=sleeps.append)

    cached_embedder(4).embed(["a", "b"])
    with pytest.raises(UpstreamError, match="expected"):
        cached_embedder(8).embed(["a", "c"])
    assert len(server.requests) == 2
    np.testing.assert_allclose(cached_embedder(4).embed(["b", "a"]), expected(["b", "a"]), rtol=1e-6)
    assert len(server.requests) == 2


@pytest.mark.parametrize("value", [None, "NaN", 1e39])  # null, a NaN, beyond float32
def test_reply_with_a_non_finite_number_is_refused(server, sleeps, value, cache_dir):
    body = {"data": [{"index": 0, "embedding": [1.0, value, 0.0, 0.0]}]}
    server.script = [(200, json.dumps(body).replace('"NaN"', "NaN"), {})]
    embedder = CachedEmbedder(make(server, sleeps))
    with pytest.raises(UpstreamError, match="not a finite number"):
        embedder.embed(["a"])
    # nothing was cached: the next call asks again and gets a real vector
    np.testing.assert_allclose(embedder.embed(["a"]), expected(["a"]), rtol=1e-6)


def test_unpaired_surrogates_are_sent_as_replacement_characters(server, sleeps):
    # a JSON file may escape half an emoji ("\ud83d"): such a text cannot be UTF-8 encoded as it is
    out = make(server, sleeps).embed(["cut emoji \ud83d", "ok"])
    assert server.requests[0][2]["input"] == ["cut emoji \ufffd", "ok"]
    np.testing.assert_allclose(out, expected(["cut emoji \ufffd", "ok"]), rtol=1e-6)


@pytest.mark.parametrize(
    ("query", "options"),
    [
        # the name of an embedder without a character limit: a router trained with one saves it
        ("max_chars=None", {"max_chars": None}),
        ("dimensions=8&timeout=2.5&backoff=0.5", {"dimensions": 8, "timeout": 2.5, "backoff": 0.5}),
        ("base_url=http://127.0.0.1:9/v1&api_key_env=K", {"base_url": "http://127.0.0.1:9/v1"}),
    ],
)
def test_options_in_a_name_are_read_as_the_constructor_takes_them(query, options):
    embedder = get_embedder(f"openai:text-embedding-3-small?{query}", cache=False)
    assert {key: getattr(embedder, key) for key in options} == options
    assert get_embedder(embedder.name, cache=False).name == embedder.name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("openai:m?dim=abc", "dim must be a whole number, got 'abc'"),
        ("openai:m?dim=4&timeout=soon", "timeout must be a finite number"),
        ("openai:m?dim=4&timeout=nan", "timeout must be a finite number"),
        ("openai:m?dim=4&batch_size=-1", "batch_size must be >= 1"),
        ("openai:m?dim=4&retries=2", "unknown openai embedder option 'retries'; known: dimensions"),
        ("openai:m?dim", "write key=value"),
    ],
)
def test_bad_options_in_a_name_are_config_errors(name, message):
    # they were TypeErrors ('<' not supported between 'str' and 'int'): a traceback in the CLI
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_embedder(name, cache=False)
