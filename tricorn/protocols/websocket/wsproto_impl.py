"""``--ws wsproto``: ``wsproto.WSConnection`` under the shared cycle.

Only translation lives here. wsproto validates UTF-8 itself and reports a frame it cannot
parse as a ``CloseConnection`` event while the connection is still open (or closing from
our side); a real close frame moves it to REMOTE_CLOSING or CLOSED, which tells the two
apart. It does not limit message sizes: the shared cycle does, from the sizes given here.
Its ``Request`` event leaves some headers out, so the scope's headers are read from the
request head itself (already validated by wsproto's h11 parser when the event arrives).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from tricorn.protocols.websocket.cycle import (
    FAILED,
    HANDSHAKE,
    MAX_HANDSHAKE,
    WebSocketConnection,
)

if TYPE_CHECKING:
    pass

_STILL_OURS = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_CAN_CLOSE = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)


def head_headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a request head h11 has accepted: lower-cased, wire order."""
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip(b" \t")))
    return headers


class WSProtoProtocol(WebSocketConnection):
    """WebSocket over ``wsproto``. Only translates; see ``cycle``."""

    __slots__ = ("conn", "head")

    def new_library(self) -> None:
        self.conn = WSConnection(ConnectionType.SERVER)
        self.head = b""  # the request head, until the handshake is parsed

    def parse(self, data: bytes) -> None:
        conn = self.conn
        if self.state == HANDSHAKE:
            self.head += data
            if len(self.head) > MAX_HANDSHAKE:
                self.handshake_failed(431, "handshake request too large")
                return
        try:
            conn.receive_data(data)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            self.handshake_failed(status, str(exc))
            return
        for event in conn.events():
            if self.state >= FAILED:
                return
            if isinstance(event, TextMessage):
                text = event.data
                size = len(text) if text.isascii() else len(text.encode("utf-8"))
                self.message_part(text, size, event.message_finished)
            elif isinstance(event, BytesMessage):
                data = bytes(event.data)
                self.message_part(data, len(data), event.message_finished)
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:  # no frames after our close frame
                    self.write(conn.send(event.response()))
            elif isinstance(event, Pong):
                self.pong_received(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                if conn.state in _STILL_OURS:
                    # Not a close frame: wsproto could not parse the client's bytes.
                    self.fail(int(event.code), event.reason or "")
                    return
                if conn.state is ConnectionState.REMOTE_CLOSING:
                    self.write(conn.send(event.response()))
                self.close_received(int(event.code), event.reason or "")  # not an enum
            elif isinstance(event, Request):
                head, self.head = self.head, b""
                self.handshake(event.target.encode("ascii"), head_headers(head))

    def accept_bytes(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        extensions: list[Extension] = []
        if self.per_message_deflate:
            extensions.append(PerMessageDeflate())
        event = AcceptConnection(
            subprotocol=subprotocol, extensions=extensions, extra_headers=headers
        )
        return self.conn.send(event)

    def message_bytes(self, data: str | bytes) -> bytes:
        event: Message[Any] = (
            TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        )
        return self.conn.send(event)

    def ping_bytes(self, payload: bytes) -> bytes:
        return self.conn.send(Ping(payload=payload))

    def close_bytes(self, code: int, reason: str) -> bytes:
        if self.conn.state not in _CAN_CLOSE:
            return b""  # a close frame already went out
        return self.conn.send(CloseConnection(code=code, reason=reason))
