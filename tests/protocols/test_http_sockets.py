"""HTTP/1.1 over real sockets on 127.0.0.1: a real server thread, httpx and raw sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from tests import apps
from tests.protocols.conftest import Receive, Scope, Send
from tests.utils import TIME_UNIT, run_server, wait_for

TIMEOUT = 5 * TIME_UNIT


def client_port_app() -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = str(scope["client"][1]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def test_get_and_post_round_trip(http_backend: str) -> None:
    with (
        run_server(apps.echo, http=http_backend) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
    ):
        got = client.get("/")
        assert got.status_code == 200
        assert got.content == b""
        assert got.headers["server"] == "tricorn"
        assert "date" in got.headers
        posted = client.post("/", content=b"some data", headers={"content-type": "text/x"})
        assert posted.status_code == 200
        assert posted.content == b"some data"
        assert posted.headers["content-type"] == "text/x"
        assert posted.headers["content-length"] == "9"


def test_large_upload_streamed_and_echoed(http_backend: str) -> None:
    pieces: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            pieces.append(len(message["body"]))
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": bytes(body)})

    data = bytes(range(256)) * (4 * 4096)  # 4 MiB

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    with (
        run_server(app, http=http_backend) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
    ):
        chunked = client.post("/", content=chunks())
        assert chunked.status_code == 200
        assert chunked.content == data
        assert len(pieces) > 1, "the body is streamed to the app in pieces"
        pieces.clear()
        sized = client.post("/", content=data)
        assert sized.content == data
        assert len(pieces) > 1


def test_streaming_download(http_backend: str) -> None:
    with (
        run_server(apps.streaming, http=http_backend) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
        client.stream("GET", "/?chunks=200") as streamed,
    ):
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in streamed.headers
        body = b"".join(streamed.iter_bytes())
    assert body == b"".join(b"chunk %d\n" % i for i in range(200))


def test_keep_alive_reuses_the_connection(http_backend: str) -> None:
    with (
        run_server(client_port_app(), http=http_backend) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
    ):
        ports = {client.get("/").text for _ in range(3)}
    assert len(ports) == 1


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` Content-Length framed responses from ``sock``."""
    buffer = b""
    out: list[bytes] = []
    while len(out) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end != -1:
            head = buffer[:head_end].lower()
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            end = head_end + 4 + length
            if len(buffer) >= end:
                out.append(buffer[:end])
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(out)} responses"
        buffer += chunk
    assert buffer == b""
    return out


def test_pipelining_over_a_raw_socket(http_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # later requests answer faster: order must still be kept
        await asyncio.sleep(0.01 * (3 - int(scope["path"][1:])))
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})

    with run_server(app, http=http_backend) as server, server.connect() as sock:
        sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
        responses = read_responses(sock, 3)
    assert [r.rpartition(b"\r\n\r\n")[2] for r in responses] == [b"/0", b"/1", b"/2"]


def test_keep_alive_timeout_closes_idle_socket(http_backend: str) -> None:
    with (
        run_server(apps.hello, http=http_backend, timeout_keep_alive=1) as server,
        server.connect() as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [reply] = read_responses(sock, 1)
        assert reply.endswith(b"Hello, world!")
        sent = time.monotonic()
        sock.settimeout(TIMEOUT)
        assert sock.recv(1024) == b"", "the idle connection is closed"
        elapsed = time.monotonic() - sent
    assert 0.9 <= elapsed <= 3 * TIME_UNIT


def test_client_disconnect_mid_response(http_backend: str) -> None:
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            for _ in range(2000):
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                await asyncio.sleep(0.005)
            outcome.append("finished")
        except OSError:
            outcome.append("OSError")
        finally:
            done.set()

    with run_server(app, http=http_backend) as server:
        sock = server.connect()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.close()
        assert done.wait(TIMEOUT), "the app did not notice the client leaving"
    assert outcome == ["OSError"]


def test_client_disconnect_seen_by_receive(http_backend: str) -> None:
    messages: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            messages.append(message["type"])
            if message["type"] == "http.disconnect":
                return

    with run_server(app, http=http_backend) as server:
        sock = server.connect()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        wait_for(lambda: messages, what="first body piece")
        sock.close()
        wait_for(lambda: "http.disconnect" in messages, what="http.disconnect")
        state = server.server.server_state
        wait_for(lambda: not state.connections, timeout=2, what="the connection to be dropped")
    assert messages == ["http.request", "http.disconnect"]


def test_limit_concurrency_503(http_backend: str) -> None:
    gate = apps.Gate()
    with run_server(gate, http=http_backend, limit_concurrency=1) as server:
        first = server.connect()
        try:
            first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert gate.entered.wait(TIMEOUT)
            with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
                refused = client.get("/")
            assert refused.status_code == 503
            assert refused.text == "Service Unavailable"
            assert refused.headers["connection"] == "close"
            gate.release.set()
            [reply] = read_responses(first, 1)
            assert reply.startswith(b"HTTP/1.1 200 ")  # the request in flight is served
            assert reply.endswith(b"released")
        finally:
            gate.release.set()
            first.close()
