"""A local Ray cluster on 127.0.0.1 for the tests: ``ray start --head --block`` in a process group.

Every process of the cluster carries a marker variable, so that stopping it ends exactly those
processes (Ray's workers run in process groups of their own), and never any other Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MARKER = "LMROUTE_TEST_RAY_CLUSTER"


@dataclass(frozen=True)
class RayCluster:
    """A running head node: ``address`` for ``ray.init`` and ``--ray-address``."""

    address: str
    marker: str
    env: dict[str, str]

    def processes(self, title: str = "") -> list[int]:
        """Pids of this cluster's processes whose command line contains ``title``."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                environ = (proc / "environ").read_bytes()
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"{_MARKER}={self.marker}".encode() in environ.split(b"\0") and title in cmdline:
                found.append(int(proc.name))
        return found


@contextlib.contextmanager
def local_ray_cluster(*, num_cpus: int = 4, start_timeout: float = 120.0) -> Iterator[RayCluster]:
    """Start a head node bound to 127.0.0.1 (all its ports chosen free), yield it, then stop it."""
    # Short: Ray's unix socket paths must fit in 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="lmr-ray-", dir="/tmp")
    # Chosen together, each socket held until all are: ports asked for one after another may be
    # the same one twice (two of Ray's components then refuse to start).
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(8)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        port, *others = (sock.getsockname()[1] for sock in sockets)
    # Auth explicitly off on both sides: a new head enables token auth by default, and a client
    # reads the token from ~/.ray only in token mode (a local ray.init writes one there).
    env = {**os.environ, _MARKER: temp_dir, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    flags = [
        "--ray-client-server-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
        "--node-manager-port",
        "--object-manager-port",
    ]
    ports = {"--port": port, **dict(zip(flags, others, strict=True))}
    argv = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block"]
    argv += ["--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--temp-dir", temp_dir]
    argv += ["--include-dashboard", "false", "--disable-usage-stats"]
    for flag, value in ports.items():
        argv += [flag, str(value)]
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115  (closed below)
    head = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", temp_dir, env)
    try:
        _wait_for_head(head, Path(temp_dir) / "head.log", start_timeout)
        yield cluster
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while cluster.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in cluster.processes():  # what did not stop by itself: only this cluster's
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_head(head: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}:\n{log.read_text(errors='replace')}")
        if b"will now block forever" in log.read_bytes():
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not start in {timeout:.0f} s:\n{log.read_text(errors='replace')}")
