"""The ASGI HTTP stream: the message rules of one request and its response, written once.

Rules of this module: it knows ASGI messages and HTTP semantics, never a wire byte. The
framing that parsed the request (``http1`` today, ``http2`` later) creates one
``HTTPStream`` per request with a *sink*: its own object that puts the response on the
wire (``HTTPSink``). The framing feeds the request body (``feed_body``, ``end_body``) and
says when the client is gone (``on_disconnect``); the stream answers only through the
sink.

Theory of operation
-------------------
* ``receive()`` hands out the body as it arrives and gives the framing flow-control credit
  for what the app took (``sink.consumed``). The first call answers
  ``Expect: 100-continue`` (``sink.send_continue``). Once the body is delivered it waits;
  it returns ``http.disconnect`` after the response is complete or when the client is gone.
* ``send()`` holds ``http.response.start`` back: the head goes to the sink with the first
  ``http.response.body`` (``sink.send_head``), so head and body can leave in one write, and
  the framing knows whether the whole body is there (HTTP/1.1 then frames it with a
  Content-Length instead of chunks).
* Content-Length is enforced both ways; HEAD, 1xx, 204 and 304 carry no body.
* ``send()`` after the client went away raises ``ClientDisconnected`` (an ``OSError``).
* An app that fails before responding gets a 500; after, the sink aborts the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tricorn.protocols.asgi.errors import (
    INVALID_VALUE,
    VALID_NAME,
    ClientDisconnected,
    check_header,
    plain_text,
)
from tricorn.protocols.base import BaseConnection, access_logger, logger
from tricorn.protocols.utils import Wakeup, connection_tokens, log_safe, scope_client_addr

_CONTENT_LENGTH = 1
_TRANSFER_ENCODING = 2
_CONNECTION = 3
_RESPONSE_HEADERS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class HTTPSink(Protocol):
    """What an HTTP stream needs of its framing, per request.

    The stream calls these in ASGI order: ``send_continue`` at most once, before the head;
    ``send_head`` once, with the first body bytes; ``send_body`` for each later body;
    ``more_body=False`` on either ends the response (HTTP/1.1: the last chunk, then the
    next pipelined request may start; HTTP/2: END_STREAM). ``abort`` may come at any time
    and ends the exchange at once (HTTP/1.1: close the connection; HTTP/2: reset the
    stream). ``consumed(n)``: the app took ``n`` body bytes, the framing may let
    the client send more (HTTP/1.1: resume reading; HTTP/2: WINDOW_UPDATE).
    ``writing_paused``/``drain()``: back-pressure of this response (HTTP/1.1: the
    transport's; HTTP/2: also the stream's flow-control window). Trailers, when they come,
    are one more call after ``send_body(..., more_body=True)`` that ends the response.
    """

    @property
    def writing_paused(self) -> bool: ...

    def send_continue(self) -> None: ...

    def send_head(self, stream: HTTPStream, body: bytes, more_body: bool) -> None: ...

    def send_body(self, body: bytes, more_body: bool) -> None: ...

    def consumed(self, size: int) -> None: ...

    def abort(self) -> None: ...

    async def drain(self) -> None: ...


class HTTPStream:
    """One request: its ASGI ``receive``/``send`` pair and the response's state.

    What the sink reads of the response once ``send_head`` is called: ``status``,
    ``headers`` (as the app gave them, checked), ``content_length`` (the app's, or None),
    ``no_body`` (HEAD, 1xx, 204, 304), ``overridden`` (the default header names the app
    set itself, lower-cased, or None), ``app_chunked`` and ``app_closes`` (the app set
    Transfer-Encoding, or ``Connection: close``).
    """

    __slots__ = (
        "conn",
        "sink",
        "scope",
        "target",
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
        "content_length",
        "no_body",
        "overridden",
        "app_chunked",
        "app_closes",
        "head_sent",
        "remaining",
        "bytes_sent",
        "start_time",
    )

    def __init__(
        self,
        conn: BaseConnection,
        scope: dict[str, Any],
        sink: HTTPSink,
        target: bytes,
        expect_continue: bool,
    ) -> None:
        self.conn = conn
        self.sink = sink
        self.scope = scope
        self.target = target  # as the client sent it, for the access log
        self.expect_continue = expect_continue  # the client waits for "100 Continue"
        self.is_head = scope["method"] == "HEAD"
        # Request body
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.body_delivered = False
        self.disconnected = False
        # receive() waits on it for body or disconnect; made on the first wait only (most
        # requests are answered without the app ever waiting for a body).
        self.wakeup: Wakeup | None = None
        # Response
        self.response_started = False
        self.response_complete = False
        self.status = 0
        self.headers: Any = ()
        self.content_length: int | None = None
        self.no_body = False
        self.overridden: set[bytes] | None = None
        self.app_chunked = False
        self.app_closes = False
        self.head_sent = False
        self.remaining: int | None = None  # body bytes the app's Content-Length still owes
        self.bytes_sent = 0
        self.start_time = conn.loop.time()

    # -- driven by the framing ----------------------------------------------------------

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
        wakeup = self.wakeup
        if wakeup is not None:
            wakeup.wake()

    # -- running the app ----------------------------------------------------------------

    async def run_asgi(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Graceful shutdown ran out of time: the request cannot be answered.
            if not self.response_complete:
                self.sink.abort()
            raise
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, ClientDisconnected) and self.disconnected:
                self.sink.abort()  # the app stopped because the client left: just close
                return
            logger.error("Exception in ASGI application\n", exc_info=exc)
            self._fail()
            return
        if result is not None:
            logger.error("ASGI callable should return None, but returned %r.", result)
            self.sink.abort()
        elif not self.response_started:
            if self.disconnected:
                self.sink.abort()  # nobody to answer: do not leave the exchange half-open
            else:
                logger.error("ASGI callable returned without starting response.")
                self._fail()
        elif not self.response_complete:
            logger.error("ASGI callable returned without completing response.")
            self._fail()

    def _fail(self) -> None:
        """The app failed: answer 500 if nothing was sent yet, else abort."""
        if self.disconnected or self.response_complete:
            return
        if self.response_started:
            self.sink.abort()  # the app's response was under way: only aborting is left
            return
        headers, body = plain_text(500)
        self._start_response(500, headers)
        self._write_body(body, False)

    # -- ASGI receive -------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if (
            self.expect_continue
            and not (self.body_size or self.body_complete)
            and not (self.response_started or self.disconnected)
        ):
            self.expect_continue = False
            self.sink.send_continue()
        while True:
            if self.disconnected or self.response_complete:
                return _DISCONNECT
            if self.body or (self.body_complete and not self.body_delivered):
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.body_size = 0
                if self.body_complete:
                    self.body_delivered = True
                self.sink.consumed(len(body))
                return {"type": "http.request", "body": body, "more_body": not self.body_complete}
            if self.wakeup is None:
                self.wakeup = Wakeup()
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
        if more_body and self.sink.writing_paused:
            await self.sink.drain()
            if self.disconnected:
                raise ClientDisconnected("The client has disconnected.")

    def _start_response(self, status: int, headers: Any) -> None:
        """Check the app's headers and note what they say about framing.

        Done at ``http.response.start`` so a bad header is the app's error before anything
        was accepted (the client gets 500); the sink chooses the framing with the first body.
        """
        if not isinstance(headers, (list, tuple)):
            headers = list(headers)  # read twice (here and by the sink): no one-shot iterator
        content_length: int | None = None
        default_names = self.conn.server_state.default_header_names
        overridden: set[bytes] | None = None
        for name, value in headers:
            lname = name.lower()
            kind = _RESPONSE_HEADERS.get(lname)
            if kind is not None:
                if kind == _CONTENT_LENGTH:
                    if not value.isdigit():  # int() would take "+1", " 1" and "1_0"
                        raise RuntimeError(f"Invalid Content-Length header {value!r}.")
                    content_length = int(value)
                elif kind == _TRANSFER_ENCODING:
                    self.app_chunked = True
                elif b"close" in connection_tokens(value):
                    self.app_closes = True
            elif lname in default_names:
                if overridden is None:
                    overridden = set()
                overridden.add(lname)
            if VALID_NAME(name) is None or INVALID_VALUE(value) is not None:
                check_header(name, value)  # raises, naming what is wrong
        if content_length is not None and self.app_chunked:
            raise RuntimeError("Response has both Content-Length and Transfer-Encoding.")
        self.status = status
        self.headers = headers
        self.overridden = overridden
        self.no_body = status < 200 or status in (204, 304) or self.is_head
        self.content_length = content_length
        self.remaining = None if self.no_body else content_length
        self.response_started = True

    def _write_body(self, body: bytes, more_body: bool) -> None:
        if body:
            if self.no_body:
                body = b""
            else:
                size = len(body)
                remaining = self.remaining
                if remaining is not None:
                    if size > remaining:
                        self.response_complete = True
                        self.sink.abort()
                        raise RuntimeError("Response content longer than Content-Length")
                    self.remaining = remaining - size
                self.bytes_sent += size
        if not more_body:
            self.response_complete = True
            if self.remaining:
                self.sink.abort()
                raise RuntimeError("Response content shorter than Content-Length")
        if self.head_sent:
            self.sink.send_body(body, more_body)
        else:
            self.head_sent = True
            self.sink.send_head(self, body, more_body)
        if not more_body:
            if self.wakeup is not None:  # an app still in receive(): it gets http.disconnect
                self.wakeup.wake()
            if self.conn.access_log:
                self.log_access()

    # -- logging ------------------------------------------------------------------------

    def log_access(self) -> None:
        conn = self.conn
        scope = self.scope
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            scope_client_addr(scope, conn.client, conn.client_addr),
            scope["method"],
            log_safe(conn.raw_root_path + self.target),
            scope["http_version"],
            self.status,
            extra={"duration": conn.loop.time() - self.start_time, "size": self.bytes_sent},
        )


async def service_unavailable(
    scope: Any, receive: Any, send: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """The app that answers 503 when ``--limit-concurrency`` is reached."""
    headers, body = plain_text(503)
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
