"""The WebSocket protocol in memory: a fake transport, a sans-I/O client, both backends.

Every test takes ``ws_backend`` ("websockets" / "wsproto"): both backends must give the app
the same scope and messages and the client the same close codes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from websockets.frames import Opcode

from tests.protocols.conftest import Message, Receive, Scope, Send
from tests.protocols.websocket.conftest import WSConn, accepted, close_frame, raw_frame
from tricorn.protocols.asgi import websocket as ws_stream
from tricorn.protocols.http1.request import DEFAULT_MAX_HEAD

# -- apps --------------------------------------------------------------------------------


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def recording_app(received: list[Message], *, accept: bool = True) -> Any:
    """Accept, then record every message until the disconnect."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(await receive())
        if accept:
            await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    return app


# -- handshake and scope -------------------------------------------------------------------


async def test_scope_has_every_asgi_key(ws_backend: str) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await send({"type": "websocket.close"})

    app_state = {"shared": [1]}
    conn = WSConn(
        ws_backend,
        app,
        app_state=app_state,
        path="/caf%C3%A9/a%20b?x=1&y=%20z",
        subprotocols=["chat", "superchat"],
    )
    conn.open()
    await conn.settle()
    [scope] = scopes
    headers = scope.pop("headers")
    state = scope.pop("state")
    assert scope == {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": "/café/a b",
        "raw_path": b"/caf%C3%A9/a%20b",
        "query_string": b"x=1&y=%20z",
        "subprotocols": ["chat", "superchat"],
        "extensions": {"websocket.http.response": {}},
    }
    # Every request header, names lower-cased, in wire order.
    expected = [
        (name.lower().encode(), value.encode("latin-1"))
        for name, value in conn.request.headers.raw_items()
    ]
    assert headers == expected
    assert (b"sec-websocket-protocol", b"chat, superchat") in headers
    assert state == app_state and state is not app_state
    assert state["shared"] is app_state["shared"]  # a shallow copy


async def test_scope_root_path_and_wss(ws_backend: str) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await send({"type": "websocket.close"})

    conn = WSConn(ws_backend, app, root_path="/api", path="/ws", sslcontext=object())
    conn.open()
    await conn.settle()
    [scope] = scopes
    assert scope["scheme"] == "wss"
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/ws"
    assert scope["raw_path"] == b"/api/ws"


async def test_accept_sends_101_with_app_headers_and_server_header(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-app", b"yes")]})
        await send({"type": "websocket.close"})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    response = accepted(conn.received())
    assert response.headers["x-app"] == "yes"
    assert response.headers["server"] == "tricorn"
    assert "date" not in response.headers  # this ServerState renders no Date header


async def test_app_server_header_replaces_the_default(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"server", b"mine")]})
        await send({"type": "websocket.close"})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    response = accepted(conn.received())
    assert response.headers.get_all("server") == ["mine"]


async def test_subprotocol_negotiation(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1]})
        await send({"type": "websocket.close"})

    conn = WSConn(ws_backend, app, subprotocols=["one", "two"])
    conn.open()
    await conn.settle()
    response = accepted(conn.received())
    assert response.headers["sec-websocket-protocol"] == "two"
    assert conn.client.subprotocol == "two"


async def test_subprotocol_not_offered_is_an_app_error(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "other"})

    conn = WSConn(ws_backend, app, subprotocols=["one"])
    conn.open()
    await conn.settle()
    assert conn.transport.take().startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert "was not offered by the client" in caplog.text


