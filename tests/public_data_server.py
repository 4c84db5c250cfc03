"""The shared data served on loopback in the layout of the public sources, for download tests.

RouteLLM's evaluation files are served under ``/routellm-evals/`` as in the RouteLLM repository,
Arena-Hard's questions as arena-hard-auto's ``/arena-hard-v0.1/question.jsonl``. Every request
path is recorded, so a test can say which files a command downloaded.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class PublicDataServer:
    """Base URLs of the served sources, the paths requested so far, and the environment that
    points lmroute's downloads here."""

    data_url: str
    prompts_url: str
    requested: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"LMROUTE_DATA_URL": self.data_url, "LMROUTE_PROMPTS_URL": self.prompts_url}


class _Handler(SimpleHTTPRequestHandler):
    requested: list[str]

    def do_GET(self):
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serving_public_data(data_dir: Path, root: Path) -> Iterator[PublicDataServer]:
    """Serve ``data_dir``'s public files from ``root`` (a fresh folder: links, no copies) on 127.0.0.1."""
    root.mkdir(parents=True, exist_ok=True)
    os.symlink(data_dir / "routellm-evals", root / "routellm-evals")
    (root / "arena-hard-v0.1").mkdir()
    os.symlink(data_dir / "arena-hard" / "questions.jsonl", root / "arena-hard-v0.1" / "question.jsonl")
    requested: list[str] = []
    handler = type("Handler", (_Handler,), {"requested": requested})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield PublicDataServer(f"{base}/routellm-evals", f"{base}/arena-hard-v0.1", requested)
    finally:
        server.shutdown()
        server.server_close()
