"""What a WebSocket frame codec is: the interface of ``websockets_impl`` and ``wsproto_impl``.

A codec wraps one sans-I/O library for one WebSocket. The framing that upgraded the
connection (``protocols.http1.websocket``) creates it for a ``WebSocketStream`` with a
``write`` function, asks it to check the handshake request, and after the app accepted,
gives it every byte the client sends. The codec turns the library's events into calls on
the stream (``message_part``, ``pong_received``, ``close_received``, ``fail``) and writes
what the library must answer at once (pongs, the echo of a close frame) through
``write``; the stream's decisions become bytes through ``message``, ``ping`` and
``close``. Limits and close codes are the stream's; the codec only reports sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tricorn.protocols.asgi.errors import PLAIN_TEXT, Headers, HTTPProtocolError
from tricorn.protocols.asgi.websocket import WebSocketStream
from tricorn.protocols.utils import log_safe


class HandshakeFailed(HTTPProtocolError):
    """The upgrade request is not a valid WebSocket handshake: answer ``status``.

    ``reason`` is the library's, for the server's log: it may quote the client's bytes, so
    it is escaped and bounded here.
    """

    what = "Invalid WebSocket handshake"

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(
            status,
            log_safe(reason.encode("utf-8", "replace")[:200]),
            [(b"sec-websocket-version", b"13"), PLAIN_TEXT],
            b"Invalid WebSocket handshake.",
        )


class FrameCodec(Protocol):
    """One WebSocket's frames, through one library (``--ws websockets|wsproto``)."""

    def __init__(self, stream: WebSocketStream, write: Callable[[bytes], None]) -> None: ...

    def handshake(self, target: bytes, headers: Headers) -> None:
        """Check the upgrade request (header names lower-cased); ``HandshakeFailed`` if bad."""

    def accept(self, subprotocol: str | None, headers: Headers) -> bytes:
        """The HTTP/1.1 101 response with ``headers`` added; frames flow from now on."""

    def receive(self, data: bytes) -> None:
        """Bytes from the client, after ``accept``."""

    def message(self, data: str | bytes) -> bytes:
        """One text (``str``) or binary (``bytes``) message as a frame."""

    def ping(self, payload: bytes) -> bytes: ...

    def close(self, code: int, reason: str) -> bytes:
        """Our close frame (b"" when one already went out); no frame follows it."""
