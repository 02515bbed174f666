"""One HTTP/1.1 connection, shared by both parser backends.

Rules of this module: everything about a connection that does not depend on the parser
library lives here, once. A backend subclass implements ``parse(data)`` and, from its
parser's events, calls ``request_head``, ``request_body`` and ``request_complete``; a
request that breaks HTTP raises ``HTTPProtocolError`` out of ``parse``.

Theory of operation
-------------------
* Bytes are parsed as they arrive. The first request's app runs; requests pipelined behind
  it wait in ``pending`` (reading paused) and start in order as each response completes.
* Reading also pauses while the running app has more than ``HIGH_WATER`` bytes of body it
  has not read; ``receive()`` resumes it. ``send()`` waits while the transport is paused.
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
import re
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from tricorn.protocols.base import TRACE, BaseConnection, logger
from tricorn.protocols.http.cycle import RequestResponseCycle
from tricorn.protocols.http.errors import HTTPProtocolError, error_response
from tricorn.protocols.utils import connection_tokens, is_ssl

if TYPE_CHECKING:
    pass

DEFAULT_MAX_HEAD = 64 * 1024  # bytes of request line + headers (--h11-max-incomplete-event-size)
MAX_TARGET = 8190  # bytes of request target, as Apache's LimitRequestLine
MAX_HEADERS = 100  # header fields per request
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
# Every method llhttp accepts on an HTTP/1.x request line (probed with httptools 0.9); both
# backends serve these and refuse any other with 400. llhttp refuses a method as soon as its
# bytes stop spelling one of these, before the token is complete, so it cannot tell an
# unknown method (RFC 9110 9.1 would suggest 501) from garbage such as a TLS handshake: 400
# is the answer that does not depend on how the bytes were cut.
HTTP_METHODS = frozenset(
    (
        b"ACL BIND CHECKOUT CONNECT COPY DELETE GET HEAD LINK LOCK M-SEARCH MERGE MKACTIVITY "
        b"MKCALENDAR MKCOL MOVE NOTIFY OPTIONS PATCH POST PROPFIND PROPPATCH PURGE PUT QUERY "
        b"REBIND REPORT SEARCH SOURCE SUBSCRIBE TRACE UNBIND UNLINK UNLOCK UNSUBSCRIBE"
    ).split()
)
# "chunked" as the last coding, followed by spaces only: llhttp's reading of a chunked body.
CHUNKED_FINAL = re.compile(rb"(?:^|,[ \t]*)chunked *\Z", re.IGNORECASE)


def version_error(http_version: str) -> HTTPProtocolError:
    """The error for a request version other than 1.0 and 1.1.

    0.9 (llhttp's name for a request line without a version) is not an HTTP/1 request: 400.
    Anything above is a version we do not speak: 505.
    """
    if http_version < "1.0":
        return HTTPProtocolError(400, f"invalid HTTP version {http_version!r}")
    return HTTPProtocolError(505, f"unsupported HTTP version {http_version!r}")


def transfer_coding_error(value: bytes) -> HTTPProtocolError | None:
    """Check a request's Transfer-Encoding value: None when the body is plainly chunked.

    RFC 9112 6.1/6.3: "chunked" anywhere but last, or twice, leaves the body length unknown
    (400). Any other coding, before "chunked" or alone, is one we do not implement (501).
    Empty list elements are ignored (RFC 9110 5.6.1). Only spaces may follow the final
    "chunked": llhttp reads "chunked<TAB>" as another coding and fails after the head, so
    both backends refuse it (400) before the app starts.
    """
    codings = [coding for coding in (c.strip(b" \t").lower() for c in value.split(b",")) if coding]
    if not codings or b"chunked" in codings[:-1]:
        return HTTPProtocolError(400, "chunked is not the final transfer coding, once")
    if any(coding != b"chunked" for coding in codings):
        return HTTPProtocolError(501, "unsupported transfer coding")
    if CHUNKED_FINAL.search(value) is None:
        return HTTPProtocolError(400, "invalid Transfer-Encoding")
    return None


async def service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """The app that answers when ``--limit-concurrency`` is reached."""
    body = b"Service Unavailable"
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HTTPConnection(BaseConnection):
    """Per-connection HTTP/1.1 behaviour; subclasses only plug in a parser."""

    __slots__ = (
        "limit_concurrency",
        "timeout_keep_alive",
        "max_head",
        "ws_available",
        "cycle",
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
        "upgrade_to",
    )

    def setup(self) -> None:
        config = self.config
        self.limit_concurrency: int | None = config.limit_concurrency
        self.timeout_keep_alive: float = config.timeout_keep_alive
        self.max_head: int = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD
        self.ws_available = getattr(config, "ws_protocol_class", None) is not None

        self.cycle: RequestResponseCycle | None = None  # the one whose app runs
        self.receiving: RequestResponseCycle | None = None  # the one whose body is parsed
        self.pending: deque[RequestResponseCycle] = deque()
        self.reading_paused = False
        self.in_head = True
        self.head_size = 0
        self.line_done = False
        self.head_started: float | None = None
        self.idle_since: float | None = None
        self.closed = False
        self.failed = False
        self.deferred_error: HTTPProtocolError | None = None
        # Set when a request switches this connection to WebSocket: the backend then hands
        # every byte after that request to ``upgrade_to`` instead of parsing it.
        self.upgrade_to: asyncio.Protocol | None = None
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
            logger.log(TRACE, "%s - HTTP connection made", self.client_addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.detach()
        if self.trace:
            logger.log(TRACE, "%s - HTTP connection lost", self.client_addr)
        for cycle in (self.cycle, self.receiving):
            if cycle is not None:
                cycle.on_disconnect()
        self.pending.clear()
        self.cycle = self.receiving = None

    def eof_received(self) -> bool | None:
        # The client will send nothing more. A request cut short cannot be answered well;
        # a complete one still is (half-close), except over TLS which cannot half-close.
        receiving = self.receiving
        if receiving is not None:
            receiving.on_disconnect()
        if self.cycle is None or is_ssl(self.transport):
            return None
        self.shutting_down = True
        return True

    def data_received(self, data: bytes) -> None:
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
        if (
            # Upgrade means nothing unless Connection names it (RFC 9110 7.8).
            connection_upgrade
            and upgrade is not None
            and http_version == "1.1"
            and b"websocket" in connection_tokens(upgrade)
        ):
            # Other upgrades (h2c) are not ours: served as plain HTTP, silently.
            limit = self.limit_concurrency
            state = self.server_state
            if limit is not None and (len(state.connections) > limit or len(state.tasks) >= limit):
                pass  # over --limit-concurrency: start_cycle answers 503 instead of upgrading
            elif self.ws_available and self.cycle is None and method == b"GET":
                self.switch_to_websocket(method, target, http_version, headers)
                return
            elif not self.ws_available:
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

        raw_path, _, query = target.partition(b"?")
        if raw_path[:1] != b"/":
            if raw_path[:7].lower() == b"http://" or raw_path[:8].lower() == b"https://":
                # absolute-form (RFC 9112 3.2.2): keep the path only
                slash = raw_path.find(b"/", raw_path.find(b"//") + 2)
                raw_path = raw_path[slash:] if slash != -1 else b"/"
            elif raw_path != b"*":
                raise HTTPProtocolError(400, "invalid request target")
        if b"%" in raw_path or not raw_path.isascii():
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("ascii")
        method_str = _METHODS.get(method)
        if method_str is None:
            # llhttp also takes RTSP methods on an "RTSP/1.0" request line; not HTTP.
            if method not in HTTP_METHODS:
                raise HTTPProtocolError(400, "invalid method for HTTP")
            method_str = method.decode("ascii")
        root_path = self.root_path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": self.asgi,
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method_str,
            "root_path": root_path,
            "path": root_path + path,
            "raw_path": self.raw_root_path + raw_path if root_path else raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        cycle = RequestResponseCycle(self, scope, target, http_version, keep_alive, expect_continue)
        self.server_state.total_requests += 1
        self.receiving = cycle
        if self.cycle is None:
            self.start_cycle(cycle)
        else:
            self.pending.append(cycle)
            self.update_reading()

    def switch_to_websocket(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Hand the connection to the WebSocket protocol, replaying the request head.

        The WebSocket libraries parse the handshake themselves, so the head is rebuilt as
        bytes; the backend then forwards whatever follows it with ``forward_upgrade``.
        """
        ws_class: Any = self.config.ws_protocol_class
        ws = ws_class(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        self.upgrade_to = ws
        self.failed = True  # this object parses nothing more
        self.server_state.connections.discard(self)
        head = [b"%s %s HTTP/%s\r\n" % (method, target, http_version.encode())]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
        head.append(b"\r\n")
        self.transport.set_protocol(ws)
        ws.connection_made(self.transport)
        ws.data_received(b"".join(head))

    def forward_upgrade(self, data: bytes) -> None:
        """Bytes that followed an upgrade request belong to the new protocol."""
        if data and self.upgrade_to is not None:
            self.upgrade_to.data_received(data)

    def request_body(self, data: bytes) -> None:
        receiving = self.receiving
        if receiving is not None:
            receiving.feed_body(data)
            if receiving.body_size > HIGH_WATER and not self.reading_paused:
                self.update_reading()

    def request_complete(self) -> None:
        if self.upgrade_to is not None:
            return  # the upgrade request itself: the WebSocket protocol owns it now
        receiving = self.receiving
        self.receiving = None
        self.in_head = True
        if receiving is not None:
            receiving.end_body()
        if self.cycle is None and not self.pending:
            self.idle_since = self.loop.time()
            if self.reading_paused:
                self.update_reading()

    # -- cycles -------------------------------------------------------------------------

    def start_cycle(self, cycle: RequestResponseCycle) -> None:
        self.cycle = cycle
        app = self.app
        limit = self.limit_concurrency
        state = self.server_state
        if limit is not None and (len(state.connections) > limit or len(state.tasks) >= limit):
            logger.warning("Exceeded concurrency limit.")
            app = service_unavailable
        self.start_task(cycle.run_asgi(app))

    def on_response_complete(self, cycle: RequestResponseCycle) -> None:
        """Called by the cycle once its last body byte was written."""
        if self.access_log:
            cycle.log_access()
        if self.cycle is cycle:
            self.cycle = None
        if (
            not cycle.keep_alive
            or self.closed
            # Draining (server shutdown, or the client half-closed after its head went out
            # with keep-alive): nothing more is owed once this response is out.
            or (self.shutting_down and not self.pending and self.receiving is None)
        ):
            self.abort()
            return
        if self.pending:
            self.start_cycle(self.pending.popleft())
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
        # The parser's reason may quote client bytes: bounded, and %r-escaped by the parsers.
        logger.warning("Invalid HTTP request received: %s", exc.reason[:200])
        receiving = self.receiving
        self.receiving = None
        if receiving is not None and not receiving.body_complete:
            # The broken part is this request's body: that request gets the error.
            if receiving in self.pending:
                self.pending.remove(receiving)
            elif receiving is self.cycle:
                if receiving.response_started:
                    self.abort()
                    return
                receiving.on_disconnect()
                self.cycle = None
        if self.cycle is None and not self.pending:
            self.send_error(exc)
        else:
            self.deferred_error = exc  # answered after the responses the client is owed

    def send_error(self, exc: HTTPProtocolError) -> None:
        if not self.closed:
            self.transport.write(error_response(exc.status, self.server_state.default_headers))
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

    def on_tick(self, now: float) -> None:
        if self.cycle is not None or self.pending or self.closed:
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