@pytest.mark.parametrize("deflate", [True, False])
async def test_permessage_deflate_negotiated_when_on(ws_backend: str, deflate: bool) -> None:
    conn = WSConn(ws_backend, echo_app, deflate=True, ws_per_message_deflate=deflate)
    conn.open()
    await conn.turn()
    response = accepted(conn.received())
    extensions = response.headers.get_all("sec-websocket-extensions")
    if deflate:
        assert len(extensions) == 1 and extensions[0].startswith("permessage-deflate")
    else:
        assert extensions == []
    text = "compress me " * 100
    conn.send_text(text)
    await conn.turn()
    [frame] = conn.frames()
    assert frame.data == text.encode()
    # Compressed frames are much smaller on the wire than the text.
    conn.send_text(text)
    await conn.turn()
    wire = conn.transport.take()
    assert (len(wire) < len(text) // 4) is deflate
    conn.client.receive_data(wire)
    conn.send_close()
    await conn.settle()


async def test_invalid_handshake_is_refused_without_calling_the_app(ws_backend: str) -> None:
    calls: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope)

    conn = WSConn(ws_backend, app)
    conn.feed(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await conn.settle()
    written = conn.transport.take()
    assert written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close\r\n" in written
    assert conn.closed
    assert calls == []


# -- messages ------------------------------------------------------------------------------


async def test_echo_text_and_binary(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_text("héllo")
    conn.send_bytes(b"\x00\xffbinary")
    await conn.turn()
    frames = conn.frames()
    assert [(f.opcode, f.data) for f in frames] == [
        (Opcode.TEXT, "héllo".encode()),
        (Opcode.BINARY, b"\x00\xffbinary"),
    ]
    conn.send_close(1000, "bye")
    await conn.settle()
    assert close_frame(conn.frames()) == (1000, "bye")
    assert conn.closed


async def test_fragmented_messages_are_assembled(ws_backend: str) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received))
    conn.open()
    await conn.turn()
    accepted(conn.received())
    client = conn.client
    client.send_text(b"caf", fin=False)
    client.send_continuation("é".encode()[:1], fin=False)  # a split UTF-8 sequence
    client.send_continuation("é".encode()[1:] + b"!", fin=True)
    client.send_binary(b"ab", fin=False)
    client.send_ping(b"in between")  # control frames may interleave
    client.send_continuation(b"cd", fin=True)
    conn.flush_client()
    await conn.turn()
    assert received[1:] == [
        {"type": "websocket.receive", "text": "café!"},
        {"type": "websocket.receive", "bytes": b"abcd"},
    ]
    assert [f.opcode for f in conn.frames()] == [Opcode.PONG]
    conn.send_close()
    await conn.settle()


async def test_client_close_reaches_the_app_with_code_and_reason(ws_backend: str) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received))
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_close(4001, "going")
    await conn.settle()
    assert received[-1] == {"type": "websocket.disconnect", "code": 4001, "reason": "going"}
    assert close_frame(conn.frames()) == (4001, "going")  # echoed
    assert conn.closed


async def test_message_size_limit_closes_1009(ws_backend: str) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received), ws_max_size=16)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_bytes(b"x" * 16)  # exactly the limit: fine
    conn.send_bytes(b"x" * 17)
    await conn.settle()
    assert received[1] == {"type": "websocket.receive", "bytes": b"x" * 16}
    assert received[-1]["type"] == "websocket.disconnect"
    assert received[-1]["code"] == 1009
    assert close_frame(conn.frames())[0] == 1009
    assert conn.closed


async def test_fragmented_message_over_the_limit_closes_1009(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app, ws_max_size=16)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.client.send_text(b"a" * 10, fin=False)
    conn.client.send_continuation(b"a" * 10, fin=True)
    conn.flush_client()
    await conn.settle()
    assert close_frame(conn.frames())[0] == 1009


@pytest.mark.parametrize("fragmented", [False, True])
async def test_invalid_utf8_closes_1007(ws_backend: str, fragmented: bool) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received))
    conn.open()
    await conn.turn()
    accepted(conn.received())
    if fragmented:
        conn.feed(raw_frame(0x1, b"ok", fin=False) + raw_frame(0x0, b"\xff\xfe", fin=False))
    else:
        conn.feed(raw_frame(0x1, b"bad \xc3\x28"))
    await conn.settle()
    assert close_frame(conn.frames())[0] == 1007
    assert received[-1]["code"] == 1007
    assert conn.closed


@pytest.mark.parametrize(
    "frame",
    [
        raw_frame(0x1, b"unmasked", mask=False),
        raw_frame(0x0, b"continuation without a start"),
        raw_frame(0x3, b"reserved opcode"),
        raw_frame(0x9, b"fragmented ping", fin=False),
        raw_frame(0x9, b"p" * 126),  # control frame too long
    ],
    ids=["unmasked", "stray-continuation", "reserved-opcode", "fragmented-ping", "long-ping"],
)
async def test_protocol_violation_closes_1002(ws_backend: str, frame: bytes) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received))
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.feed(frame)
    await conn.settle()
    assert close_frame(conn.frames())[0] == 1002
    assert received[-1]["code"] == 1002
    assert conn.closed


async def test_client_ping_is_answered(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.client.send_ping(b"hi")
    conn.flush_client()
    [pong] = conn.frames()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"hi")
    conn.send_close()
    await conn.settle()


