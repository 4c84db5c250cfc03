"""An OpenAI-compatible upstream on raw asyncio sockets that fails in the ways real ones do.

Unlike ``fake_openai.FakeUpstream`` (a Starlette app), this one can break HTTP itself: reset a
connection, promise more bytes than it sends, cut a stream without a last chunk. ``plan`` is a list
of behaviours, one per request; the last one repeats. A behaviour is a string:

    ok                    a completion, or (for ``"stream": true``) 3 chunks and ``[DONE]``
    status:CODE[:RA]      an OpenAI-shaped error with HTTP CODE, and ``Retry-After: RA`` if given
    hang:SECONDS          nothing for SECONDS, then ``ok``
    reset                 the connection is reset (RST) as soon as the request is read
    close                 the connection is closed cleanly without an answer
    truncated             ``content-length`` promises more bytes of JSON than are sent
    malformed             200 with an HTML body
    not_completion        200 with a JSON object that has no ``choices``
    stream_cut            (streams) 2 chunks, then the connection is reset
    stream_partial        (streams) 1 chunk, then half an event, then the connection closes
    stream_error          (streams) 1 chunk, then an ``{"error": ...}`` event
    stream_empty          (streams) an event stream that ends without any event, not even ``[DONE]``

Every request's (time, JSON body, authorization header) is kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class FaultyUpstream:
    def __init__(self, name: str, plan: list[str] | None = None):
        self.name = name
        self.plan = list(plan or ["ok"])
        self.requests: list[tuple[float, dict[str, Any], str | None]] = []

    def set(self, *plan: str) -> None:
        """Behaviours for the next requests (the last repeats); forgets the requests seen."""
        self.plan = list(plan)
        self.requests.clear()

    def _next(self) -> str:
        return self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]

    def completion(self, model: str) -> bytes:
        return json.dumps(
            {
                "id": "chatcmpl-faulty",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"{self.name} says hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
            }
        ).encode()

    def chunk(self, model: str, text: str) -> bytes:
        data = {
            "id": "chatcmpl-faulty",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, auth = 0, None
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value)
                    elif key.strip().lower() == b"authorization":
                        auth = value.strip().decode()
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests.append((time.monotonic(), body, auth))
                if not await self._answer(self._next(), body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, behaviour: str, body: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Write the answer; False when the connection is finished with."""
        kind, _, arg = behaviour.partition(":")
        model = str(body.get("model", "?"))
        if kind == "hang":
            await asyncio.sleep(float(arg))
            kind = "ok"
        if kind == "reset":
            _reset(writer)
            return False
        if kind == "close":
            return False
        if kind == "status":
            code, _, retry_after = arg.partition(":")
            error = json.dumps({"error": {"message": f"{self.name} failed", "type": "server_error"}})
            extra = {"retry-after": retry_after} if retry_after else {}
            await _send(writer, int(code), error.encode(), extra)
            return True
        if kind == "truncated":
            payload = self.completion(model)
            writer.write(_head(200, len(payload), {}) + payload[: len(payload) // 2])
            await writer.drain()
            return False
        if kind == "malformed":
            await _send(writer, 200, b"<html>bad gateway</html>", {})
            return True
        if kind == "not_completion":
            await _send(writer, 200, b'{"object": "list", "data": []}', {})
            return True
        if not body.get("stream"):
            await _send(writer, 200, self.completion(model), {})
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        if kind == "stream_empty":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        for i, word in enumerate([f"{self.name} ", "says ", "hi"]):
            if kind == "stream_cut" and i == 2:
                _reset(writer)
                return False
            if kind == "stream_partial" and i == 1:
                writer.write(_chunked(b'data: {"id": "chatcmpl-faulty", "choi'))
                await writer.drain()
                return False
            if kind == "stream_error" and i == 1:
                writer.write(_chunked(b'data: {"error": {"message": "the model crashed"}}\n\n'))
                break
            writer.write(_chunked(self.chunk(model, word)))
            await writer.drain()
        else:
            writer.write(_chunked(b"data: [DONE]\n\n"))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def _head(status: int, length: int, extra: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "content-type: application/json", f"content-length: {length}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _send(writer: asyncio.StreamWriter, status: int, payload: bytes, extra: dict[str, str]) -> None:
    writer.write(_head(status, len(payload), extra) + payload)
    await writer.drain()


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: SO_LINGER with a zero timeout."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextmanager
def running(upstream: FaultyUpstream) -> Iterator[str]:
    """Serve ``upstream`` on a free 127.0.0.1 port in a thread; yields its ``/v1`` base URL."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    state: dict[str, Any] = {}

    async def main() -> None:
        server = await asyncio.start_server(upstream._handle, "127.0.0.1", 0)
        state["port"] = server.sockets[0].getsockname()[1]
        state["stop"] = asyncio.Event()
        ready.set()
        async with server:
            await state["stop"].wait()
        # Connections still open (a hang in progress) end here, while the loop can still close them.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the faulty upstream did not start")
    try:
        yield f"http://127.0.0.1:{state['port']}/v1"
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()


@dataclass(frozen=True)
class FaultyUpstreams:
    """A strong and a weak :class:`FaultyUpstream`, running; ``urls`` maps each tier to its base URL."""

    strong: FaultyUpstream
    weak: FaultyUpstream
    urls: dict[str, str]

    def reset(self) -> None:
        """Both answer ``ok`` again and forget the requests they saw."""
        self.strong.set("ok")
        self.weak.set("ok")


@contextmanager
def running_upstreams() -> Iterator[FaultyUpstreams]:
    strong, weak = FaultyUpstream("strong"), FaultyUpstream("weak")
    with running(strong) as strong_url, running(weak) as weak_url:
        yield FaultyUpstreams(strong, weak, {"strong": strong_url, "weak": weak_url})
