"""A Ray address where no cluster answers: every command on Ray stops at once with one line, and
leaves no file behind (``ray.init`` there would retry for many minutes, then raise a
traceback; here it must not be reached at all)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fake_openai import free_port

from lmroute.cli import main

ray = pytest.importorskip("ray")

UPSTREAM = "http://127.0.0.1:9/v1"


pytestmark = pytest.mark.usefixtures("ray_not_started")


@pytest.fixture(params=["closed-port", "not-an-address"])
def address(request) -> tuple[str, str]:
    """An address, and what the error must say of it."""
    if request.param == "closed-port":
        port = free_port()  # nothing listens there
        return f"127.0.0.1:{port}", f"no Ray cluster answers at 127.0.0.1:{port}"
    return "head-node", "Ray address head-node: Invalid address format"


def _one_error_line(capsys, expected: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmroute: error: ") and expected in err[0], err


def test_score(tmp_path, capsys, address):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n")
    output = tmp_path / "scores.jsonl"
    argv = ["score", "--router", "length", "--input", str(prompts), "--output", str(output), "--quiet"]
    assert main([*argv, "--ray-address", address[0]]) == 1
    _one_error_line(capsys, address[1])
    assert not output.exists()


def test_label(tmp_path, capsys, address):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n")
    argv = ["label", "--prompts", str(prompts), "--mode", "judge", "--out", str(tmp_path / "run")]
    argv += ["--judge", f"name=judge,base_url={UPSTREAM}"]
    argv += ["--model", f"name=a,base_url={UPSTREAM}", "--model", f"name=b,base_url={UPSTREAM}"]
    assert main([*argv, "--quiet", "--ray-address", address[0]]) == 1
    _one_error_line(capsys, address[1])
    assert not (tmp_path / "run").exists()


def test_serve(tmp_path, capsys, address):
    argv = ["serve", "--routers", "length", "--port", str(free_port())]
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", UPSTREAM, f"--{tier}-model", tier]
    assert main([*argv, "--ray-address", address[0]]) == 1
    _one_error_line(capsys, address[1])


@pytest.mark.parametrize("flags", [["--ray"], ["--ray-address", "auto"]])
def test_a_bad_address_in_ray_address_is_named_as_such(tmp_path, capsys, monkeypatch, flags):
    """The error said "Ray address None: Invalid address format: head-node"."""
    monkeypatch.setenv("RAY_ADDRESS", "head-node")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n")
    assert main(["score", "--router", "length", "--input", str(prompts), "--quiet", *flags]) == 1
    _one_error_line(capsys, "Ray address in RAY_ADDRESS: Invalid address format: head-node")


@pytest.mark.parametrize("address", [None, "auto"])
def test_a_client_address_in_ray_address_is_left_to_ray(monkeypatch, address):
    from lmroute.cluster.connect import init_ray

    joined = []
    monkeypatch.setattr(ray, "init", lambda address, **options: joined.append(address))
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{free_port()}")
    init_ray(address)
    assert joined == [address]


@contextmanager
def _listening(kind: str) -> Iterator[str]:
    """A loopback server at the returned address that is no Ray head: ``silent`` accepts and says
    nothing, ``http`` answers as a web server does, ``grpc`` is a gRPC server without Ray's GCS;
    ``gcs`` answers the call a head's GCS answers first."""
    if kind in ("grpc", "gcs"):
        import grpc

        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        if kind == "gcs":
            answer = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
            handler = grpc.method_handlers_generic_handler(
                "ray.rpc.NodeInfoGcsService", {"GetClusterId": answer}
            )
            server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop(None)
        return
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            if kind == "http":
                connection.recv(1024)
                connection.sendall(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                connection.close()
            else:
                held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for connection in held:
            connection.close()
        thread.join(timeout=5)


@pytest.fixture
def loopback_node(monkeypatch):
    # ray.init (and the check, which resolves the address as it does) reads 127.0.0.1 as this
    # machine's network address: the servers here listen on loopback only.
    import ray._private.services

    monkeypatch.setattr(ray._private.services, "get_node_ip_address", lambda *args: "127.0.0.1")


@pytest.mark.parametrize(
    "kind, message",
    [
        ("silent", "the port answers, but not as a Ray head node (not gRPC within 1 s)"),
        ("http", "the port answers, but not as a Ray head node (not gRPC within 1 s)"),
        ("grpc", "a gRPC server that is not a Ray head node's GCS"),
    ],
)
def test_a_port_that_is_no_ray_head_is_one_line_at_once(loopback_node, monkeypatch, capsys, kind, message):
    """ray.init at a port that accepts connections but is no head node's (the dashboard's, another
    server's) waited for many minutes, then raised a traceback."""
    import lmroute.cluster.connect

    monkeypatch.setattr(lmroute.cluster.connect, "GCS_TIMEOUT", 1.0)
    argv = ["serve", "--routers", "length", "--port", str(free_port())]
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", UPSTREAM, f"--{tier}-model", tier]
    with _listening(kind) as address:
        assert main([*argv, "--ray-address", address]) == 1
        _one_error_line(capsys, f"Ray address {address}: {message}")


def test_a_head_that_answers_is_joined(loopback_node, monkeypatch):
    from lmroute.cluster.connect import init_ray

    joined = []
    monkeypatch.setattr(ray, "init", lambda address, **options: joined.append(address))
    with _listening("gcs") as address:
        init_ray(address)
    assert joined == [address]
