"""Downloads from servers that misbehave (served on 127.0.0.1): each failure is one DownloadError
line, and no file is left behind that a later run would take for a whole download."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lmroute.data.download import fetch_files, get
from lmroute.data.public import PARTS
from lmroute.data.pull import pull
from lmroute.exceptions import DownloadError

pytestmark = pytest.mark.network_loopback

BODY = b'{"question_id": 1, "turns": ["hello"]}\n' * 20


class _Faulty(BaseHTTPRequestHandler):
    """Answers GET with ``fault``: ``ok``, ``short`` (fewer bytes than its Content-Length),
    ``chunk`` (a chunk cut off), ``garbage`` (not HTTP), ``html`` (a web page, status 200),
    ``loop`` (a redirect to itself), ``empty`` (no bytes, status 200) or ``page`` (a web page
    said to be plain text, status 200)."""

    fault: list[str]

    def do_GET(self):
        fault = self.fault[0]
        if fault == "loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault in ("empty", "page"):
            page = b"" if fault == "empty" else b"\n<!DOCTYPE html>\n<html><body>Access denied</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            self.close_connection = True
            return
        if fault == "garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            return
        if fault == "html":  # a captive portal's login page, with status 200
            page = b"<html><body>Sign in to the guest network</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            self.close_connection = True
            return
        if fault == "chunk":
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(BODY) + BODY[:40])
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) + (100 if fault == "short" else 0)))
            self.end_headers()
            self.wfile.write(BODY)
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serving(fault: list[str]) -> Iterator[str]:
    handler = type("Handler", (_Faulty,), {"fault": fault})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("short", "IncompleteRead"),
        ("chunk", "IncompleteRead"),
        ("garbage", "BadStatusLine"),
        ("html", r"a web page \(text/html\)"),
        # urllib's message of a redirect loop is three lines
        ("loop", "redirect error that would lead to an infinite loop"),
        # kept, each stayed in the cache for good, and every later run failed on it as bad data
        ("empty", "the server answered an empty file"),
        ("page", "the server answered a web page"),
    ],
)
def test_a_broken_answer_is_one_line_and_leaves_no_file(tmp_path, fault, says):
    fault_now = [fault]
    with _serving(fault_now) as url:
        files = {"mt_bench/question.jsonl": f"{url}/question.jsonl"}
        with pytest.raises(
            DownloadError, match=f"could not download {url}/question.jsonl: .*{says}.*Offline"
        ) as raised:
            fetch_files(files, tmp_path / "cache", what="test data", hint="Offline? Pass --data-dir.")
        assert "\n" not in str(raised.value)
        assert not (tmp_path / "cache").exists() or not any(
            p.is_file() for p in (tmp_path / "cache").rglob("*")
        )
        fault_now[0] = "ok"  # the server mended: the next run downloads the whole file
        assert fetch_files(files, tmp_path / "cache", what="test data") == [
            tmp_path / "cache/mt_bench/question.jsonl"
        ]
    assert (tmp_path / "cache/mt_bench/question.jsonl").read_bytes() == BODY


def test_a_gzip_encoded_answer_is_kept_decoded(tmp_path):
    """A mirror serving objects stored gzip-encoded (as S3 does, asked or not) had the compressed
    bytes kept in the cache as the data file; every later run failed on it as a binary file."""
    import gzip

    class Gzipped(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/broken.jsonl":  # encoded as it says, with bytes that are not gzip
                data, encoding = b"not gzip at all", "gzip"
            elif self.path == "/br.jsonl":  # an encoding lmroute does not decode
                data, encoding = b"\x0b\x01\x80", "br"
            else:
                data, encoding = gzip.compress(BODY), "gzip"
            self.send_response(200)
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gzipped)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        fetch_files({"q.jsonl": f"{url}/q.jsonl"}, tmp_path / "cache", what="test data")
        assert (tmp_path / "cache/q.jsonl").read_bytes() == BODY
        for name, says in [("broken", "its gzip encoding does not decode"), ("br", "encoded as 'br'")]:
            with pytest.raises(DownloadError, match=f"could not download {url}/{name}.jsonl: .*{says}"):
                fetch_files({f"{name}.jsonl": f"{url}/{name}.jsonl"}, tmp_path / "cache", what="test data")
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["q.jsonl"]


def test_a_url_that_is_not_valid_is_said_to_be_so(monkeypatch):
    """An invalid URL (a port that is no number; a mirror variable read from a CR LF file, its CR
    in every URL) was told as "the server's answer broke off or is not HTTP": no server was asked."""
    invalid = [("http://127.0.0.1:abc/q.jsonl", "nonnumeric port"), ("http://127.0.0.1:9/a\r/q", "control")]
    for url, says in invalid:
        with pytest.raises(DownloadError, match=f"not a valid URL .*{says}.*Offline") as raised:
            get(url, timeout=5, hint="Offline? Pass --data-dir.")
        assert "broke off" not in str(raised.value) and not set("\r\n") & set(str(raised.value))
    dataset = PARTS["gsm8k"].dataset
    monkeypatch.setenv(dataset.url_env, "http://mirror.example/evals/\r")
    assert dataset.base_url() == "http://mirror.example/evals"
    assert dataset.base_url(" http://other.example/ ") == "http://other.example"
    monkeypatch.setenv(dataset.url_env, " ")
    assert dataset.base_url() == dataset.url


@contextlib.contextmanager
def _serving_parts(tmp_path, requested: list[str] | None = None) -> Iterator[tuple[Path, dict[str, str]]]:
    """GSM8K's and MT-Bench's files (each holding its own path) served from ``tmp_path/www`` on
    loopback; yields that folder and the ``urls`` pull takes. Paths asked for go to ``requested``."""
    root = tmp_path / "www"
    for p in ("gsm8k", "mt-bench"):
        for name in PARTS[p].files:
            (root / "routellm-evals" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "routellm-evals" / name).write_text(f"the bytes of routellm-evals/{name}\n")

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            if requested is not None:
                requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, {"routellm-evals": f"http://127.0.0.1:{server.server_address[1]}/routellm-evals"}
    finally:
        server.shutdown()
        server.server_close()


def test_a_pull_that_stops_keeps_what_it_fetched(tmp_path):
    """A failed ``lmroute data pull`` lists the files it fetched, so the rerun fetches only the rest."""
    requested: list[str] = []
    folder = tmp_path / "carried"
    with _serving_parts(tmp_path, requested) as (root, urls):
        missing = root / "routellm-evals/mt_bench/judgements.jsonl"
        missing.unlink()  # the 4th of 5 files: its 404 stops the pull
        with pytest.raises(DownloadError, match=r"judgements\.jsonl"):
            pull(folder, only=["gsm8k", "mt-bench"], urls=urls)
        assert len(requested) == 4
        missing.write_text("the judgements\n")
        requested.clear()
        result = pull(folder, only=["gsm8k", "mt-bench"], urls=urls)
    assert requested == [
        "/routellm-evals/mt_bench/judgements.jsonl",
        "/routellm-evals/mt_bench/contaminated_prompts.jsonl",
    ]
    assert (result.files, result.downloaded) == (5, 2)
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split("  ")
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest


def test_a_pull_that_cannot_start_says_only_why(tmp_path, capsys):
    """Offline, ``lmroute data pull`` printed "downloading N files" and a progress bar before its
    error, where a command fetching into the cache says the error alone."""
    with pytest.raises(DownloadError, match="could not download"):
        pull(tmp_path / "carried", only=["gsm8k"], urls={"routellm-evals": "http://127.0.0.1:9/unreachable"})
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "carried").exists()
    with _serving_parts(tmp_path) as (_, urls):
        pull(tmp_path / "carried", only=["gsm8k"], urls=urls)
    assert "downloading 2 files" in capsys.readouterr().err


def test_a_file_deleted_from_the_folder_is_no_longer_listed(tmp_path):
    """A later pull of other parts listed a file that was gone: SHA256SUMS failed to check and the
    manifest said the folder held a part it did not."""
    folder = tmp_path / "carried"
    with _serving_parts(tmp_path) as (_, urls):
        pull(folder, only=["gsm8k", "mt-bench"], urls=urls)
        (folder / "routellm-evals" / "gsm8k" / "gsm8k_responses.csv").unlink()
        result = pull(folder, only=["mt-bench"], urls=urls)
    present = sorted(
        str(p.relative_to(folder)) for p in (folder / "routellm-evals").rglob("*") if p.is_file()
    )
    assert len(present) == 4  # of the 5 files
    listed = [line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == present and result.files == len(present)
    assert "gsm8k_responses.csv" not in (folder / "MANIFEST.json").read_text()


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "routellm-evals/gsm8k/gsm8k_responses.csv"},  # no part, no checksum
        {"path": "routellm-evals/gsm8k/gsm8k_responses.csv", "sha256": "0", "part": ["gsm8k"]},
        {"path": "routellm-evals/gsm8k/gsm8k_responses.csv", "sha256": 5, "part": "gsm8k"},
    ],
)
def test_a_damaged_manifest_entry_is_fetched_again_not_a_traceback(tmp_path, entry):
    """A manifest entry without the fields pull writes was a KeyError (or TypeError) traceback
    when the next pull wrote the listing; an unreadable manifest was already passed over."""
    folder = tmp_path / "carried"
    with _serving_parts(tmp_path) as (_, urls):
        pull(folder, only=["gsm8k"], urls=urls)
        (folder / "MANIFEST.json").write_text(json.dumps({"files": [entry]}))
        result = pull(folder, only=["mt-bench"], urls=urls)
        assert (result.files, result.downloaded) == (3, 3)  # the damaged entry's file is not listed
        result = pull(folder, only=["gsm8k", "mt-bench"], urls=urls)
    assert (result.files, result.downloaded) == (5, 2)  # gsm8k's files, fetched again
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split("  ")
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest
