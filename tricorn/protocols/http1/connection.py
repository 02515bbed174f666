"""One HTTP/1.1 connection, shared by both parser backends.

Rules of this module: everything about an HTTP/1.1 connection that does not depend on the
parser library lives here, once. A backend subclass implements ``parse(data)`` and, from
its parser's events, calls ``request_head``, ``request_body`` and ``request_complete``; a
request that breaks HTTP raises ``HTTPProtocolError`` out of ``parse``. Each request
becomes an ``HTTPStream`` (``protocols.asgi``) whose sink is an ``HTTP1Sink``
(``response``); a WebSocket upgrade becomes a ``WebSocketOverHTTP1`` (``websocket``),
which then gets every byte the connection receives.

Theory of operation
-------------------
* Bytes are parsed as they arrive. The first request's app runs; requests pipelined behind
  it wait in ``pending`` (reading paused) and start in order as each response completes.
* Reading also pauses while the running app has more than ``HIGH_WATER`` bytes of body it
  has not read; ``receive()`` resumes it (``HTTP1Sink.consumed``). ``send()`` waits while
  the transport is paused.
* Timeouts are swept by ``on_tick`` (called once a second for every connection by
  ``ServerState.tick``), not armed per request: an idle keep-alive connection closes after
  ``timeout_keep_alive``, a request head must arrive within ``HEAD_TIMEOUT``.
* ``shutdown()`` finishes what the client already sent; the last response says
  ``Connection: close``. An idle connection is kept until its next request (answered with
  ``Connection: close``) or its keep-alive timeout, because a request may be on its way.
* Limits (head size, target length, header count) and request smuggling guards (both
  Content-Length and Transfer-Encoding, unknown transfer codings, missing Host) are checked
  here so both backends refuse exactly the same requests. What llhttp refuses while parsing
  (``--http httptools``) the h11 backend refuses the same way before h11 sees it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from tricorn.logs import TRACE_LOG_LEVEL
from tricorn.protocols.asgi.errors import HTTPProtocolError
from tricorn.protocols.asgi.http import HTTPStream, service_unavailable
from tricorn.protocols.asgi.scope import new_scope
from tricorn.protocols.base import BaseConnection, logger
from tricorn.protocols.http1.request import (
    DEFAULT_MAX_HEAD,
    HTTP_METHODS,
    MAX_HEADERS,
    MAX_TARGET,
    split_target,
    transfer_coding_error,
    version_error,
)
from tricorn.protocols.http1.response import HTTP1Sink, error_response
from tricorn.protocols.http1.websocket import WebSocketOverHTTP1
from tricorn.protocols.utils import connection_tokens

HEAD_TIMEOUT = 30.0  # seconds a started request head may take: bounds slow-loris clients
HIGH_WATER = 64 * 1024  # unread request body bytes before reading pauses

_HOST = 1
_CONTENT_LENGTH = 2
_TRANSFER_ENCODING = 3
_CONNECTION = 4
_EXPECT = 5
_UPGRADE = 6
_REQUEST_HEADERS = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
}
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class HTTP1Connection(BaseConnection):
    """Per-connection HTTP/1.1 behaviour; subclasses only plug in a parser."""

    __slots__ = (
        "limit_concurrency",
        "timeout_keep_alive",
        "max_head",
        "ws_available",
        "stream",
        "receiving",
        "pending",
        "reading_paused",
        "in_head",
        "head_size",
        "line_done",
        "head_started",
        "idle_since",
        "closed",
        "failed",
        "deferred_error",
        "websocket",
    )

    def setup(self) -> None:
        config = self.config
        self.limit_concurrency: int | None = config.limit_concurrency
        self.timeout_keep_alive: float = config.timeout_keep_alive
        self.max_head: int = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD
        self.ws_available = config.ws_protocol_class is not None

        self.stream: HTTPStream | None = None  # the one whose app runs
        self.receiving: HTTPStream | None = None  # the one whose body is parsed
        self.pending: deque[HTTPStream] = deque()
        self.reading_paused = False
        self.in_head = True
        self.head_size = 0
        self.line_done = False
        self.head_started: float | None = None
        self.idle_since: float | None = None
        self.closed = False
        self.failed = False
        self.deferred_error: HTTPProtocolError | None = None
        # Set when a request switched this connection to WebSocket: the backend then hands
        # every byte after that request to it instead of parsing it.
        self.websocket: WebSocketOverHTTP1 | None = None
        self.new_parser()

    # -- the backend's part -------------------------------------------------------------

    def new_parser(self) -> None:
        """Start a fresh parser (at connection start, and where the backend needs one)."""
        raise NotImplementedError

    def parse(self, data: bytes) -> None:
        """Feed bytes to the parser; raise HTTPProtocolError for a broken request."""
        raise NotImplementedError

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)
        self.idle_since = self.loop.time()
        if self.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection made", self.client_addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.detach()
        if self.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection lost", self.client_addr)
        if self.websocket is not None:
            self.websocket.stream.connection_lost()
        for stream in (self.stream, self.receiving):
            if stream is not None:
                stream.on_disconnect()
        self.pending.clear()
        self.stream = self.receiving = None

    def eof_received(self) -> bool | None:
        if self.websocket is not None:
            # A WebSocket without a closing handshake (1006), or the end of the one we
            # failed. Returning None lets the transport close.
            self.websocket.stream.eof_received()
            return None
        # The client will send nothing more. A request cut short cannot be answered well;
        # a complete one still is (half-close), except over TLS which cannot half-close.
        receiving = self.receiving
        if receiving is not None:
            receiving.on_disconnect()
        if self.stream is None or self.tls:
            return None
        self.shutting_down = True
        return True

    def data_received(self, data: bytes) -> None:
        if self.websocket is not None:
            self.websocket.receive(data)
            return
        if self.failed:
            return
        if self.in_head:
            # Count bytes of a request head in progress; the limit is checked after parsing,
            # so a head that completes inside this chunk is never refused for its body.
            self.idle_since = None
            if self.head_started is None:
                self.head_started = self.loop.time()
            self.head_size += len(data)
            if not self.line_done and b"\n" in data:
                self.line_done = True
        try:
            self.parse(data)
        except HTTPProtocolError as exc:
            self.protocol_error(exc)
            return
        if self.in_head and self.head_size > self.max_head:
            self.protocol_error(self.head_too_large())

    def head_too_large(self) -> HTTPProtocolError:
        """The error for a head over the limit: 414 while still in the request line."""
        if self.line_done:
            return HTTPProtocolError(431, "request head too large")
        return HTTPProtocolError(414, "request line too long")

    # -- called by the backend ----------------------------------------------------------

    def request_head(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """A request line and headers arrived (header names lower-cased, wire order)."""
        self.in_head = False
        self.head_size = 0
        self.line_done = False
        self.head_started = None
        self.idle_since = None
        if http_version != "1.1" and http_version != "1.0":
            raise version_error(http_version)
        if len(target) > MAX_TARGET:
            raise HTTPProtocolError(414, "request target too long")
        if len(headers) > MAX_HEADERS:
            raise HTTPProtocolError(431, "too many header fields")

        keep_alive = http_version == "1.1"
        expect_continue = False
        hosts = 0
        content_length: bytes | None = None
        transfer_encoding: bytes | None = None
        upgrade: bytes | None = None
        connection_upgrade = False
        size = len(method) + len(target)
        for name, value in headers:
            size += len(name) + len(value)
            kind = _REQUEST_HEADERS.get(name)
            if kind is None:
                continue
            if kind == _HOST:
                hosts += 1
            elif kind == _CONTENT_LENGTH:
                if content_length is not None:  # even an equal one: llhttp refuses it too
                    raise HTTPProtocolError(400, "repeated Content-Length header")
                content_length = value
            elif kind == _TRANSFER_ENCODING:
                if transfer_encoding is not None:
                    raise HTTPProtocolError(400, "repeated Transfer-Encoding header")
                transfer_encoding = value
            elif kind == _CONNECTION:
                tokens = connection_tokens(value)
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens and http_version == "1.0":
                    keep_alive = True
                if b"upgrade" in tokens:
                    connection_upgrade = True
            elif kind == _EXPECT:
                # rstrip: llhttp leaves trailing whitespace in values, h11 does not
                expect_continue = (
                    value.rstrip(b" \t").lower() == b"100-continue" and http_version == "1.1"
                )
            else:
                upgrade = value
        # Before the size and framing checks: h11 refuses a bad Host while parsing, so this
        # order gives both backends the same status when a request has several faults.
        if hosts != 1 and (hosts or http_version == "1.1"):
            raise HTTPProtocolError(400, "a request needs exactly one Host header")
        if size > self.max_head:
            # A whole head can arrive in one read, where the incomplete-head check never sees it.
            raise HTTPProtocolError(431, "request head too large")
        if transfer_encoding is not None:
            # Either one framing or the other: both at once is how requests get smuggled.
            if content_length is not None:
                raise HTTPProtocolError(400, "both Content-Length and Transfer-Encoding")
            error = transfer_coding_error(transfer_encoding)
            if error is not None:
                raise error
            if http_version == "1.0":
                keep_alive = False  # RFC 9112 6.1: close after an HTTP/1.0 chunked request
        if target[:1] == b"/":
            raw_path, _, query = target.partition(b"?")  # origin-form: the common case
        else:
            raw_path, query = split_target(target)
        if (
            # Upgrade means nothing unless Connection names it (RFC 9110 7.8).
            connection_upgrade
            and upgrade is not None
            and http_version == "1.1"
            and b"websocket" in connection_tokens(upgrade)
            and self.upgrade_to_websocket(method, target, raw_path, query, headers)
        ):
            return
        method_str = _METHODS.get(method)
        if method_str is None:
            # llhttp also takes RTSP methods on an "RTSP/1.0" request line; not HTTP.
            if method not in HTTP_METHODS:
                raise HTTPProtocolError(400, "invalid method for HTTP")
            method_str = method.decode("ascii")
        scope = new_scope(self, "http", http_version, raw_path, query, headers)
        scope["method"] = method_str
        sink = HTTP1Sink(self, http_version, keep_alive)
        stream = HTTPStream(self, scope, sink, target, expect_continue)
        self.server_state.total_requests += 1
        self.receiving = stream
        if self.stream is None:
            self.start_stream(stream)
        else:
            self.pending.append(stream)
            self.update_reading()

    def upgrade_to_websocket(
        self,
        method: bytes,
        target: bytes,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> bool:
        """Switch to WebSocket if this request may; False: serve it as plain HTTP."""
        if self.over_concurrency_limit():
            return False  # start_stream answers 503 instead of upgrading
        if not self.ws_available:
            config = self.config
            if config.interface == "wsgi":
                why = "WebSockets are not available for WSGI apps"
            elif config.ws == "none":
                why = "WebSockets are off (--ws none); use --ws auto, websockets or wsproto"
            else:
                why = (
                    "no WebSocket library is installed; "
                    "pip install 'tricorn[standard]' (websockets) or pip install wsproto"
                )
            logger.warning("Unsupported upgrade request: %s. Serving it as plain HTTP.", why)
            return False
        if self.stream is not None or method != b"GET":
            return False  # other upgrades (h2c) are not ours: served as plain HTTP, silently
        # Raises HandshakeFailed (an HTTPProtocolError) for an invalid handshake.
        websocket = WebSocketOverHTTP1(self, target, raw_path, query, headers)
        self.websocket = websocket
        self.start_task(websocket.stream.run_asgi(self.app))
        return True

    def forward_upgrade(self, data: bytes) -> None:
        """Bytes that followed an upgrade request belong to the WebSocket."""
        if data and self.websocket is not None:
            self.websocket.receive(data)

    def request_body(self, data: bytes) -> None:
        receiving = self.receiving
        if receiving is not None:
            receiving.feed_body(data)
            if receiving.body_size > HIGH_WATER and not self.reading_paused:
                self.update_reading()

    def request_complete(self) -> None:
        if self.websocket is not None:
            return  # the upgrade request itself: the WebSocket owns what follows
        receiving = self.receiving
        self.receiving = None
        self.in_head = True
        if receiving is not None:
            receiving.end_body()
        if self.stream is None and not self.pending:
            self.idle_since = self.loop.time()
            if self.reading_paused:
                self.update_reading()

    # -- streams ------------------------------------------------------------------------

    def over_concurrency_limit(self) -> bool:
        limit = self.limit_concurrency
        state = self.server_state
        return limit is not None and (len(state.connections) > limit or len(state.tasks) >= limit)

    def start_stream(self, stream: HTTPStream) -> None:
        self.stream = stream
        app = self.app
        if self.limit_concurrency is not None and self.over_concurrency_limit():
            logger.warning("Exceeded concurrency limit.")
            app = service_unavailable
            cast(HTTP1Sink, stream.sink).keep_alive = False  # the 503 closes the connection
        self.start_task(stream.run_asgi(app))

    def response_complete(self, keep_alive: bool) -> None:
        """Called by the current stream's sink once its last body byte was written."""
        self.stream = None
        if (
            not keep_alive
            or self.closed
            # Draining (server shutdown, or the client half-closed after its head went out
            # with keep-alive): nothing more is owed once this response is out.
            or (self.shutting_down and not self.pending and self.receiving is None)
        ):
            self.abort()
            return
        if self.pending:
            self.start_stream(self.pending.popleft())
        elif self.deferred_error is not None:
            self.send_error(self.deferred_error)
            return
        elif self.receiving is None:
            self.idle_since = self.loop.time()
            if self.head_size:
                self.head_started = self.idle_since
        self.update_reading()

    def update_reading(self) -> None:
        """Pause reading while requests queue up or the app lags behind its body."""
        if self.closed:
            return
        receiving = self.receiving
        pause = bool(self.pending) or (
            receiving is not None
            and receiving.body_size > HIGH_WATER
            and not receiving.response_complete
        )
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # -- errors and closing -------------------------------------------------------------

    def protocol_error(self, exc: HTTPProtocolError) -> None:
        """The client broke HTTP: answer ``exc.status`` after what it is owed, then close."""
        self.failed = True
        # The reason may quote client bytes: bounded, and escaped by whoever raised it.
        logger.warning("%s: %s", exc.what, exc.reason[:200])
        receiving = self.receiving
        self.receiving = None
        if receiving is not None and not receiving.body_complete:
            # The broken part is this request's body: that request gets the error.
            if receiving in self.pending:
                self.pending.remove(receiving)
            elif receiving is self.stream:
                if receiving.response_started:
                    self.abort()
                    return
                receiving.on_disconnect()
                self.stream = None
        if self.stream is None and not self.pending:
            self.send_error(exc)
        else:
            self.deferred_error = exc  # answered after the responses the client is owed

    def send_error(self, exc: HTTPProtocolError) -> None:
        if not self.closed:
            self.transport.write(error_response(exc, self.server_state))
        self.abort()

    def abort(self) -> None:
        """Close the connection once buffered bytes are written."""
        self.failed = True
        if not self.closed and not self.transport.is_closing():
            self.transport.close()

    # -- called by the server -----------------------------------------------------------

    def shutdown(self) -> None:
        """Stop reusing this connection; requests already sent are still answered."""
        self.shutting_down = True
        if self.websocket is not None:
            self.websocket.stream.shutdown()

    def on_tick(self, now: float) -> None:
        if self.websocket is not None:
            self.websocket.stream.on_tick(now)
            return
        if self.stream is not None or self.pending or self.closed:
            return  # the app's time is its own
        if self.head_started is not None:
            if now - self.head_started > HEAD_TIMEOUT:
                self.abort()
        elif self.idle_since is not None:
            limit = self.timeout_keep_alive
            grace = self.server_state.drain_idle_grace
            if self.shutting_down and grace is not None and grace < limit:
                limit = grace
            if now - self.idle_since > limit:
                self.abort()
