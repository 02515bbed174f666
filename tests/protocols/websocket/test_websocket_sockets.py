"""WebSockets over real sockets: a real server, the real ``websockets`` client, both backends.

The upgrade goes through the HTTP connection (``--http``) to the WebSocket protocol
(``--ws``), exactly as in production. Raw sockets stand in for clients that misbehave.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.protocols.conftest import Message, Receive, Scope, Send
from tests.protocols.websocket.conftest import WS_BACKENDS, RawClient, raw_frame, ws_url
from tests.utils import TIME_UNIT, run_server, wait_for
from tricorn.protocols.asgi import websocket as ws_stream


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept", "subprotocol": None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}})


def serve(app: Any, ws_backend: str, **settings: Any) -> Any:
    return run_server(app, ws=WS_BACKENDS[ws_backend], **settings)


def client(server: Any, path: str = "/", **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("open_timeout", 5 * TIME_UNIT)
    kwargs.setdefault("close_timeout", 5 * TIME_UNIT)
    kwargs.setdefault("max_size", None)
    ws: ClientConnection = connect(ws_url(server, path), **kwargs)
    return ws


def closed_code(ws: ClientConnection) -> int:
    """Wait for the server to close; the close code the client received."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=5 * TIME_UNIT)
    rcvd = info.value.rcvd
    assert rcvd is not None, "no close frame received"
    return int(rcvd.code)


def test_echo_text_and_binary_up_to_max_size(ws_backend: str, http_backend: str) -> None:
    limit = 64 * 1024
    with (
        serve(echo_app, ws_backend, http=http_backend, ws_max_size=limit) as server,
        client(server) as ws,
    ):
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv() == b"\x00\xff"
        big = bytes(range(256)) * (limit // 256)
        ws.send(big)
        assert ws.recv() == big
        ws.send("x" * limit)
        assert ws.recv() == "x" * limit
        ws.send(b"x" * (limit + 1))
        assert closed_code(ws) == 1009


def test_close_before_accept_is_403(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    with serve(app, ws_backend) as server, pytest.raises(InvalidStatus) as info:
        client(server)
    assert info.value.response.status_code == 403


@pytest.mark.parametrize("failure", ["return", "raise"])
def test_app_ending_before_accept_is_500(ws_backend: str, failure: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if failure == "raise":
            raise RuntimeError("boom")

    with serve(app, ws_backend) as server, pytest.raises(InvalidStatus) as info:
        client(server)
    assert info.value.response.status_code == 500


def test_app_raising_after_accept_closes_1011(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("secret detail")

    with serve(app, ws_backend) as server, client(server) as ws:
        ws.send("go")
        assert closed_code(ws) == 1011
        assert ws.close_reason == ""


def test_app_returning_after_accept_closes_1000(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    with serve(app, ws_backend) as server, client(server) as ws:
        assert closed_code(ws) == 1000


def test_server_shutdown_closes_1012_and_app_is_told(ws_backend: str) -> None:
    told: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        told.append(await receive())

    with serve(app, ws_backend) as server, client(server) as ws:
        wait_for(lambda: server.server.server_state.connections, what="connection")
        server.server.should_exit = True
        assert closed_code(ws) == 1012
        wait_for(lambda: told, what="disconnect message")
    assert told == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]


def test_invalid_utf8_closes_1007_and_protocol_error_1002(ws_backend: str) -> None:
    with serve(echo_app, ws_backend) as server:
        raw = RawClient(server)
        raw.sock.sendall(raw_frame(0x1, b"\xc3\x28"))
        assert raw.read_close() == 1007
        assert raw.at_eof()
        raw.close()
        raw = RawClient(server)
        raw.sock.sendall(raw_frame(0x1, b"unmasked", mask=False))
        assert raw.read_close() == 1002
        assert raw.at_eof()
        raw.close()


def test_subprotocol_negotiation(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][1]})
        await receive()

    with serve(app, ws_backend) as server, client(server, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"


def test_denial_response(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"who are you?"})

    with serve(app, ws_backend) as server, pytest.raises(InvalidStatus) as info:
        client(server)
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"who are you?"


@pytest.mark.parametrize("deflate", [True, False])
def test_permessage_deflate(ws_backend: str, deflate: bool) -> None:
    with (
        serve(echo_app, ws_backend, ws_per_message_deflate=deflate) as server,
        client(server, compression="deflate") as ws,
    ):
        assert bool(ws.protocol.extensions) is deflate
        ws.send("z" * 10_000)
        assert ws.recv() == "z" * 10_000


def test_missed_pongs_close_1011(ws_backend: str) -> None:
    with serve(echo_app, ws_backend, ws_ping_interval=0.1, ws_ping_timeout=0.1) as server:
        raw = RawClient(server)  # never answers a ping
        raw.sock.settimeout(5 * TIME_UNIT)
        opcode, _ = raw.read_frame()
        assert opcode == 0x9
        assert raw.read_close() == 1011
        assert raw.at_eof()
        raw.close()


def test_close_waits_a_bounded_time(ws_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_stream, "CLOSE_TIMEOUT", 0.2)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})

    with serve(app, ws_backend) as server:
        raw = RawClient(server)  # reads the close frame but never answers it
        assert raw.read_close() == 4000
        assert raw.at_eof()
        raw.close()


