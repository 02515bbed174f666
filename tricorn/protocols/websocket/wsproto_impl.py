"""``--ws wsproto``: ``wsproto`` as a frame codec.

Only translation lives here. The handshake is wsproto's ``H11Handshake``, started from the
request head the HTTP/1.1 framing already parsed (``initiate_upgrade_connection``); the
frames after it are its ``Connection``. wsproto validates UTF-8 itself and reports a frame
it cannot parse as a ``CloseConnection`` event while the connection is still open (or
closing from our side); a real close frame moves it to REMOTE_CLOSING or CLOSED, which
tells the two apart. It does not limit message sizes: the stream does, from the sizes
given here, except while inflating a compressed message, which ``_BoundedDeflate`` stops
at ws_max_size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import h11
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from tricorn.protocols.asgi.errors import MESSAGE_TOO_BIG, Headers
from tricorn.protocols.asgi.websocket import FAILED, WebSocketStream
from tricorn.protocols.websocket.codec import HandshakeFailed

_STILL_OURS = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_CAN_CLOSE = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)


class _BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_size`` bytes per message.

    wsproto inflates each received chunk in one unbounded zlib call, so a few KiB of
    compressed zeros would take gigabytes before the stream could count them. Here zlib
    stops one byte past the limit and the connection fails with 1009 (wsproto turns the
    returned ``CloseReason`` into a ``CloseConnection`` event). The end-of-message flush is
    left to wsproto: it inflates only the 4-byte tail (a few KiB at most), which the
    stream's own size check counts.

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


class WSProtoCodec:
    """WebSocket frames through ``wsproto``. Only translates; see ``codec``."""

    __slots__ = ("stream", "write", "handshaker", "conn")

    def __init__(self, stream: WebSocketStream, write: Callable[[bytes], None]) -> None:
        self.stream = stream
        self.write = write
        self.handshaker = H11Handshake(ConnectionType.SERVER)
        self.conn: Connection = None  # type: ignore[assignment]  # set by accept()

    def handshake(self, target: bytes, headers: Headers) -> None:
        try:
            self.handshaker.initiate_upgrade_connection(headers, target)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            raise HandshakeFailed(status, str(exc)) from None
        except h11.LocalProtocolError as exc:  # h11 would not even write this request
            raise HandshakeFailed(400, str(exc)) from None
        for _ in self.handshaker.events():  # the Request: the stream has the scope already
            pass

    def accept(self, subprotocol: str | None, headers: Headers) -> bytes:
        extensions: list[Extension] = []
        if self.stream.conn.config.ws_per_message_deflate:
            extensions.append(_BoundedDeflate(self.stream.max_size))
        event = AcceptConnection(
            subprotocol=subprotocol, extensions=extensions, extra_headers=headers
        )
        data = self.handshaker.send(event)
        connection = self.handshaker.connection
        assert connection is not None  # accepted
        self.conn = connection
        return data

    def receive(self, data: bytes) -> None:
        conn = self.conn
        stream = self.stream
        conn.receive_data(data)
        for event in conn.events():
            if stream.state >= FAILED:
                return
            if isinstance(event, TextMessage):
                text = event.data
                size = len(text) if text.isascii() else len(text.encode("utf-8"))
                stream.message_part(text, size, event.message_finished)
            elif isinstance(event, BytesMessage):
                payload = bytes(event.data)
                stream.message_part(payload, len(payload), event.message_finished)
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:  # no frames after our close frame
                    self.write(conn.send(event.response()))
            elif isinstance(event, Pong):
                stream.pong_received(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                if conn.state in _STILL_OURS:
                    # Not a close frame: wsproto could not parse the client's bytes.
                    code = int(event.code)
                    reason = event.reason or ""
                    if code == MESSAGE_TOO_BIG:  # from _BoundedDeflate; as the stream says it
                        reason = f"message over {stream.max_size} bytes"
                    stream.fail(code, reason)
                    return
                if conn.state is ConnectionState.REMOTE_CLOSING:
                    self.write(conn.send(event.response()))
                stream.close_received(int(event.code), event.reason or "")  # not an enum

    def message(self, data: str | bytes) -> bytes:
        event: Message[Any] = (
            TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        )
        return self.conn.send(event)

    def ping(self, payload: bytes) -> bytes:
        return self.conn.send(Ping(payload=payload))

    def close(self, code: int, reason: str) -> bytes:
        if self.conn.state not in _CAN_CLOSE:
            return b""  # a close frame already went out
        return self.conn.send(CloseConnection(code=code, reason=reason))
