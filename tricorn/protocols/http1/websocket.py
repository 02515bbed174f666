"""A WebSocket over HTTP/1.1: the upgraded connection as the WebSocket stream's sink.

The HTTP/1.1 connection parsed the upgrade request; ``WebSocketOverHTTP1`` starts the
``WebSocketStream`` from that head (no byte is replayed), checks the handshake with the
frame codec (``--ws``), and from then on the connection hands it every byte it receives.
It writes what the stream decides: the 101 (the codec renders it, with the server's
default headers), frames, a refusing HTTP response; and it closes the TCP connection
(RFC 6455 7.1.1: the server closes first), half-closes it after a failure, or drops it.
"""

from __future__ import annotations

from typing import Any

from tricorn.protocols.asgi.errors import ClientDisconnected, Headers
from tricorn.protocols.asgi.scope import new_scope
from tricorn.protocols.asgi.websocket import CLOSING, OPEN, WebSocketStream
from tricorn.protocols.base import BaseConnection
from tricorn.protocols.http1.response import closing_response
from tricorn.protocols.websocket.codec import FrameCodec

_EXTENSIONS: dict[str, Any] = {"websocket.http.response": {}}


def offered_subprotocols(headers: Headers) -> list[str]:
    """The subprotocols of every Sec-WebSocket-Protocol field, in order."""
    return [
        token
        for name, value in headers
        if name == b"sec-websocket-protocol"
        for token in (t.strip() for t in value.decode("latin-1").split(","))
        if token
    ]


class WebSocketOverHTTP1:
    """The ``WebSocketSink`` of an upgraded HTTP/1.1 connection, and where its bytes go.

    Raises ``HandshakeFailed`` (from the codec) when the request is no valid handshake:
    the connection answers it as an HTTP error and no stream starts.
    """

    __slots__ = ("conn", "stream", "codec")

    def __init__(
        self,
        conn: BaseConnection,
        target: bytes,
        raw_path: bytes,
        query: bytes,
        headers: Headers,
    ) -> None:
        scope = new_scope(conn, "websocket", "1.1", raw_path, query, headers)
        scope["subprotocols"] = offered_subprotocols(headers)
        scope["extensions"] = _EXTENSIONS
        self.conn = conn
        self.stream = WebSocketStream(conn, scope, self, target)
        codec_class: type[FrameCodec] | None = conn.config.ws_protocol_class
        assert codec_class is not None  # the connection upgrades only when --ws has one
        self.codec = codec_class(self.stream, conn.write)
        self.codec.handshake(target, headers)

    # -- from the connection ------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        # Frames flow once the app accepted (a client must wait for our 101) and until we
        # failed or closed (RFC 6455 7.1.7: what follows is discarded).
        if OPEN <= self.stream.state <= CLOSING:
            self.codec.receive(data)

    # -- WebSocketSink --------------------------------------------------------------------

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        names = {name.lower() for name, _ in headers}
        defaults = self.conn.server_state.default_headers_without(names)
        self.conn.write(self.codec.accept(subprotocol, defaults + headers))

    def reject(self, status: int, headers: Headers, body: bytes) -> None:
        conn = self.conn
        conn.write(closing_response(status, conn.server_state, headers, body))
        conn.transport.close()

    def send_message(self, data: str | bytes) -> bool:
        conn = self.conn
        transport = conn.transport
        if transport.is_closing():
            raise ClientDisconnected("The client has disconnected.")
        transport.write(self.codec.message(data))
        return conn.writing_paused

    def send_ping(self, payload: bytes) -> None:
        self.conn.write(self.codec.ping(payload))

    def send_close(self, code: int, reason: str) -> None:
        self.conn.write(self.codec.close(code, reason))

    def close(self) -> None:
        self.conn.transport.close()

    def shut_write(self) -> bool:
        transport = self.conn.transport
        if self.conn.tls or not transport.can_write_eof():
            return False  # TLS cannot half-close
        transport.write_eof()
        return True

    def abort(self) -> None:
        self.conn.transport.abort()

    def pause_reading(self) -> None:
        self.conn.transport.pause_reading()

    def resume_reading(self) -> None:
        self.conn.transport.resume_reading()

    async def drain(self) -> None:
        await self.conn.drain()
