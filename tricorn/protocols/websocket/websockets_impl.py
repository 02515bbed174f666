"""``--ws websockets``: the sans-I/O ``websockets.server.ServerProtocol`` under the shared cycle.

Only translation lives here: library events become calls on ``WebSocketConnection`` and our
decisions become library calls. The library enforces ws_max_size itself (before reading an
oversized frame) and answers pings; it does not validate UTF-8 in text messages, so text
is decoded here, incrementally across fragments, so that bad bytes fail fast with 1007.
"""

from __future__ import annotations

import codecs
import logging
from typing import TYPE_CHECKING

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from tricorn.protocols.websocket.cycle import (
    FAILED,
    HANDSHAKE,
    MAX_HANDSHAKE,
    WebSocketConnection,
)
from tricorn.protocols.websocket.errors import ABNORMAL_CLOSURE, INVALID_DATA

if TYPE_CHECKING:
    pass


class _LibraryLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """tricorn.error for the library's warnings and errors only.

    The library logs "connection open"/"connection closed" at INFO for every connection
    and every frame at DEBUG; our access log and TRACE lines already say that.
    """

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


_library_logger = _LibraryLogger(logging.getLogger("tricorn.error"))
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class _ServerProtocol(ServerProtocol):
    """``ServerProtocol`` that takes a close frame between the fragments of a message."""

    def recv_frame(self, frame: Frame) -> None:
        # RFC 6455 5.4 allows control frames, close included, between fragments; the library
        # fails that with 1002 where the close should be echoed (Autobahn case 7.1.5).
        # Nothing after a close frame is read, so the unfinished message is simply dropped.
        if frame.opcode is Opcode.CLOSE:
            for name in ("current_size", "cur_size"):  # cur_size: older websockets
                if getattr(self, name, None) is not None:
                    setattr(self, name, None)
        super().recv_frame(frame)


class WebSocketsProtocol(WebSocketConnection):
    """WebSocket over the ``websockets`` library. Only translates; see ``cycle``."""

    __slots__ = ("conn", "response", "decoder", "head_size")

    def new_library(self) -> None:
        extensions: list[ServerExtensionFactory] = []
        if self.per_message_deflate:
            # Window and memory settings as uvicorn's: about 64 KiB per connection.
            extensions.append(
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            )
        self.conn = _ServerProtocol(
            extensions=extensions, max_size=self.max_size, logger=_library_logger
        )
        self.response: Response | None = None
        # Decoder of the text message being received; None for a binary one.
        self.decoder: codecs.IncrementalDecoder | None = None
        self.head_size = 0

    def parse(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        if self.state == HANDSHAKE:
            # Our own response answers a bad handshake, not the library's.
            conn.data_to_send()
            self.head_size += len(data)
        else:
            # Pongs, the echo of a close frame, or the close frame of a failure.
            for chunk in conn.data_to_send():
                self.write(chunk)
        for event in conn.events_received():
            if self.state >= FAILED:
                return
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._request(event)
        exc = conn.parser_exc
        if exc is not None and self.state < FAILED:
            if self.state == HANDSHAKE:
                self.handshake_failed(400, f"{exc}: {exc.__cause__}")
                return
            close = conn.close_sent
            if close is None:  # the stream ended: no close frame to send
                self.fail(ABNORMAL_CLOSURE, str(exc), frame_sent=True)
            else:
                self.fail(int(close.code), close.reason, frame_sent=True)
        elif self.state == HANDSHAKE and self.head_size > MAX_HANDSHAKE:
            self.handshake_failed(431, "handshake request too large")

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            data = frame.data
            size = len(data)
            fin = frame.fin
            if opcode is Opcode.BINARY:
                self.decoder = None
            elif opcode is Opcode.TEXT:
                if fin:  # the common case: a whole message in one frame
                    try:
                        text = bytes(data).decode("utf-8")
                    except UnicodeDecodeError:
                        self.fail(INVALID_DATA, "invalid UTF-8")
                        return
                    self.message_part(text, size, True)
                    return
                self.decoder = _Utf8Decoder()
            decoder = self.decoder
            if decoder is None:
                self.message_part(bytes(data), size, fin)
                return
            try:
                text = decoder.decode(data, fin)
            except UnicodeDecodeError:
                self.fail(INVALID_DATA, "invalid UTF-8")
                return
            if fin:
                self.decoder = None
            self.message_part(text, size, fin)
        elif opcode is Opcode.PONG:
            self.pong_received(bytes(frame.data))
        elif opcode is Opcode.CLOSE:
            close = self.conn.close_rcvd
            if close is not None:
                self.close_received(int(close.code), close.reason)  # not the library's enum
        # PING: the library has queued the pong and parse() wrote it.

    def _request(self, request: Request) -> None:
        response = self.conn.accept(request)
        if response.status_code != 101:
            reason = str(self.conn.handshake_exc or response.reason_phrase)
            self.handshake_failed(response.status_code, reason)
            return
        del response.headers["Date"]  # ours comes with the server's default headers
        self.response = response
        # websockets 17 decodes header values as ISO-8859-1, older versions as ASCII with
        # surrogate escapes: this encoding gives the wire bytes back for both.
        headers = [
            (name.lower().encode("ascii"), value.encode("latin-1", "surrogateescape"))
            for name, value in request.headers.raw_items()
        ]
        self.handshake(request.path.encode("ascii", "surrogateescape"), headers)

    def accept_bytes(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        response = self.response
        assert response is not None
        response_headers = response.headers
        for name, value in headers:
            response_headers[name.decode("latin-1")] = value.decode("latin-1")
        if subprotocol is not None:
            response_headers["Sec-WebSocket-Protocol"] = subprotocol
        self.response = None
        conn = self.conn
        conn.send_response(response)
        return b"".join(conn.data_to_send())

    def message_bytes(self, data: str | bytes) -> bytes:
        conn = self.conn
        if isinstance(data, str):
            conn.send_text(data.encode("utf-8"))
        else:
            conn.send_binary(data)
        writes = conn.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def ping_bytes(self, payload: bytes) -> bytes:
        conn = self.conn
        conn.send_ping(payload)
        return b"".join(conn.data_to_send())

    def close_bytes(self, code: int, reason: str) -> bytes:
        conn = self.conn
        if conn.state is not State.OPEN:
            # The library already echoed a close frame the client sent in the same read
            # as the bytes we are failing on: no second close frame.
            return b""
        conn.send_close(code, reason)
        return b"".join(conn.data_to_send())
