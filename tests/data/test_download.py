"""Downloads from servers that misbehave (served on 127.0.0.1): each failure is one DownloadError
line, and no file is left behind that a later run would take for a whole download."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lmroute.data.download import fetch_files
from lmroute.exceptions import DownloadError

pytestmark = pytest.mark.network_loopback

BODY = b'{"question_id": 1, "turns": ["hello"]}\n' * 20


class _Faulty(BaseHTTPRequestHandler):
    """Answers GET with ``fault``: ``ok``, ``short`` (fewer bytes than its Content-Length),
    ``chunk`` (a chunk cut off) or ``garbage`` (not HTTP)."""

    fault: list[str]

    def do_GET(self):
        fault = self.fault[0]
        if fault == "garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
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
    [("short", "IncompleteRead"), ("chunk", "IncompleteRead"), ("garbage", "BadStatusLine")],
)
def test_a_broken_answer_is_one_line_and_leaves_no_file(tmp_path, fault, says):
    fault_now = [fault]
    with _serving(fault_now) as url:
        files = {"mt_bench/question.jsonl": f"{url}/question.jsonl"}
        with pytest.raises(
            DownloadError, match=f"could not download {url}/question.jsonl: .*{says}.*Offline"
        ):
            fetch_files(files, tmp_path / "cache", what="test data", hint="Offline? Pass --data-dir.")
        assert not (tmp_path / "cache").exists() or not any(
            p.is_file() for p in (tmp_path / "cache").rglob("*")
        )
        fault_now[0] = "ok"  # the server mended: the next run downloads the whole file
        assert fetch_files(files, tmp_path / "cache", what="test data") == [
            tmp_path / "cache/mt_bench/question.jsonl"
        ]
    assert (tmp_path / "cache/mt_bench/question.jsonl").read_bytes() == BODY
