"""The ASGI HTTP cycle: the message rules of one request and its response, written once.

Rules of this module: it knows ASGI messages and HTTP/1.1 response framing; it knows
nothing of parser libraries. The connection feeds it the request body and tells it when the
client is gone; it calls back ``conn.on_response_complete`` exactly once.

Theory of operation
-------------------
* ``receive()`` hands out the body as it arrives. The first call answers
  ``Expect: 100-continue``. Once the body is delivered it waits; it returns
  ``http.disconnect`` after the response is complete or when the client is gone.
* ``send()`` does not write ``http.response.start`` at once: the head is built with the
  first ``http.response.body`` so head and body leave in one ``transport.write``, and so a
  body sent whole gets a Content-Length instead of chunked framing.
* Content-Length is enforced both ways; HEAD, 1xx, 204 and 304 carry no body.
* ``send()`` after the client went away raises ``ClientDisconnected`` (an ``OSError``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from tricorn.protocols.http.errors import ClientDisconnected, status_line
from tricorn.protocols.utils import Wakeup, connection_tokens, log_safe, scope_client_addr

if TYPE_CHECKING:
    from tricorn.protocols.http.connection import HTTPConnection

logger = logging.getLogger("tricorn.error")
access_logger = logging.getLogger("tricorn.access")

# RFC 9110 token characters for header names; values may not contain CR, LF or NUL.
_VALID_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_INVALID_VALUE = re.compile(rb"[\x00\r\n]").search

_CONTENT_LENGTH = 1
_TRANSFER_ENCODING = 2
_CONNECTION = 3
_RESPONSE_HEADERS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class RequestResponseCycle:
    """One request: its ASGI ``receive``/``send`` pair and the response's framing state."""

    __slots__ = (
        "conn",
        "scope",
        "target",
        "http_version",
        "keep_alive",
        "expect_continue",
        "is_head",
        "body",
        "body_size",
        "body_complete",
        "body_delivered",
        "disconnected",
        "wakeup",
        "response_started",
        "response_complete",
        "status",
        "headers",
        "head_written",
        "no_body",
        "chunked",
        "app_closes",
        "remaining",
        "bytes_sent",
        "start_time",
    )

    def __init__(
        self,
        conn: HTTPConnection,
        scope: dict[str, Any],
        target: bytes,
        http_version: str,
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.target = target
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.is_head = scope["method"] == "HEAD"
        # Request body
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.body_delivered = False
        self.disconnected = False
        self.wakeup = Wakeup()  # receive() waits on it for body or disconnect
        # Response
        self.response_started = False
        self.response_complete = False
        self.status = 0
        self.headers: Any = ()
        self.head_written = False
        self.no_body = False
        self.chunked = False
        self.app_closes = False
        self.remaining: int | None = None
        self.bytes_sent = 0
        self.start_time = conn.loop.time()

    # -- driven by the connection -------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        if self.response_complete or self.disconnected:
            return  # the app is done with this request: the rest of its body is discarded
        self.body.append(data)
        self.body_size += len(data)
        self.wake()

    def end_body(self) -> None:
        self.body_complete = True
        self.wake()

    def on_disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        self.wakeup.wake()

    # -- running the app ----------------------------------------------------------------

    async def run_asgi(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Graceful shutdown ran out of time: the connection cannot be answered.
            if not self.response_complete:
                self.conn.abort()
            raise
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, ClientDisconnected) and self.disconnected:
                self.conn.abort()  # the app stopped because the client left: just close
                return
            logger.error("Exception in ASGI application\n", exc_info=exc)
            self._fail()
            return
        if result is not None:
            logger.error("ASGI callable should return None, but returned %r.", result)
            self.conn.abort()
        elif not self.response_started:
            if self.disconnected:
                self.conn.abort()  # nobody to answer: do not leave the connection half-open
            else:
                logger.error("ASGI callable returned without starting response.")
                self._fail()
        elif not self.response_complete:
            logger.error("ASGI callable returned without completing response.")
            self._fail()

    def _fail(self) -> None:
        """The app failed: answer 500 if nothing was sent yet, else close the connection."""
        if self.disconnected or self.response_complete:
            return
        if self.response_started:
            self.conn.abort()  # the app's response was under way: only closing is left
            return
        body = b"Internal Server Error"
        self._start_response(
            500,
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ],
        )
        self._write_body(body, False)

    # -- ASGI receive -------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if (
            self.expect_continue
            and not (self.body_size or self.body_complete)
            and not (self.response_started or self.disconnected)
        ):
            self.expect_continue = False
            self.conn.transport.write(_CONTINUE)
        while True:
            if self.disconnected or self.response_complete:
                return _DISCONNECT
            if self.body or (self.body_complete and not self.body_delivered):
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.body_size = 0
                if self.body_complete:
                    self.body_delivered = True
                if self.conn.reading_paused:
                    self.conn.update_reading()
                return {"type": "http.request", "body": body, "more_body": not self.body_complete}
            await self.wakeup.wait()

    # -- ASGI send ----------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            raise ClientDisconnected("The client has disconnected.")
        message_type = message["type"]
        if not self.response_started:
            if message_type != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message_type}'."
                )
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
            self._start_response(status, message.get("headers", ()))
            return
        if self.response_complete or message_type != "http.response.body":
            raise RuntimeError(
                f"Unexpected ASGI message '{message_type}' sent, after response already "
                + ("completed." if self.response_complete else "started.")
            )
        more_body = message.get("more_body", False)
        self._write_body(message.get("body", b""), more_body)
        if more_body and self.conn.writing_paused:
            await self.conn.drain()
            if self.disconnected:
                raise ClientDisconnected("The client has disconnected.")

    def _write_body(self, body: bytes, more_body: bool) -> None:
        head = b"" if self.head_written else self._build_head(body, more_body)
        if body and not self.no_body:
            size = len(body)
            remaining = self.remaining
            if remaining is not None:
                if size > remaining:
                    self.response_complete = True
                    self.conn.abort()
                    raise RuntimeError("Response content longer than Content-Length")
                self.remaining = remaining - size
                data = head + body
            elif self.chunked:
                data = b"".join((head, b"%x\r\n" % size, body, b"\r\n"))
            else:
                data = head + body
            self.bytes_sent += size
        else:
            data = head
        if not more_body:
            self.response_complete = True
            if self.remaining:
                self.conn.abort()
                raise RuntimeError("Response content shorter than Content-Length")
            if self.chunked:
                data += b"0\r\n\r\n"
        if data:
            self.conn.transport.write(data)
        if not more_body:
            self.wake()
            self.conn.on_response_complete(self)

    def _start_response(self, status: int, headers: Any) -> None:
        """Validate the app's headers and note what framing they ask for.

        Done at ``http.response.start`` so a bad header is the app's error before anything
        was accepted (the client gets 500); the framing is chosen with the first body.
        """
        state = self.conn.server_state
        content_length: int | None = None
        app_chunked = False
        app_closes = False
        overridden: set[bytes] | None = None
        lines = [status_line(status), b""]  # [1] becomes the default headers
        for name, value in headers:
            lname = name.lower()
            kind = _RESPONSE_HEADERS.get(lname)
            if kind is not None:
                if kind == _CONTENT_LENGTH:
                    if not value.isdigit():  # int() would take "+1", " 1" and "1_0"
                        raise RuntimeError(f"Invalid Content-Length header {value!r}.")
                    content_length = int(value)
                elif kind == _TRANSFER_ENCODING:
                    app_chunked = True
                elif b"close" in connection_tokens(value):
                    app_closes = True
            elif lname in state.default_header_names:
                if overridden is None:
                    overridden = set()
                overridden.add(lname)
            if _VALID_NAME(name) is None:
                raise RuntimeError(f"Invalid HTTP header name {name!r}.")
            if _INVALID_VALUE(value) is not None:
                raise RuntimeError(f"Invalid HTTP header value {value!r}.")
            lines.append(b"%s: %s\r\n" % (name, value))
        if content_length is not None and app_chunked:
            raise RuntimeError("Response has both Content-Length and Transfer-Encoding.")
        lines[1] = (
            state.default_headers
            if overridden is None
            else state.default_headers_without(overridden)
        )
        self.status = status
        self.headers = lines
        self.remaining = content_length
        self.chunked = app_chunked
        if app_closes:
            self.keep_alive = False
            self.app_closes = True
        self.response_started = True

    def _build_head(self, first_body: bytes, more_body: bool) -> bytes:
        """Choose the framing and render the head; called once, with the first body."""
        conn = self.conn
        lines: list[bytes] = self.headers
        status = self.status
        keep_alive = self.keep_alive
        if status < 200 or status in (204, 304) or self.is_head:
            self.no_body = True
            self.remaining = None
            self.chunked = False
        elif self.remaining is not None or self.chunked:
            pass  # the app chose the framing
        elif not more_body:
            # The whole body is here: frame it with a length, which keeps HTTP/1.0 alive too.
            self.remaining = len(first_body)
            lines.append(b"content-length: %d\r\n" % len(first_body))
        elif self.http_version == "1.1":
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            keep_alive = False  # HTTP/1.0 streaming: the body ends when the connection does

        if (conn.shutting_down and not conn.pending) or (
            # The client still waits for "100 Continue" and may or may not send its body:
            # the connection cannot be reused safely.
            self.expect_continue and not self.body_complete
        ):
            keep_alive = False
        if not keep_alive:
            if not self.app_closes:
                lines.append(b"connection: close\r\n")
        elif self.http_version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        self.keep_alive = keep_alive
        self.head_written = True
        lines.append(b"\r\n")
        return b"".join(lines)

    # -- logging ------------------------------------------------------------------------

    def log_access(self) -> None:
        conn = self.conn
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            scope_client_addr(self.scope, conn.client, conn.client_addr),
            self.scope["method"],
            log_safe(conn.raw_root_path + self.target),
            self.http_version,
            self.status,
            extra={"duration": conn.loop.time() - self.start_time, "size": self.bytes_sent},
        )
