"""Malformed and hostile requests: the status each one gets, on both backends.

Each case is fed whole and byte by byte (or in small pieces when large) and must give the
same bytes: an error response with ``connection: close``, then the connection closes, and
the app never sees the broken request. A few cases also go over a real socket.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.protocols.conftest import (
    ERROR_BODIES,
    GET,
    Conn,
    Receive,
    Scope,
    Send,
    error,
    plain_app,
    response,
    until,
)
from tests.utils import TIME_UNIT, run_server

HELLO = response(b"200 OK", b"content-length: 13\r\n", b"Hello, world!")
HOST = b"Host: x\r\n"


class CountingApp:
    """Answers ``Hello, world!``; counts the requests it saw."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append(scope["path"])
        await plain_app()(scope, receive, send)


def many_headers(count: int) -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(count))


# (id, request bytes, expected status); the app must never be called.
HEAD_ERRORS: list[tuple[str, bytes, int]] = [
    ("garbage", b"\x00GARBAGE\r\n\r\n", 400),
    ("no-version", b"GET /\r\n\r\n", 400),
    ("bad-version-text", b"GET / HTTQ/1.1\r\nHost: x\r\n\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("relative-target", b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("header-no-colon", b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", 400),
    ("header-space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("header-nul", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bad-content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("negative-content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (
        "conflicting-content-length",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    ),
    (
        "content-length-and-chunked",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "transfer-encoding-gzip",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("http-2", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("http-3", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    ("target-too-long", b"GET /" + b"a" * 8190 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + many_headers(100) + b"\r\n", 431),
    (
        "head-too-large",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (80 * 1024) + b"\r\n\r\n",
        431,
    ),
    ("line-too-long", b"GET /" + b"a" * (70 * 1024), 414),
]


async def feed_in_pieces(conn: Conn, data: bytes, size: int) -> bytes:
    for start in range(0, len(data), size):
        if conn.closed:
            break
        conn.feed(data[start : start + size])
        await asyncio.sleep(0)
    await conn.settle()
    return conn.transport.take()


@pytest.mark.parametrize(
    ("request_bytes", "status"), [c[1:] for c in HEAD_ERRORS], ids=[c[0] for c in HEAD_ERRORS]
)
@pytest.mark.parametrize("mode", ["whole", "pieces"])
async def test_broken_request_head(
    http_backend: str, request_bytes: bytes, status: int, mode: str
) -> None:
    app = CountingApp()
    conn = Conn(http_backend, app)
    if mode == "whole":
        out = await conn.exchange(request_bytes)
    else:
        # byte by byte; big inputs in small pieces to stay fast
        size = 1 if len(request_bytes) < 4096 else 997
        out = await feed_in_pieces(conn, request_bytes, size)
    assert out == error(status)
    assert conn.closed
    assert app.calls == [], "the app must not see a broken request"
    await until(lambda: conn.transport.lost)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/0.9\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
        b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
        b"GET / HTTQ/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_backends_agree_on_odd_versions(request_bytes: bytes) -> None:
    """Whatever the status for an odd version line, both parsers must give the same one."""
    outputs = {}
    for backend in ("httptools", "h11"):
        conn = Conn(backend, CountingApp())
        outputs[backend] = await conn.exchange(request_bytes)
        assert conn.closed
    assert outputs["httptools"] == outputs["h11"]
    assert outputs["h11"][9:10] in (b"4", b"5")


async def test_limits_are_inclusive(http_backend: str) -> None:
    """Exactly at each limit is still fine."""
    app = CountingApp()
    conn = Conn(http_backend, app)
    target = b"/" + b"a" * 8189  # 8190 bytes
    assert await conn.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n") == HELLO
    # 100 header fields in all
    assert (
        await conn.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n" + many_headers(99) + b"\r\n") == HELLO
    )
    assert not conn.closed
    assert len(app.calls) == 2


async def test_h11_max_incomplete_event_size_setting(http_backend: str) -> None:
    conn = Conn(http_backend, CountingApp(), h11_max_incomplete_event_size=1024)
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    out = await feed_in_pieces(conn, request, 100)
    assert out == error(431)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
        b"5\r\nhelloXX0\r\n\r\n",  # chunk not followed by CRLF
        b"-5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["not-hex", "no-crlf", "negative"],
)
@pytest.mark.parametrize("mode", ["whole", "bytewise"])
async def test_bad_chunked_body(http_backend: str, body: bytes, mode: str) -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # The head was fine, so the app may start; it never gets the broken body.
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect":
                return
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"wrong"})

    conn = Conn(http_backend, app)
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    out = await (conn.exchange(data) if mode == "whole" else conn.bytewise(data))
    assert out == error(400)
    assert conn.closed
    assert all(m["type"] == "http.disconnect" or m["more_body"] for m in seen)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
async def test_pipelined_garbage_after_good_request(http_backend: str, mode: str) -> None:
    app = CountingApp()
    conn = Conn(http_backend, app)
    data = GET + GET + b"BROKEN\r\n\r\n" + GET
    out = await (conn.exchange(data) if mode == "whole" else conn.bytewise(data))
    assert out == HELLO + HELLO + error(400)
    assert app.calls == ["/", "/"]
    assert conn.closed


async def test_garbage_while_app_runs_is_answered_after_it(http_backend: str) -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await plain_app()(scope, receive, send)

    conn = Conn(http_backend, app)
    conn.feed(GET)
    await until(lambda: conn.state.tasks)
    conn.feed(b"\x01\x02\r\n\r\n")
    await asyncio.sleep(0)
    assert not conn.closed
    assert conn.transport.buffer == b""
    release.set()
    await conn.settle()
    assert conn.transport.take() == HELLO + error(400)
    assert conn.closed


async def test_slow_request_head_times_out(http_backend: str) -> None:
    app = CountingApp()
    conn = Conn(http_backend, app, timeout_keep_alive=5)
    conn.feed(b"GET / HTTP/1.1\r\n")
    start = conn.loop.time()
    conn.proto.on_tick(start + 20)
    assert not conn.closed
    conn.feed(b"X-A: 1\r\n")  # trickling bytes do not extend the bound
    conn.proto.on_tick(start + 31)
    assert conn.closed
    assert app.calls == []


async def test_no_websocket_upgrade_served_as_http(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = CountingApp()
    conn = Conn(http_backend, app, ws="none")
    request = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    out = await conn.exchange(request + GET)
    assert out == HELLO + HELLO
    assert app.calls == ["/ws", "/"]
    assert "Unsupported upgrade request" in caplog.text


# -- over a real socket ------------------------------------------------------------------


def exchange_raw(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes; fail if it keeps the socket open."""
    with socket.create_connection(("127.0.0.1", port), timeout=2 * TIME_UNIT) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"connection left open after {b''.join(chunks)[:60]!r}"
                ) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


RAW_CASES = [
    ("garbage", b"\x00GARBAGE\r\n\r\n", 400),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    (
        "content-length-and-chunked",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + many_headers(150) + b"\r\n", 431),
    ("target-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
]


def test_broken_requests_over_a_socket(http_backend: str) -> None:
    app = CountingApp()
    with run_server(app, http=http_backend) as server:
        for _, data, status in RAW_CASES:
            out = exchange_raw(server.port, data)
            assert out.startswith(b"HTTP/1.1 %d " % status), (data[:40], out[:80])
            head, _, body = out.partition(b"\r\n\r\n")
            assert b"\r\nconnection: close" in head
            assert body == ERROR_BODIES[status]
        # a good request followed by garbage on one socket
        out = exchange_raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Hello, world!HTTP/1.1 400 Bad Request\r\n" in out
        assert out.endswith(ERROR_BODIES[400])
    assert app.calls == ["/"]


def test_head_too_large_over_a_socket(http_backend: str) -> None:
    app = CountingApp()
    with run_server(app, http=http_backend) as server:
        data = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n"
        out = exchange_raw(server.port, data)
        assert out.startswith(b"HTTP/1.1 431 ")
        assert out.endswith(ERROR_BODIES[431])
    assert app.calls == []
