"""How the HTTP connection treats upgrade requests, over real sockets and both HTTP backends.

Only ``Upgrade: websocket`` with ``Connection: Upgrade`` on an HTTP/1.1 GET is handed to the
WebSocket protocol. Any other upgrade (h2c) is plain HTTP without a word; a WebSocket
upgrade that cannot be honoured (WSGI app, ``--ws none``, no library installed) is plain
HTTP with exactly one warning saying why and what to do; over ``--limit-concurrency`` the
handshake gets 503 before any upgrade.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import tricorn.config
from tests.protocols.conftest import Receive, Scope, Send
from tests.protocols.websocket.conftest import WS_BACKENDS, ws_url
from tests.utils import TIME_UNIT, run_server

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
WS_UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
H2C_GET = (
    b"GET /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
H2C_POST = (
    b"POST /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
)
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    """HTTP: 200 ``<type> <path> <body>``; a WebSocket is accepted then closed."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = b"%s %s %s" % (scope["type"].encode(), scope["path"].encode(), body)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(text))],
        }
    )
    await send({"type": "http.response.body", "body": text})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"wsgi " + environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def read_responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (status line, body) pairs; every response must carry Content-Length."""
    buffer = b""
    responses: list[tuple[bytes, bytes]] = []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {responses!r} + {buffer!r}"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed in a body"
            buffer += chunk
        responses.append((lines[0], buffer[:length]))
        buffer = buffer[length:]
    return responses


def exchange(server: Any, data: bytes, count: int) -> list[tuple[bytes, bytes]]:
    with server.connect() as sock:
        sock.sendall(data)
        return read_responses(sock, count)


@contextlib.contextmanager
def warnings_of(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The WARNING-or-worse lines logged inside the block (the server runs in a thread)."""
    lines: list[str] = []
    with caplog.at_level(logging.INFO):
        caplog.clear()
        yield lines
        lines.extend(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_h2c_upgrade_is_plain_http_without_warning(
    http_backend: str, ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        run_server(scope_app, http=http_backend, ws=WS_BACKENDS[ws_backend]) as server,
        warnings_of(caplog) as warnings,
    ):
        # The connection stays HTTP/1.1 after it.
        responses = exchange(server, H2C_GET + NEXT, 2)
    assert responses == [(b"HTTP/1.1 200 OK", b"http /h2 "), (b"HTTP/1.1 200 OK", b"http /next ")]
    assert warnings == []


def test_h2c_upgrade_with_a_body_is_plain_http(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # What ``curl --http2 -d hello http://...`` sends. llhttp leaves the body of a request it
    # flags as an upgrade to the new protocol; served as HTTP, that body must still arrive.
    with (
        run_server(scope_app, http=http_backend, ws="websockets") as server,
        warnings_of(caplog) as warnings,
    ):
        responses = exchange(server, H2C_POST + NEXT, 2)
    assert responses == [
        (b"HTTP/1.1 200 OK", b"http /h2 hello"),
        (b"HTTP/1.1 200 OK", b"http /next "),
    ]
    assert warnings == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        WS_UPGRADE.replace(b"Connection: Upgrade\r\n", b""),
        WS_UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"),
    ],
    ids=["no-connection-upgrade", "http-1.0"],
)
def test_upgrade_header_alone_is_not_an_upgrade(
    http_backend: str, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    # RFC 9110 7.8: Upgrade is only meaningful listed in Connection, and never in HTTP/1.0.
    with (
        run_server(scope_app, http=http_backend, ws="websockets") as server,
        warnings_of(caplog) as warnings,
    ):
        [(status, body)] = exchange(server, request_bytes, 1)
    assert status.endswith(b"200 OK")
    assert body == b"http /chat "
    assert warnings == []


def assert_one_warning(warnings: list[str], *parts: str) -> None:
    assert len(warnings) == 1, warnings
    [line] = warnings
    assert line.startswith("Unsupported upgrade request: "), line
    assert line.endswith("Serving it as plain HTTP."), line
    for part in parts:
        assert part in line, line


@pytest.mark.parametrize("ws", ["auto", "websockets", "wsproto"])
def test_wsgi_app_never_sees_a_websocket(
    http_backend: str, ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        run_server(wsgi_app, interface="wsgi", http=http_backend, ws=ws) as server,
        warnings_of(caplog) as warnings,
    ):
        responses = exchange(server, WS_UPGRADE + NEXT, 2)
    assert responses == [(b"HTTP/1.1 200 OK", b"wsgi /chat"), (b"HTTP/1.1 200 OK", b"wsgi /next")]
    assert_one_warning(warnings, "WebSockets are not available for WSGI apps")


def test_ws_none_serves_plain_http_with_one_warning(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        run_server(scope_app, http=http_backend, ws="none") as server,
        warnings_of(caplog) as warnings,
    ):
        responses = exchange(server, WS_UPGRADE + NEXT, 2)
    assert responses == [(b"HTTP/1.1 200 OK", b"http /chat "), (b"HTTP/1.1 200 OK", b"http /next ")]
    assert_one_warning(warnings, "--ws none", "--ws auto")


def test_no_websocket_library_serves_plain_http_with_one_warning(
    http_backend: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tricorn.config._installed
    monkeypatch.setattr(
        tricorn.config,
        "_installed",
        lambda name: name not in ("websockets", "wsproto") and installed(name),
    )
    with (
        run_server(scope_app, http=http_backend, ws="auto") as server,
        warnings_of(caplog) as warnings,
    ):
        assert server.server.config.ws_protocol_class is None
        responses = exchange(server, WS_UPGRADE, 1)
    assert responses == [(b"HTTP/1.1 200 OK", b"http /chat ")]
    assert_one_warning(warnings, "pip install 'tricorn[standard]'", "wsproto")


def test_limit_concurrency_refuses_handshakes_with_503(
    http_backend: str, ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def hold(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    settings = {"http": http_backend, "ws": WS_BACKENDS[ws_backend], "limit_concurrency": 1}
    timeouts: dict[str, Any] = {
        "open_timeout": 5 * TIME_UNIT,
        "close_timeout": 5 * TIME_UNIT,
        "proxy": None,
    }
    with run_server(hold, **settings) as server, warnings_of(caplog) as warnings:
        with connect(ws_url(server), **timeouts) as first:
            with pytest.raises(InvalidStatus) as info, connect(ws_url(server), **timeouts):
                pass
            assert info.value.response.status_code == 503
            assert info.value.response.headers["Connection"] == "close"
            first.send("still here")  # the open connection is untouched
        # Once the first one is gone, a handshake succeeds again.
        with connect(ws_url(server), **timeouts) as again:
            again.send("hello")
    assert warnings == ["Exceeded concurrency limit."]