# -- close codes decided by the app's behaviour --------------------------------------------


async def test_close_before_accept_is_403(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    after: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})
        after.append(await receive())
        after.append(await receive())

    caplog.set_level(logging.INFO, logger="tricorn.access")
    conn = WSConn(ws_backend, app, path="/deny?q=1")
    conn.open()
    await conn.settle()
    assert conn.transport.take() == (
        b"HTTP/1.1 403 Forbidden\r\nserver: tricorn\r\n"
        b"content-length: 0\r\nconnection: close\r\n\r\n"
    )
    assert conn.closed
    assert after == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}] * 2
    assert '127.0.0.1:50000 - "WebSocket /deny?q=1" 403' in caplog.messages


@pytest.mark.parametrize("failure", ["return", "raise"])
async def test_app_ending_before_accept_is_500(
    ws_backend: str, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if failure == "raise":
            raise ValueError("secret detail")

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    written = conn.transport.take()
    assert written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert written.endswith(b"\r\n\r\nInternal Server Error")
    assert b"secret" not in written
    assert conn.closed
    if failure == "raise":
        assert "Exception in ASGI application" in caplog.text
    else:
        assert "returned without completing handshake" in caplog.text


async def test_app_raising_after_accept_closes_1011_without_detail(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise ValueError("secret detail")

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    events = conn.received()
    accepted(events)
    assert close_frame(events[1:]) == (1011, "")
    assert not conn.closed  # waiting for the client's close frame
    conn.flush_client()  # the client echoes the close
    await conn.turn()
    assert conn.closed
    assert "Exception in ASGI application" in caplog.text


async def test_app_returning_after_accept_closes_1000(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    events = conn.received()
    accepted(events)
    assert close_frame(events[1:]) == (1000, "")
    conn.flush_client()
    await conn.turn()
    assert conn.closed


async def test_app_close_with_code_and_reason(ws_backend: str) -> None:
    after: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        after.append(await receive())
        with pytest.raises(RuntimeError):
            await send({"type": "websocket.send", "text": "late"})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    assert close_frame(conn.frames()) == (4000, "done")
    assert after == [{"type": "websocket.disconnect", "code": 4000, "reason": "done"}]
    conn.flush_client()
    await conn.turn()
    assert conn.closed


async def test_app_close_with_invalid_code_is_an_app_error(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1006})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    assert close_frame(conn.frames()) == (1011, "")


async def test_denial_response_with_status_headers_and_body(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 418,
                "headers": [(b"x-reason", b"teapot"), (b"content-length", b"999")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"short ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"and stout"})

    caplog.set_level(logging.INFO, logger="tricorn.access")
    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    assert conn.transport.take() == (
        b"HTTP/1.1 418 I'm a Teapot\r\nserver: tricorn\r\nx-reason: teapot\r\n"
        b"content-length: 15\r\nconnection: close\r\n\r\nshort and stout"
    )
    assert conn.closed
    assert '127.0.0.1:50000 - "WebSocket /" 418' in caplog.messages


async def test_access_log_line_for_accepted_and_safe_path(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tricorn.access")
    conn = WSConn(ws_backend, echo_app, path='/a"b%0A')
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_close()
    await conn.settle()
    assert caplog.messages == ['127.0.0.1:50000 - "WebSocket /a\\x22b%0A" [accepted]']


async def test_access_log_names_the_forwarded_client(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tricorn.access")
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    conn = WSConn(ws_backend, echo_app, headers=forwarded, proxy_headers=True)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_close()
    await conn.settle()
    assert caplog.messages == ['203.0.113.7:0 - "WebSocket /" [accepted]']


async def test_trace_logs_frames_as_sizes(
    ws_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(5, logger="tricorn.error")
    conn = WSConn(ws_backend, echo_app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.send_text("secret!")
    await conn.turn()
    conn.send_close()
    await conn.settle()
    assert "WebSocket < text 7 bytes" in caplog.text
    assert "secret" not in caplog.text


# -- server-side events ----------------------------------------------------------------------


async def test_shutdown_closes_1012_and_the_app_is_told(ws_backend: str) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received))
    conn.open()
    await conn.turn()
    accepted(conn.received())
    assert conn.proto in conn.state.connections
    conn.proto.shutdown()
    await conn.turn()
    assert received[-1] == {"type": "websocket.disconnect", "code": 1012, "reason": ""}
    assert close_frame(conn.frames())[0] == 1012
    conn.flush_client()
    await conn.settle()
    assert conn.closed
    assert conn.proto not in conn.state.connections


async def test_shutdown_during_handshake_closes_1012_after_accept(ws_backend: str) -> None:
    received: list[Message] = []
    go = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await go.wait()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.turn()
    conn.proto.shutdown()
    go.set()
    await conn.turn()
    events = conn.received()
    accepted(events)
    assert close_frame(events[1:])[0] == 1012
    assert received == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]
    conn.flush_client()
    await conn.settle()


async def test_keepalive_ping_and_pong(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app, ws_ping_interval=5.0, ws_ping_timeout=5.0)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    start = conn.loop.time()
    conn.proto.on_tick(start + 1)
    assert conn.frames() == []  # not yet
    conn.proto.on_tick(start + 6)
    [ping] = conn.frames()
    assert ping.opcode is Opcode.PING
    conn.flush_client()  # the client's automatic pong
    conn.proto.on_tick(start + 12)  # a pong came: no timeout, a new ping
    [ping2] = conn.frames()
    assert ping2.opcode is Opcode.PING
    assert not conn.closed
    conn.send_close()
    await conn.settle()


async def test_missed_pong_closes_1011(ws_backend: str) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received), ws_ping_interval=5.0, ws_ping_timeout=2.0)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    start = conn.loop.time()
    conn.proto.on_tick(start + 6)
    [ping] = conn.frames()
    conn.client.data_to_send()  # the client's pong is lost
    conn.proto.on_tick(start + 7)
    assert not conn.closed
    conn.proto.on_tick(start + 8.5)
    assert close_frame(conn.frames())[0] == 1011
    await conn.settle()
    assert conn.closed
    assert received[-1]["code"] == 1011


async def test_close_waits_a_bounded_time_for_the_client(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.proto.shutdown()
    start = conn.loop.time()
    conn.proto.on_tick(start + ws_stream.CLOSE_TIMEOUT - 1)
    assert not conn.closed
    conn.proto.on_tick(start + ws_stream.CLOSE_TIMEOUT + 1)
    assert conn.closed
    await conn.settle()


# -- flow control and disconnects ------------------------------------------------------------


async def test_reading_pauses_when_the_queue_is_full(ws_backend: str) -> None:
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

    conn = WSConn(ws_backend, slow_app, ws_max_queue=4)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    for index in range(4):
        conn.send_text(f"m{index}")
    assert not conn.transport.reading
    assert len(conn.stream.messages) == 4
    release.set()
    await conn.until(lambda: conn.transport.reading, "reading resumed")
    conn.send_close()
    await conn.settle()
    assert [m.get("text") for m in got[:4]] == ["m0", "m1", "m2", "m3"]
    assert conn.transport.reading_events == ["pause", "resume"]


async def test_send_waits_while_writing_is_paused(ws_backend: str) -> None:
    sent: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for index in range(3):
            await send({"type": "websocket.send", "bytes": b"x"})
            sent.append(index)

    conn = WSConn(ws_backend, app)
    conn.proto.pause_writing()
    conn.open()
    await conn.turn()
    assert sent == []  # the first send wrote its frame, then waits for the buffer
    conn.proto.resume_writing()
    await conn.settle()
    assert sent == [0, 1, 2]


async def test_send_after_disconnect_raises_oserror(ws_backend: str) -> None:
    outcome: list[Any] = []
    received = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.set()
        outcome.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:
            outcome.append(exc)
        outcome.append(await receive())

    conn = WSConn(ws_backend, app)
    conn.open()
    await received.wait()
    conn.transport.close()  # the TCP connection drops without a close frame
    await conn.settle()
    disconnect = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert outcome[0] == disconnect
    assert isinstance(outcome[1], OSError)
    assert outcome[2] == disconnect
    assert conn.proto not in conn.state.connections


async def test_accept_after_the_client_left_raises_oserror(ws_backend: str) -> None:
    outcome: list[Any] = []
    go = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await go.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            outcome.append(exc)

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.turn()
    conn.proto.eof_received()
    conn.transport.close()
    await conn.turn()
    go.set()
    await conn.settle()
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)
    assert conn.transport.writes_after_close == []


async def test_connection_registered_and_task_tracked(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app)
    assert conn.proto in conn.state.connections
    conn.open()
    assert len(conn.state.tasks) == 1
    await conn.turn()
    accepted(conn.received())
    conn.send_close()
    await conn.settle()
    assert not conn.state.tasks
    assert conn.proto not in conn.state.connections


async def test_empty_close_frame_is_1005_and_echoed_empty(ws_backend: str) -> None:
    received: list[Message] = []
    conn = WSConn(ws_backend, recording_app(received))
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.feed(raw_frame(0x8, b""))
    await conn.settle()
    assert received[-1] == {"type": "websocket.disconnect", "code": 1005, "reason": ""}
    assert conn.transport.take() == b"\x88\x00"
    assert conn.closed


@pytest.mark.parametrize(
    "payload", [b"\x03\xe7", b"\x03\xed", b"\x03\xe8\xff"], ids=["999", "1005", "bad-utf8"]
)
async def test_invalid_close_frame_from_client(ws_backend: str, payload: bytes) -> None:
    conn = WSConn(ws_backend, echo_app)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    conn.feed(raw_frame(0x8, payload))
    await conn.settle()
    code = close_frame(conn.frames())[0]
    assert code == (1007 if payload.endswith(b"\xff") else 1002)
    assert conn.closed


async def test_client_frames_after_our_close_are_read_until_its_close(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    conn.received()
    # The client had these in flight when our close frame arrived.
    conn.feed(raw_frame(0x1, b"late message") + raw_frame(0x9, b"late ping"))
    assert not conn.closed
    conn.feed(raw_frame(0x8, b"\x0f\xa0"))
    await conn.settle()
    assert conn.closed


# -- app mistakes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([{"type": "websocket.send", "text": "too early"}], "Expected ASGI message"),
        ([{"type": "websocket.accept", "headers": [(b"bad name", b"x")]}], "header name"),
        ([{"type": "websocket.accept", "headers": [(b"x", b"a\r\nb")]}], "header value"),
        ([{"type": "websocket.http.response.start", "status": 99}], "status code"),
        (
            [
                {"type": "websocket.http.response.start", "status": 400},
                {"type": "websocket.accept"},
            ],
            "websocket.http.response.body",
        ),
        (
            [
                {"type": "websocket.http.response.start", "status": 400},
                {"type": "websocket.http.response.body", "body": b"x", "more_body": True},
            ],
            "returned without completing response",
        ),
    ],
    ids=["send-first", "header-name", "header-value", "status", "accept-mid-denial", "no-end"],
)
async def test_app_mistakes_before_accept_are_500(
    ws_backend: str, messages: list[Message], error: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        for message in messages:
            await send(message)

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    assert conn.transport.take().startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert error in caplog.text


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "websocket.send"}, "needs 'bytes' or 'text'"),
        ({"type": "websocket.accept"}, "Expected ASGI message 'websocket.send'"),
        ({"type": "websocket.close", "code": "1000"}, "Invalid WebSocket close code"),
    ],
    ids=["empty-send", "second-accept", "close-code-type"],
)
async def test_app_mistakes_after_accept_close_1011(
    ws_backend: str, message: Message, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send(message)

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    assert close_frame(conn.frames()) == (1011, "")
    assert error in caplog.text


async def test_long_close_reason_is_cut_to_fit_the_frame(ws_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "é" * 100})

    conn = WSConn(ws_backend, app)
    conn.open()
    await conn.settle()
    code, reason = close_frame(conn.frames())
    assert (code, reason) == (4000, "é" * 61)  # 122 bytes: a 123rd would split a character


async def test_pings_continue_without_a_ping_timeout(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app, ws_ping_interval=5.0, ws_ping_timeout=None)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    start = conn.loop.time()
    for step in (6, 12, 18):  # never answered, never timed out
        conn.proto.on_tick(start + step)
        [ping] = conn.frames()
        assert ping.opcode is Opcode.PING
    assert not conn.closed
    conn.client.data_to_send()  # drop the client's pongs
    conn.send_close()
    await conn.settle()


async def test_cancelled_app_drops_the_connection(ws_backend: str) -> None:
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        started.set()
        await asyncio.Event().wait()

    conn = WSConn(ws_backend, app)
    conn.open()
    await started.wait()
    [task] = conn.state.tasks
    task.cancel()
    await conn.turn()
    assert conn.closed


async def test_oversized_handshake_is_refused(ws_backend: str) -> None:
    conn = WSConn(ws_backend, echo_app)
    conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * DEFAULT_MAX_HEAD)
    await conn.settle()
    written = conn.transport.take()
    assert written.startswith(b"HTTP/1.1 4"), written[:40]
    assert conn.closed
