"""HTTP/1.1 responses on the wire: status lines, header blocks, framing and keep-alive.

``HTTP1Sink`` is the ``HTTPSink`` of one request: it turns what the ASGI stream decided
into bytes. It chooses the framing with the first body (the stream holds the head until
then): the app's Content-Length or Transfer-Encoding if it set one; else a Content-Length
when the whole body is there; else chunked on HTTP/1.1, or, on HTTP/1.0, a body that ends
with the connection. It also decides keep-alive, from the request, the app's
``Connection: close``, server shutdown and an unanswered ``Expect: 100-continue``.

``closing_response()`` renders a whole response after which the connection closes: the
server's own errors (``error_response``, from the ``HTTPProtocolError`` that carries
them) and the app's refusal of a WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized
from http import HTTPStatus
from typing import Protocol

from tricorn.protocols.asgi.errors import Headers, HTTPProtocolError, message
from tricorn.protocols.asgi.http import HTTPStream
from tricorn.protocols.state import ServerState

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Headers of a closing response that we frame ourselves.
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"connection"))
_ENCODING = "http/1.1"  # this framing's key in ServerState.encoded

_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <phrase>\\r\\n``, cached per status code."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        if len(_STATUS_LINES) < 1000:  # bounded: apps may use odd codes
            _STATUS_LINES[status] = line
    return line


def default_block(state: ServerState, without: set[bytes] | None = None) -> bytes:
    """The server's default headers as header lines, minus the names ``without``.

    The whole block is encoded once per refresh of the defaults (once a second, for the
    Date header), not per response.
    """
    if without:
        return b"".join(
            b"%s: %s\r\n" % (name, value)
            for name, value in state.default_headers
            if name not in without
        )
    block = state.encoded.get(_ENCODING)
    if block is None:
        block = state.encoded[_ENCODING] = b"".join(
            b"%s: %s\r\n" % (name, value) for name, value in state.default_headers
        )
    return block


def closing_response(status: int, state: ServerState, headers: Headers, body: bytes) -> bytes:
    """A whole response after which the connection closes: the default headers (minus
    those ``headers`` set), ``headers`` without their framing, a Content-Length and
    ``Connection: close``."""
    names = {name.lower() for name, _ in headers}
    lines = [status_line(status), default_block(state, names)]
    lines.extend(
        b"%s: %s\r\n" % (name, value)
        for name, value in headers
        if name.lower() not in _FRAMING_HEADERS
    )
    lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


def error_response(error: HTTPProtocolError, state: ServerState) -> bytes:
    """The response to a request we refuse ourselves; the connection then closes."""
    body = message(error.status) if error.body is None else error.body
    return closing_response(error.status, state, error.headers, body)


class Connection(Protocol):
    """What a sink needs of its HTTP/1.1 connection (``connection.HTTP1Connection``)."""

    transport: asyncio.Transport
    server_state: ServerState
    writing_paused: bool
    reading_paused: bool
    shutting_down: bool

    @property
    def pending(self) -> Sized:
        """The requests pipelined behind this one."""

    def update_reading(self) -> None: ...

    def abort(self) -> None: ...

    async def drain(self) -> None: ...

    def response_complete(self, keep_alive: bool) -> None:
        """The last byte of the response is written; ``keep_alive``: the next may come."""


class HTTP1Sink:
    """The HTTP/1.1 side of one response (see the module docstring)."""

    __slots__ = ("conn", "http_version", "keep_alive", "chunked")

    def __init__(self, conn: Connection, http_version: str, keep_alive: bool) -> None:
        self.conn = conn
        self.http_version = http_version
        self.keep_alive = keep_alive  # what the request allows; settled by send_head
        self.chunked = False

    @property
    def writing_paused(self) -> bool:
        return self.conn.writing_paused

    def send_continue(self) -> None:
        self.conn.transport.write(_CONTINUE)

    def consumed(self, size: int) -> None:
        conn = self.conn
        if conn.reading_paused:
            conn.update_reading()

    def abort(self) -> None:
        self.conn.abort()

    async def drain(self) -> None:
        await self.conn.drain()

    def send_head(self, stream: HTTPStream, body: bytes, more_body: bool) -> None:
        conn = self.conn
        state = conn.server_state
        overridden = stream.overridden
        block = state.encoded.get(_ENCODING) if overridden is None else None
        if block is None:
            block = default_block(state, overridden)
        lines = [status_line(stream.status), block]
        for name, value in stream.headers:
            lines.append(b"%s: %s\r\n" % (name, value))
        keep_alive = self.keep_alive and not stream.app_closes
        if stream.no_body:
            pass
        elif stream.content_length is not None or stream.app_chunked:
            self.chunked = stream.app_chunked  # the app chose the framing
        elif not more_body:
            # The whole body is here: frame it with a length, which keeps HTTP/1.0 alive too.
            lines.append(b"content-length: %d\r\n" % len(body))
        elif self.http_version == "1.1":
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            keep_alive = False  # HTTP/1.0 streaming: the body ends when the connection does
        if (conn.shutting_down and not conn.pending) or (
            # The client still waits for "100 Continue" and may or may not send its body:
            # the connection cannot be reused safely.
            stream.expect_continue and not stream.body_complete
        ):
            keep_alive = False
        if not keep_alive:
            if not stream.app_closes:
                lines.append(b"connection: close\r\n")
        elif self.http_version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        self.keep_alive = keep_alive
        lines.append(b"\r\n")
        if self.chunked:
            self.send_body(body, more_body, b"".join(lines))
            return
        # Head and body in one write: the common case of a whole response.
        lines.append(body)
        conn.transport.write(b"".join(lines))
        if not more_body:
            conn.response_complete(keep_alive)

    def send_body(self, body: bytes, more_body: bool, head: bytes = b"") -> None:
        if self.chunked:
            data = b"".join((head, b"%x\r\n" % len(body), body, b"\r\n")) if body else head
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            data = body
        conn = self.conn
        if data:
            conn.transport.write(data)
        if not more_body:
            conn.response_complete(self.keep_alive)