def test_flooding_client_keeps_server_buffers_bounded(ws_backend: str) -> None:
    release = threading.Event()
    max_queue = 4

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        count = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "end":
                await send({"type": "websocket.send", "text": str(count)})
            else:
                count += 1

    frame = raw_frame(0x2, b"x" * 65536)
    with serve(slow_app, ws_backend, ws_max_queue=max_queue) as server:
        raw = RawClient(server)
        try:
            wait_for(lambda: server.server.server_state.connections, what="connection")
            [connection] = list(server.server.server_state.connections)
            proto = connection.websocket.stream
            # Send until the server stops reading and every buffer in between is full.
            raw.sock.setblocking(False)
            # Wait for the condition itself: the server paused reading and our sends block.
            frames = 0
            pending = b""
            blocked = False
            deadline = time.monotonic() + 10 * TIME_UNIT
            while not (blocked and proto.reading_paused):
                assert frames < 4000, "the server read 256 MiB without pausing"
                assert time.monotonic() < deadline, "the server never paused reading"
                if not pending:
                    pending = frame
                    frames += 1
                try:
                    pending = pending[raw.sock.send(pending) :]
                    blocked = False
                except BlockingIOError:
                    blocked = True
                    time.sleep(0.001)
            # Frames already read in the chunk that filled the queue are kept: one read.
            assert len(proto.messages) <= max_queue + 4
        finally:
            release.set()
        raw.sock.setblocking(True)
        raw.sock.settimeout(5 * TIME_UNIT)
        raw.sock.sendall(pending + raw_frame(0x1, b"end"))
        assert raw.read_frame() == (0x1, str(frames).encode())
        raw.close()


def test_send_after_disconnect_raises_oserror(ws_backend: str) -> None:
    outcome: list[Any] = []
    ready = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        ready.set()
        outcome.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:
            outcome.append(exc)

    with serve(app, ws_backend) as server:
        raw = RawClient(server)
        assert ready.wait(5 * TIME_UNIT)
        # Linger 0: the close resets the connection, as a vanished client's would.
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        wait_for(lambda: len(outcome) == 2, what="app outcome")
    assert outcome[0]["type"] == "websocket.disconnect"
    assert outcome[0]["code"] == 1006
    assert isinstance(outcome[1], OSError)


def test_shutdown_is_bounded_when_the_client_never_answers(
    ws_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_stream, "CLOSE_TIMEOUT", 0.2)
    with serve(echo_app, ws_backend) as server:
        raw = RawClient(server)  # reads the 1012 close frame but never answers it
        wait_for(lambda: server.server.server_state.connections, what="connection")
        server.server.should_exit = True
        assert raw.read_close() == 1012
        assert raw.at_eof()
        raw.close()
        server.thread.join(timeout=5 * TIME_UNIT)
        assert not server.thread.is_alive()
