"""Harness for the WebSocket tests: both backends, in memory and over real sockets.

* ``ws_backend`` ("websockets" / "wsproto"): every WebSocket test runs over both.
* ``WSConn``: one HTTP/1.1 connection over the HTTP tests' ``FakeTransport``, upgraded by
  the sans-I/O ``websockets`` client (``ClientProtocol``) on the other side, so tests speak
  real, masked frames and read the server's bytes back as events; ``stream`` is the
  connection's ``WebSocketStream`` once the upgrade request was parsed.
* ``async def`` tests run on a fresh loop (the hook in ``tests/protocols/conftest.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.protocols.conftest import FakeTransport
from tests.utils import TIME_UNIT
from tricorn.protocols.asgi.websocket import WebSocketStream
from tricorn.protocols.state import ServerState
from tricorn.protocols.websocket.websockets_impl import WebSocketsCodec
from tricorn.protocols.websocket.wsproto_impl import WSProtoCodec

WS_BACKENDS: dict[str, type[Any]] = {
    "websockets": WebSocketsCodec,
    "wsproto": WSProtoCodec,
}


@pytest.fixture(params=list(WS_BACKENDS))
def ws_backend(request: pytest.FixtureRequest) -> str:
    """Every WebSocket test runs over both backends: ``--ws websockets`` and ``--ws wsproto``."""
    return str(request.param)


def ws_config(app: Any, backend: str, **settings: Any) -> Any:
    """A loaded ``Config`` whose ``ws_protocol_class`` is the backend's codec."""
    from tricorn.config import Config

    settings.setdefault("lifespan", "off")
    settings.setdefault("log_config", None)
    config = Config(app, ws=WS_BACKENDS[backend], **settings)
    config.load()
    assert config.ws_protocol_class is WS_BACKENDS[backend]
    return config


class WSConn:
    """An HTTP/1.1 connection over a ``FakeTransport``, upgraded by a sans-I/O client."""

    def __init__(
        self,
        backend: str,
        app: Any,
        *,
        app_state: dict[str, Any] | None = None,
        path: str = "/",
        subprotocols: Sequence[str] | None = None,
        deflate: bool = False,
        sslcontext: Any = None,
        headers: dict[str, str] | None = None,
        **settings: Any,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.config = ws_config(app, backend, **settings)
        self.state = ServerState(server_header=True, date_header=False)
        self.app_state = {} if app_state is None else app_state
        self.proto = self.config.http_protocol_class(
            config=self.config, server_state=self.state, app_state=self.app_state, _loop=self.loop
        )
        self.transport = FakeTransport(self.loop, sslcontext=sslcontext)
        self.transport.protocol = self.proto
        self.proto.connection_made(self.transport)
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.client = ClientProtocol(
            parse_uri("ws://example.com" + path),
            subprotocols=subprotocols,  # type: ignore[arg-type]
            extensions=extensions,
            max_size=None,
        )
        self.request = self.client.connect()
        for name, value in (headers or {}).items():
            self.request.headers[name] = value
        self.client.send_request(self.request)

    # -- driving ------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.proto.data_received(data)

    def open(self) -> None:
        """Send the client's upgrade request."""
        self.flush_client()

    @property
    def stream(self) -> WebSocketStream:
        """The WebSocket stream the upgrade request started."""
        websocket = self.proto.websocket
        assert websocket is not None, "not upgraded"
        return websocket.stream

    def flush_client(self) -> None:
        for chunk in self.client.data_to_send():
            if chunk:
                self.feed(chunk)

    async def turn(self, count: int = 20) -> None:
        for _ in range(count):
            await asyncio.sleep(0)

    async def settle(self) -> None:
        """Wait for the app task and what it schedules (e.g. connection_lost)."""
        tasks = set(self.state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5 * TIME_UNIT)
            assert not pending, "app task still running"
        await self.turn()

    async def until(self, condition: Any, what: str = "condition") -> None:
        for _ in range(20_000):
            if condition():
                return
            await asyncio.sleep(0)
        raise AssertionError(f"never happened: {what}")

    # -- the client side ------------------------------------------------------------------

    def received(self) -> list[Any]:
        """Events from what the server wrote since last time (handshake response, frames)."""
        data = self.transport.take()
        if data:
            self.client.receive_data(data)
        return self.client.events_received()

    def frames(self) -> list[Frame]:
        return [event for event in self.received() if isinstance(event, Frame)]

    def send_text(self, text: str) -> None:
        self.client.send_text(text.encode())
        self.flush_client()

    def send_bytes(self, data: bytes) -> None:
        self.client.send_binary(data)
        self.flush_client()

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.client.send_close(code, reason)
        self.flush_client()

    @property
    def closed(self) -> bool:
        return self.transport.closed


def accepted(events: list[Any]) -> Response:
    [response, *_] = events
    assert isinstance(response, Response), events
    assert response.status_code == 101, response
    return response


def close_frame(frames: Sequence[Frame]) -> tuple[int, str]:
    """The (code, reason) of the close frame that ends ``frames``."""
    assert frames, "no frame received"
    last = frames[-1]
    assert last.opcode is Opcode.CLOSE, frames
    data = bytes(last.data)
    return int.from_bytes(data[:2], "big"), data[2:].decode()


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """A frame built by hand, for bytes a well-behaved client would never send."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes([first, (0x80 if mask else 0) | length])
    elif length < 65536:
        head = bytes([first, (0x80 if mask else 0) | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, (0x80 if mask else 0) | 127]) + length.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# -- real sockets --------------------------------------------------------------------------


def ws_url(server: Any, path: str = "/") -> str:
    return f"ws://{server.host}:{server.port}{path}"


class RawClient:
    """A WebSocket client on a bare socket, for what well-behaved clients never do."""

    def __init__(self, server: Any, path: str = "/") -> None:
        self.sock = server.connect()
        self.sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % path.encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.head = head

    def _recv(self) -> bytes:
        data: bytes = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        return data

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (never masked)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(length)

    def read_close(self) -> int:
        """Read frames until a close frame; its code."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")

    def at_eof(self) -> bool:
        """Whether the server closed the connection (waits up to the socket timeout)."""
        try:
            while True:
                self.buffer += self._recv()
        except EOFError:
            return True
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
