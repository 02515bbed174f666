"""Regression tests for what the review of the WebSocket stream fixed, both backends.

* a cancelled ``receive()`` (``asyncio.wait_for``, a cancel scope) does not poison the next;
* ``send()`` raises ``ClientDisconnected`` as soon as the transport is closing, so an app
  sending in a loop without yielding stops at once instead of writing into a dead socket;
* no keepalive failure while we, not the client, stopped reading (the app lags);
* ``websocket.accept`` may not set Sec-WebSocket-Protocol through its headers;
* the ``websockets`` library's per-connection INFO/DEBUG lines never reach the logs;
* ``websocket.disconnect`` carries a plain ``int`` code, not the library's enum.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import Opcode

from tests.protocols.conftest import Message, Receive, Scope, Send
from tests.protocols.websocket.conftest import WSConn, accepted, close_frame
from tests.protocols.websocket.test_websocket import echo_app
from tricorn.protocols.asgi.errors import ClientDisconnected


async def test_receive_works_after_a_cancelled_receive(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        with pytest.raises(asyncio.TimeoutError):  # nothing arrives: receive() is cancelled
            await asyncio.wait_for(receive(), timeout=0.001)
        await send({"type": "websocket.send", "text": "waiting"})
        message = await receive()
        await send({"type": "websocket.send", "text": "got " + message["text"]})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.until(lambda: b"waiting" in conn.transport.buffer, "app waiting again")
    accepted(conn.received())
    conn.send_text("hello")
    await conn.settle()
    frames = conn.frames()
    assert bytes(frames[0].data) == b"got hello"
    assert close_frame(frames) == (1000, "")


async def test_send_stops_once_the_transport_is_closing(ws_backend: str) -> None:
    outcome: list[Any] = []
    conn: WSConn

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        # As asyncio does when a write fails (peer reset): the transport closes at once,
        # connection_lost comes on a later loop iteration.
        conn.transport.close()
        try:
            for index in range(10):  # no await yields to the loop in between
                await send({"type": "websocket.send", "text": "x"})
                outcome.append(index)
        except OSError as exc:
            outcome.append(exc)

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_text("go")
    await conn.settle()
    [error] = outcome
    assert isinstance(error, ClientDisconnected)
    assert conn.transport.writes_after_close == []


async def test_no_ping_timeout_while_the_app_lags(ws_backend: str) -> None:
    release = asyncio.Event()
    got: list[Message] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            message = await receive()
            got.append(message)
            if message["type"] == "websocket.disconnect":
                return

    conn = WSConn(ws_backend, slow_app, ws_max_queue=2, ws_ping_interval=5.0, ws_ping_timeout=2.0)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    start = conn.loop.time()
    conn.proto.on_tick(start + 6)
    [ping] = conn.frames()
    assert ping.opcode is Opcode.PING
    conn.send_text("a")
    conn.send_text("b")  # the queue is full: we stop reading, the pong waits unread
    assert not conn.transport.reading
    conn.client.data_to_send()  # (the client's pong, which we could not read anyway)
    for later in (10, 30, 100):
        conn.proto.on_tick(start + later)
        assert not conn.closed, "failed a live client for our own lag"
    assert conn.frames() == []  # and no pings piled up meanwhile
    release.set()
    await conn.until(lambda: conn.transport.reading, "reading resumed")
    # Liveness is checked again from here: a ping, and without its pong, 1011.
    conn.proto.on_tick(start + 106)
    [ping] = conn.frames()
    assert ping.opcode is Opcode.PING
    conn.client.data_to_send()
    conn.proto.on_tick(start + 109)
    assert close_frame(conn.frames())[0] == 1011
    await conn.settle()
    assert [m.get("text") for m in got[:2]] == ["a", "b"]


async def test_accept_headers_may_not_set_the_subprotocol(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        headers = [(b"sec-websocket-protocol", b"chat")]
        await send({"type": "websocket.accept", "headers": headers})

    conn = WSConn(ws_backend, app, subprotocols=["chat"])
    conn.open()
    await conn.settle()
    [response] = conn.received()
    assert response.status_code == 500
    assert "use its 'subprotocol' key" in caplog.text


async def test_library_connection_lines_stay_out_of_the_logs(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)  # everything, on every logger
    conn = WSConn(ws_backend, echo_app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_text("hi")
    await conn.turn()
    conn.send_close()
    await conn.settle()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("tricorn")]
    assert "WebSocket < text 2 bytes" in " ".join(ours)  # our TRACE lines are there
    assert not [m for m in ours if m.startswith(("connection ", "< ", "> ", "= "))], ours


async def test_disconnect_code_is_a_plain_int(ws_backend: str) -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_close(1001, "bye")
    await conn.settle()
    assert received == [{"type": "websocket.disconnect", "code": 1001, "reason": "bye"}]
    assert type(received[0]["code"]) is int
