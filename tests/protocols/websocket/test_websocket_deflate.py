"""permessage-deflate under ws_max_size: compressed messages over it get 1009, memory bounded.

A few KiB of compressed zeros inflate to many MiB. Both backends must stop inflating at
``ws_max_size`` (about one limit of memory, never the inflated size) and close with 1009,
while ordinary compressed traffic keeps working. Memory is the peak that ``tracemalloc``
sees while the server (a thread of this process) handles the message.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.sync.client import ClientConnection

from tests.protocols.websocket.conftest import WSConn, accepted, close_frame
from tests.protocols.websocket.test_websocket_sockets import client, closed_code, echo_app, serve

LIMIT = 1024 * 1024  # --ws-max-size of these tests
BOMB = 64 * 1024 * 1024  # zeros: about 64 KiB once compressed


def peak_allocated(action: Callable[[], object]) -> int:
    """Peak bytes allocated by Python in every thread (the server's too) during ``action``."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        action()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()


def close_code_after(ws: ClientConnection, message: Any) -> int:
    """Send ``message``; the code of the close frame the server answers with."""
    try:
        ws.send(message)
    except ConnectionClosed as exc:  # the server closed between two fragments
        assert exc.rcvd is not None, "no close frame received"
        return int(exc.rcvd.code)
    return closed_code(ws)


def deflate_client(server: Any, **kwargs: Any) -> ClientConnection:
    ws = client(server, **kwargs)
    assert ws.protocol.extensions, "permessage-deflate was not negotiated"
    return ws


def test_compressed_bomb_closes_1009_in_bounded_memory(ws_backend: str, http_backend: str) -> None:
    bomb = bytes(BOMB)  # allocated before measuring: only the server's work is counted
    with (
        serve(echo_app, ws_backend, http=http_backend, ws_max_size=LIMIT) as server,
        deflate_client(server) as ws,
    ):
        ws.send(b"warm-up")
        assert ws.recv() == b"warm-up"
        codes: list[int] = []

        def send_bomb() -> None:
            codes.append(close_code_after(ws, bomb))  # one frame, about 64 KiB on the wire

        peak = peak_allocated(send_bomb)
    assert codes == [1009]
    assert peak < 4 * LIMIT, f"{peak / 2**20:.1f} MiB allocated for a {LIMIT // 2**20} MiB limit"


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_compressed_message_at_limit_echoes_one_byte_more_closes_1009(
    ws_backend: str, http_backend: str, kind: str
) -> None:
    unit = "abcdefgh" if kind == "text" else b"\x00\x01\x02\x03\xfc\xfd\xfe\xff"
    at_limit = unit * (LIMIT // 8)
    with (
        serve(echo_app, ws_backend, http=http_backend, ws_max_size=LIMIT) as server,
        deflate_client(server) as ws,
    ):
        ws.send(at_limit)
        assert ws.recv() == at_limit
        assert close_code_after(ws, at_limit + unit[:1]) == 1009


@pytest.mark.parametrize(
    "fragments",
    [
        pytest.param([LIMIT // 2] * 3, id="each-under-the-limit"),
        pytest.param([LIMIT, BOMB], id="bomb-after-exactly-the-limit"),
    ],
)
def test_fragmented_compressed_message_over_limit_closes_1009(
    ws_backend: str, http_backend: str, fragments: list[int]
) -> None:
    zeros = bytes(max(fragments))  # the parts exist before measuring, as the bomb does
    parts: Iterable[bytes] = [zeros[:size] for size in fragments]
    with (
        serve(echo_app, ws_backend, http=http_backend, ws_max_size=LIMIT) as server,
        deflate_client(server) as ws,
    ):
        codes: list[int] = []

        def send_fragments() -> None:
            # One frame per part, only the first one marked compressed.
            codes.append(close_code_after(ws, iter(parts)))

        peak = peak_allocated(send_fragments)
    assert codes == [1009]
    assert peak < 4 * LIMIT, f"{peak / 2**20:.1f} MiB allocated for a {LIMIT // 2**20} MiB limit"


@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_many_compressed_messages_each_under_the_limit(
    ws_backend: str, http_backend: str, no_context_takeover: bool
) -> None:
    # Together far over the limit: what counts is each message, not the connection.
    factory = ClientPerMessageDeflateFactory(
        client_no_context_takeover=no_context_takeover,
        server_no_context_takeover=no_context_takeover,
    )
    limit = 64 * 1024
    with (
        serve(echo_app, ws_backend, http=http_backend, ws_max_size=limit) as server,
        deflate_client(server, compression=None, extensions=[factory]) as ws,
    ):
        [extension] = ws.protocol.extensions
        assert vars(extension)["local_no_context_takeover"] is no_context_takeover
        assert vars(extension)["remote_no_context_takeover"] is no_context_takeover
        for i in range(40):
            message = (b"%06d " % i) * (limit // 7)
            ws.send(message)
            assert ws.recv() == message
            ws.send(message.decode())
            assert ws.recv() == message.decode()


def test_no_limit_when_max_size_is_zero(ws_backend: str) -> None:
    message = bytes(16 * 1024 * 1024 + 1)  # over the default limit
    with serve(echo_app, ws_backend, ws_max_size=0) as server, deflate_client(server) as ws:
        ws.send(message)
        assert ws.recv(timeout=10) == message


async def test_ping_between_compressed_fragments(ws_backend: str) -> None:
    # RFC 6455 5.4: control frames may come between fragments; the message stays compressed.
    conn = WSConn(ws_backend, echo_app, deflate=True)
    conn.open()
    await conn.turn()
    accepted(conn.received())
    first, second = b"first fragment " * 20, b"second fragment " * 20
    conn.client.send_binary(first, fin=False)
    conn.client.send_ping(b"ping")
    conn.client.send_continuation(second, fin=True)
    conn.send_bytes(b"next message " * 20)
    await conn.turn()
    frames = conn.frames()
    assert [(f.opcode, bytes(f.data)) for f in frames] == [
        (Opcode.PONG, b"ping"),
        (Opcode.BINARY, first + second),
        (Opcode.BINARY, b"next message " * 20),
    ]
    conn.send_close()
    await conn.settle()
    assert close_frame(conn.frames()) == (1000, "")
