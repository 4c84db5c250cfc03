"""``lmroute serve`` as a real process on a free 127.0.0.1 port, for the end-to-end tests.

``running_serve(command, env=..., log_dir=...)`` starts ``command(port)`` in its own process group,
waits until ``GET /health`` answers and always stops the whole group again (a shell running
``lmroute serve`` included). The port is also in the process's ``LMROUTE_PORT`` variable, so a shell
snippet can read it from there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llama_servers import HOST, free_port

#: Importing lmroute, FastAPI and the SDK takes a few seconds on a busy 2-core machine.
START_TIMEOUT = 60.0
_PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServeProcess:
    """A running server: ``url`` for ``/health`` and ``/metrics``, ``base_url`` for ``openai.OpenAI``."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        """What the process printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"


def get_json(url: str, *, timeout: float = 10.0) -> dict:
    """``GET url`` as JSON, without any proxy from the environment (everything here is on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.load(response)


def get_text(url: str, *, timeout: float = 10.0) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``, in Prometheus text ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _die_with_parent() -> None:
    import ctypes

    # The kernel stops the server if the test process dies without cleaning up.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _launch(argv: Sequence[str], *, port: int, env: Mapping[str, str], cwd: Path | None, log_path: Path):
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            list(argv),
            env={**env, "LMROUTE_PORT": str(port)},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def wait_healthy(server: ServeProcess, *, timeout: float = START_TIMEOUT) -> dict:
    """``GET /health`` once it answers; RuntimeError with the server's output if it exits or never does."""
    start = time.monotonic()
    while True:
        code = server.process.poll()
        if code is not None:
            raise RuntimeError(f"lmroute serve exited with code {code}; its output:\n{server.output()}")
        try:
            return get_json(f"{server.url}/health", timeout=2)
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(
                f"lmroute serve did not answer on {server.url}/health within {timeout:.0f} s; "
                f"its output:\n{server.output()}"
            )
        time.sleep(0.1)


def stop(server: ServeProcess, *, timeout: float = 15.0) -> int | None:
    """SIGTERM to the process group (uvicorn shuts down gracefully), SIGKILL if it lingers; the exit code."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, sig)
        try:
            return server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    return None


@contextlib.contextmanager
def running_serve(
    command: Callable[[int], Sequence[str]],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path | None = None,
    port: int | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[ServeProcess]:
    """Run ``command(port)`` until ``/health`` answers; yields the :class:`ServeProcess`, stops it on exit.

    ``port`` is the first port tried (default: a free one); another process may take it between the
    probe and the bind, and then the next attempt uses a fresh one.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        for attempt in range(_PORT_ATTEMPTS):
            chosen = port if port is not None and attempt == 0 else free_port()
            log_path = log_dir / f"lmroute-serve-{chosen}.log"
            server = ServeProcess(
                _launch(command(chosen), port=chosen, env=env, cwd=cwd, log_path=log_path), chosen, log_path
            )
            try:
                wait_healthy(server, timeout=timeout)
                break
            except RuntimeError:
                lost_port = "address already in use" in server.output().lower()
                stop(server)
                if not lost_port or attempt == _PORT_ATTEMPTS - 1:
                    raise
        yield server
    finally:
        if server is not None:
            stop(server)
