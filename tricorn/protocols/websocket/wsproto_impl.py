"""``--ws wsproto``: ``wsproto.WSConnection`` under the shared cycle.

Only translation lives here. wsproto validates UTF-8 itself and reports a frame it cannot
parse as a ``CloseConnection`` event while the connection is still open (or closing from
our side); a real close frame moves it to REMOTE_CLOSING or CLOSED, which tells the two
apart. It does not limit message sizes: the shared cycle does, from the sizes given here,
except while inflating a compressed message, which ``_BoundedDeflate`` stops at ws_max_size.
Its ``Request`` event leaves some headers out, so the scope's headers are read from the
request head itself (already validated by wsproto's h11 parser when the event arrives).
"""

from __future__ import annotations

import zlib
from typing import Any

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
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.utilities import RemoteProtocolError

from tricorn.protocols.websocket.cycle import (
    FAILED,
    HANDSHAKE,
    MAX_HANDSHAKE,
    WebSocketConnection,
)
from tricorn.protocols.websocket.errors import MESSAGE_TOO_BIG

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


class _BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_size`` bytes per message.

    wsproto inflates each received chunk in one unbounded zlib call, so a few KiB of
    compressed zeros would take gigabytes before the cycle could count them. Here zlib
    stops one byte past the limit and the connection fails with 1009 (wsproto turns the
    returned ``CloseReason`` into a ``CloseConnection`` event). The end-of-message flush is
    left to wsproto: it inflates only the 4-byte tail (a few KiB at most), which the cycle's
    own size check counts.

    Control frames are kept out of the message's state: wsproto resets it on a ping between
    two fragments, and the rest of the message then arrives still compressed
    (python-hyper/wsproto#205). Uses wsproto's private inbound fields, the same in 1.2 and 1.3.
    """

    def __init__(self, max_size: int | None) -> None:
        super().__init__()
        self.max_size = max_size
        self.inflated = 0  # bytes of the message being received, once inflated

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._inbound_is_compressible = False
            return RsvBits(True, False, False)
        if opcode is not Opcode.CONTINUATION:
            self.inflated = 0
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        max_size = self.max_size
        if max_size is None or not (self._inbound_compressed and self._inbound_is_compressible):
            return super().frame_inbound_payload_data(proto, data)
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            # Output below the bound means all input was consumed: nothing is left behind.
            inflated = decompressor.decompress(data, max_size - self.inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(inflated)
        if self.inflated > max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not self._inbound_is_compressible:
            return None  # a control frame: the message it interrupted goes on
        return super().frame_inbound_complete(proto, fin)


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
                    code = int(event.code)
                    reason = event.reason or ""
                    if code == MESSAGE_TOO_BIG:  # from _BoundedDeflate; as the cycle says it
                        reason = f"message over {self.max_size} bytes"
                    self.fail(code, reason)
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
            extensions.append(_BoundedDeflate(self.max_size))
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
