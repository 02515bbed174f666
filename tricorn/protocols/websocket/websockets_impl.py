"""``--ws websockets``: the sans-I/O ``websockets`` library as a frame codec.

Only translation lives here: library events become calls on the ``WebSocketStream`` and
the stream's decisions become library calls. The handshake is the library's
(``ServerProtocol.accept`` checks the request and negotiates permessage-deflate); the
frames after it go through a plain ``Protocol`` started OPEN with the negotiated
extensions. The library enforces ws_max_size itself (before reading an oversized frame)
and answers pings; it does not validate UTF-8 in text messages, so text is decoded here,
incrementally across fragments, so that bad bytes fail fast with 1007.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable

from websockets.datastructures import Headers as LibraryHeaders
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

from tricorn.protocols.asgi.errors import ABNORMAL_CLOSURE, INVALID_DATA, Headers
from tricorn.protocols.asgi.websocket import FAILED, WebSocketStream
from tricorn.protocols.websocket.codec import HandshakeFailed


class _LibraryLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """tricorn.error for the library's warnings and errors only.

    The library logs "connection open"/"connection closed" at INFO for every connection
    and every frame at DEBUG; our access log and TRACE lines already say that.
    """

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


_library_logger = _LibraryLogger(logging.getLogger("tricorn.error"))
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class _FrameProtocol(Protocol):
    """The frames of an accepted connection; takes a close frame between fragments."""

    def recv_frame(self, frame: Frame) -> None:
        # RFC 6455 5.4 allows control frames, close included, between fragments; the library
        # fails that with 1002 where the close should be echoed (Autobahn case 7.1.5).
        # Nothing after a close frame is read, so the unfinished message is simply dropped.
        if frame.opcode is Opcode.CLOSE:
            for name in ("current_size", "cur_size"):  # cur_size: older websockets
                if getattr(self, name, None) is not None:
                    setattr(self, name, None)
        super().recv_frame(frame)


class WebSocketsCodec:
    """WebSocket frames through the ``websockets`` library. Only translates; see ``codec``."""

    __slots__ = ("stream", "write", "handshaker", "response", "protocol", "decoder")

    def __init__(self, stream: WebSocketStream, write: Callable[[bytes], None]) -> None:
        self.stream = stream
        self.write = write
        extensions: list[ServerExtensionFactory] = []
        if stream.conn.config.ws_per_message_deflate:
            # Window and memory settings as uvicorn's: about 64 KiB per connection.
            extensions.append(
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            )
        self.handshaker: ServerProtocol | None = ServerProtocol(
            extensions=extensions, max_size=stream.max_size, logger=_library_logger
        )
        self.response: Response | None = None  # the 101, from handshake() to accept()
        self.protocol: _FrameProtocol = None  # type: ignore[assignment]  # set by accept()
        # Decoder of the text message being received; None for a binary one.
        self.decoder: codecs.IncrementalDecoder | None = None

    def handshake(self, target: bytes, headers: Headers) -> None:
        handshaker = self.handshaker
        assert handshaker is not None
        request = Request(
            target.decode("latin-1"),
            LibraryHeaders(
                [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
            ),
        )
        response = handshaker.accept(request)
        if response.status_code != 101:
            reason = str(handshaker.handshake_exc or response.reason_phrase)
            raise HandshakeFailed(response.status_code, reason)
        del response.headers["Date"]  # ours comes with the server's default headers
        self.response = response

    def accept(self, subprotocol: str | None, headers: Headers) -> bytes:
        response, handshaker = self.response, self.handshaker
        assert response is not None and handshaker is not None
        response_headers = response.headers
        for name, value in headers:
            response_headers[name.decode("latin-1")] = value.decode("latin-1")
        if subprotocol is not None:
            response_headers["Sec-WebSocket-Protocol"] = subprotocol
        protocol = self.protocol = _FrameProtocol(
            Side.SERVER, max_size=self.stream.max_size, logger=_library_logger
        )
        protocol.extensions = handshaker.extensions
        self.response = self.handshaker = None
        return response.serialize()

    def receive(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        # Pongs, the echo of a close frame, or the close frame of a failure.
        for chunk in protocol.data_to_send():
            self.write(chunk)
        stream = self.stream
        for event in protocol.events_received():
            if stream.state >= FAILED:
                return
            if isinstance(event, Frame):  # the only events after the handshake
                self._frame(event)
        exc = protocol.parser_exc
        if exc is not None and stream.state < FAILED:
            close = protocol.close_sent
            if close is None:  # the stream ended: no close frame to send
                stream.fail(ABNORMAL_CLOSURE, str(exc), frame_sent=True)
            else:
                stream.fail(int(close.code), close.reason, frame_sent=True)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        stream = self.stream
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
                        stream.fail(INVALID_DATA, "invalid UTF-8")
                        return
                    stream.message_part(text, size, True)
                    return
                self.decoder = _Utf8Decoder()
            decoder = self.decoder
            if decoder is None:
                stream.message_part(bytes(data), size, fin)
                return
            try:
                text = decoder.decode(data, fin)
            except UnicodeDecodeError:
                stream.fail(INVALID_DATA, "invalid UTF-8")
                return
            if fin:
                self.decoder = None
            stream.message_part(text, size, fin)
        elif opcode is Opcode.PONG:
            stream.pong_received(bytes(frame.data))
        elif opcode is Opcode.CLOSE:
            close = self.protocol.close_rcvd
            if close is not None:
                stream.close_received(int(close.code), close.reason)  # not the library's enum
        # PING: the library has queued the pong and receive() wrote it.

    def message(self, data: str | bytes) -> bytes:
        protocol = self.protocol
        if isinstance(data, str):
            protocol.send_text(data.encode("utf-8"))
        else:
            protocol.send_binary(data)
        writes = protocol.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def ping(self, payload: bytes) -> bytes:
        protocol = self.protocol
        protocol.send_ping(payload)
        return b"".join(protocol.data_to_send())

    def close(self, code: int, reason: str) -> bytes:
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            # The library already echoed a close frame the client sent in the same read
            # as the bytes we are failing on: no second close frame.
            return b""
        protocol.send_close(code, reason)
        return b"".join(protocol.data_to_send())
