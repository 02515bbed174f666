"""The ASGI WebSocket stream: one WebSocket's messages, close codes and timers, written once.

Rules of this module: everything about a WebSocket that does not depend on the framing
or on the frame library lives here, once: the ASGI messages, the close codes, the queue
of received messages, flow control, keepalive pings, closing, logging. It never owns a
transport and writes no byte. The framing (``http1.websocket`` over HTTP/1.1, later an
HTTP/2 stream, RFC 8441) starts it from a parsed, valid handshake request and gives it a
*sink* (``WebSocketSink``) that frames what it decides; the frame codec
(``protocols.websocket``) reports what the client sent by calling ``message_part``,
``pong_received``, ``close_received`` and ``fail``.

Theory of operation
-------------------
* States: CONNECTING (the app decides: accept, close = 403, or a denial response) ->
  OPEN -> CLOSING (our close frame is sent; we wait for the client's) or FAILED (we failed
  the connection: input is discarded until the client closes) -> CLOSED.
* Close codes, all decided here: app closes before accept -> HTTP 403; app returns or
  raises before accept -> HTTP 500; app raises after accept -> 1011 without detail; app
  returns after accept -> 1000; server shutdown -> 1012; message over ws_max_size -> 1009;
  invalid UTF-8 -> 1007; protocol violation -> 1002; no pong within ws_ping_timeout ->
  1011. Exception text never reaches the client.
* A client must wait for our 101 before it sends frames (RFC 6455 4.1): the framing feeds
  the codec nothing before ``accept``.
* Received messages wait in a deque. Reading pauses when it holds ws_max_queue messages and
  resumes once the app has read half of them. ``send()`` waits while the sink is paused.
  Memory per connection is bounded by queue length x ws_max_size.
* Nothing is armed per connection: keepalive pings and the bounded wait for the client's
  close frame (``CLOSE_TIMEOUT``) are swept by ``on_tick``, called once a second through
  ``ServerState.tick``.
* ``send()`` once the connection is gone raises ``ClientDisconnected`` (an ``OSError``);
  ``receive()`` returns ``websocket.disconnect`` (again and again) once the queue is empty.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any, Protocol

from tricorn.logs import TRACE_LOG_LEVEL
from tricorn.protocols.asgi.errors import (
    ABNORMAL_CLOSURE,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
    SERVICE_RESTART,
    ClientDisconnected,
    Headers,
    check_headers,
    plain_text,
    truncate_reason,
    valid_close_code,
)
from tricorn.protocols.base import BaseConnection, access_logger, logger
from tricorn.protocols.utils import Wakeup, log_safe, scope_client_addr

# Seconds we wait for the client's close frame (or EOF) after sending ours; then the
# connection is dropped. Swept by on_tick, so the real bound is up to one second more.
CLOSE_TIMEOUT = 10.0

_CONNECT: dict[str, Any] = {"type": "websocket.connect"}

# Connection states, in order: comparisons like ``state >= FAILED`` are meaningful.
CONNECTING = 0
OPEN = 1
CLOSING = 2
FAILED = 3
CLOSED = 4


class WebSocketSink(Protocol):
    """What a WebSocket stream needs of its framing.

    ``accept`` answers the handshake (HTTP/1.1: 101; HTTP/2: 200) with ``headers`` added
    (the server's defaults are the sink's to add) and starts the frames; ``reject``
    refuses it with a plain HTTP response and ends the exchange. ``send_*`` frame a
    message, a ping, our close frame; ``send_message`` returns True when the app must wait
    for ``drain()`` before the next (back-pressure) and raises ``ClientDisconnected`` once
    nothing written would reach the client (the transport failed and the stream is not
    told yet: an app sending in a loop without yielding must stop there). ``close`` ends
    the exchange at once after what was written (the closing handshake is complete);
    ``shut_write`` says we send nothing more but keeps reading (a half-close: the client
    reads our close frame, then closes), False where the framing cannot (TLS); ``abort``
    drops it. ``pause_reading`` and ``resume_reading`` are the stream's flow control of
    what the client sends.
    """

    def accept(self, subprotocol: str | None, headers: Headers) -> None: ...

    def reject(self, status: int, headers: Headers, body: bytes) -> None: ...

    def send_message(self, data: str | bytes) -> bool: ...

    def send_ping(self, payload: bytes) -> None: ...

    def send_close(self, code: int, reason: str) -> None: ...

    def close(self) -> None: ...

    def shut_write(self) -> bool: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def drain(self) -> None: ...


class WebSocketStream:
    """One WebSocket and its ASGI app, from a valid handshake request to the close."""

    __slots__ = (
        "conn",
        "sink",
        "scope",
        "target",
        "max_size",
        "max_queue",
        "resume_at",
        "ping_interval",
        "ping_timeout",
        "state",
        "start_time",
        "messages",
        "disconnect",
        "wakeup",
        "parts",
        "message_size",
        "reading_paused",
        "response_status",
        "response_headers",
        "response_body",
        "responded",
        "app_closed",
        "app_done",
        "shutting_down",
        "ping_payload",
        "ping_sent",
        "close_deadline",
    )

    def __init__(
        self, conn: BaseConnection, scope: dict[str, Any], sink: WebSocketSink, target: bytes
    ) -> None:
        config = conn.config
        self.conn = conn
        self.sink = sink
        self.scope = scope
        self.target = target  # as the client sent it, for the access log
        self.max_size: int | None = config.ws_max_size or None
        self.max_queue: int = max(1, config.ws_max_queue or 1)
        self.resume_at = self.max_queue // 2
        self.ping_interval: float | None = config.ws_ping_interval or None
        self.ping_timeout: float | None = config.ws_ping_timeout or None
        self.state = CONNECTING
        self.start_time = conn.loop.time()
        # ASGI receive side: messages not yet read, then the disconnect message.
        self.messages: deque[dict[str, Any]] = deque((_CONNECT,))
        self.disconnect: dict[str, Any] | None = None
        self.wakeup = Wakeup()  # receive() waits on it for a message or the disconnect
        # The fragmented message being received.
        self.parts: list[Any] = []
        self.message_size = 0
        self.reading_paused = False
        # A denial response the app is sending (websocket.http.response.*).
        self.response_status = 0
        self.response_headers: Headers = []
        self.response_body: list[bytes] = []
        self.responded = False  # an HTTP response refused the upgrade
        self.app_closed = False  # the app sent websocket.close
        self.app_done = False  # the app returned or raised
        self.shutting_down = False
        self.ping_payload: bytes | None = None  # the ping awaiting its pong
        self.ping_sent = 0.0
        self.close_deadline = 0.0

    # -- called by the codec ------------------------------------------------------------

    def message_part(self, data: str | bytes, size: int, fin: bool) -> None:
        """A piece of a data message (``str`` for text), ``size`` bytes on the wire."""
        if self.state != OPEN:
            return  # after our close frame, messages are read and dropped
        total = self.message_size + size
        max_size = self.max_size
        if max_size is not None and total > max_size:
            self.parts = []
            self.message_size = 0
            self.fail(MESSAGE_TOO_BIG, f"message over {max_size} bytes")
            return
        if not fin:
            self.parts.append(data)
            self.message_size = total
            return
        parts = self.parts
        if parts:
            parts.append(data)
            data = "".join(parts) if isinstance(data, str) else b"".join(parts)
            self.parts = []
            self.message_size = 0
        conn = self.conn
        if conn.trace:
            kind = "text" if isinstance(data, str) else "binary"
            logger.log(
                TRACE_LOG_LEVEL, "%s - WebSocket < %s %d bytes", conn.client_addr, kind, total
            )
        if self.app_done:
            return
        if isinstance(data, str):
            self.messages.append({"type": "websocket.receive", "text": data})
        else:
            self.messages.append({"type": "websocket.receive", "bytes": data})
        self.wakeup.wake()
        if len(self.messages) >= self.max_queue and not self.reading_paused:
            self.reading_paused = True
            self.sink.pause_reading()

    def pong_received(self, payload: bytes) -> None:
        if self.conn.trace:
            logger.log(
                TRACE_LOG_LEVEL,
                "%s - WebSocket < pong %d bytes",
                self.conn.client_addr,
                len(payload),
            )
        if payload == self.ping_payload:
            self.ping_payload = None

    def close_received(self, code: int, reason: str) -> None:
        """The client's close frame; the codec has already written its echo."""
        if self.conn.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - WebSocket < close %d", self.conn.client_addr, code)
        if self.state > CLOSING:
            return
        self.set_disconnect(code, reason)
        # Either the closing handshake is complete or we just echoed the client's close:
        # a server closes the TCP connection first (RFC 6455 7.1.1).
        self.state = CLOSED
        self.sink.close()

    def fail(self, code: int, reason: str, *, frame_sent: bool = False, drop: bool = False) -> None:
        """Fail the connection with ``code`` (RFC 6455 7.1.7).

        ``reason`` goes in the close frame: it must never carry internal detail.
        ``frame_sent``: the codec already produced the close frame (and wrote it).
        ``drop``: end the connection at once instead of half-closing it and waiting
        (boundedly) for the client to close.
        """
        state = self.state
        if state >= FAILED:
            return
        if self.conn.trace:
            logger.log(
                TRACE_LOG_LEVEL, "%s - WebSocket failed with %d", self.conn.client_addr, code
            )
        if state == OPEN and not frame_sent:
            self.sink.send_close(code, truncate_reason(reason))
        self.set_disconnect(code, reason)
        self.parts = []
        self.state = FAILED
        self.close_deadline = self.conn.loop.time() + CLOSE_TIMEOUT
        if drop or not self.sink.shut_write():
            self.sink.close()
            return
        # Half-closed: the client reads our close frame, then EOF, and closes; closing at
        # once could reset the connection under its unread bytes and lose the frame.
        self._resume_reading()

    # -- called by the framing ----------------------------------------------------------

    def connection_lost(self) -> None:
        self.state = CLOSED
        self.set_disconnect(ABNORMAL_CLOSURE)
        self.parts = []

    def eof_received(self) -> None:
        # The client sends nothing more: a connection without a closing handshake (1006),
        # or the end of the one we failed.
        self.set_disconnect(ABNORMAL_CLOSURE)

    # -- the app's side -----------------------------------------------------------------

    def set_disconnect(self, code: int, reason: str = "") -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self.wakeup.wake()

    def _resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if self.state < CLOSED:
                self.sink.resume_reading()

    async def receive(self) -> dict[str, Any]:
        messages = self.messages
        while True:
            if messages:
                message = messages.popleft()
                if self.reading_paused and len(messages) <= self.resume_at:
                    self._resume_reading()
                return message
            if self.disconnect is not None:
                return self.disconnect
            await self.wakeup.wait()

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        state = self.state
        if self.responded:
            raise RuntimeError(
                f"Unexpected ASGI message {message_type!r} after the handshake was refused."
            )
        if self.response_status:
            self._send_response_body(message_type, message)
        elif state == OPEN:
            if message_type == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                    if data is None:
                        raise RuntimeError("A 'websocket.send' message needs 'bytes' or 'text'.")
                if self.conn.trace:
                    kind = "text" if isinstance(data, str) else "binary"
                    logger.log(
                        TRACE_LOG_LEVEL,
                        "%s - WebSocket > %s %d",
                        self.conn.client_addr,
                        kind,
                        len(data),
                    )
                if self.sink.send_message(data):
                    await self.sink.drain()
                    if self.state == CLOSED:
                        raise ClientDisconnected("The client has disconnected.")
            elif message_type == "websocket.close":
                self._app_close(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got {message_type!r}."
                )
        elif state == CONNECTING:
            if message_type == "websocket.accept":
                self._accept(message)
            elif message_type == "websocket.close":
                self.app_closed = True
                self.reject(403, [], b"")
            elif message_type == "websocket.http.response.start":
                status = message.get("status")
                if not isinstance(status, int) or not 100 <= status <= 599:
                    raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
                self.response_headers = check_headers(message.get("headers") or ())
                self.response_status = status
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got {message_type!r}."
                )
        elif self.app_closed:
            raise RuntimeError(f"Unexpected ASGI message {message_type!r} after 'websocket.close'.")
        elif message_type == "websocket.close":
            self.app_closed = True  # the connection is already closing: nothing to do
        else:
            raise ClientDisconnected("The client has disconnected.")

    def _accept(self, message: dict[str, Any]) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(f"Subprotocol {subprotocol!r} was not offered by the client.")
        headers = check_headers(message.get("headers") or ())
        if any(name.lower() == b"sec-websocket-protocol" for name, _ in headers):
            raise RuntimeError(
                "The 'websocket.accept' headers may not set Sec-WebSocket-Protocol: "
                "use its 'subprotocol' key."
            )
        self.state = OPEN
        self.ping_sent = self.conn.loop.time()
        self.sink.accept(subprotocol, headers)
        if self.conn.access_log:
            self.log_access("[accepted]")
        if self.shutting_down:
            self.set_disconnect(SERVICE_RESTART)
            self.start_close(SERVICE_RESTART)

    def _app_close(self, message: dict[str, Any]) -> None:
        code = message.get("code", NORMAL_CLOSURE)
        if code is None:
            code = NORMAL_CLOSURE
        if not valid_close_code(code):
            raise RuntimeError(f"Invalid WebSocket close code {code!r}.")
        reason = truncate_reason(message.get("reason") or "")
        self.app_closed = True
        self.set_disconnect(code, reason)
        self.start_close(code, reason)

    def _send_response_body(self, message_type: str, message: dict[str, Any]) -> None:
        if message_type != "websocket.http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.http.response.body', but got {message_type!r}."
            )
        if self.state == CLOSED:
            raise ClientDisconnected("The client has disconnected.")
        body = message.get("body", b"")
        if body:
            self.response_body.append(body)
        if not message.get("more_body", False):
            self.reject(self.response_status, self.response_headers, b"".join(self.response_body))

    def reject(self, status: int, headers: Headers, body: bytes) -> None:
        """Refuse the upgrade with a plain HTTP response; the exchange then ends."""
        if self.state >= FAILED:
            return
        self.sink.reject(status, headers, body)
        if self.conn.access_log:
            self.log_access(str(status))
        self.responded = True
        self.state = CLOSED
        self.set_disconnect(ABNORMAL_CLOSURE)

    def start_close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; the client's close frame completes it."""
        if self.state != OPEN:
            return
        if self.conn.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - WebSocket > close %d", self.conn.client_addr, code)
        self.sink.send_close(code, reason)
        self.state = CLOSING
        self.close_deadline = self.conn.loop.time() + CLOSE_TIMEOUT
        self.parts = []
        # The client's close frame is behind the messages we were refusing to read.
        self._resume_reading()

    async def run_asgi(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Graceful shutdown ran out of time: nothing orderly can be sent any more.
            self.app_done = True
            if self.state != CLOSED:
                self.state = CLOSED
                self.sink.abort()
            raise
        except BaseException as exc:
            self.app_done = True
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if not (isinstance(exc, ClientDisconnected) and self.disconnect is not None):
                logger.error("Exception in ASGI application\n", exc_info=exc)
            self._finish(INTERNAL_ERROR)
            return
        self.app_done = True
        if result is not None:
            logger.error("ASGI callable should return None, but returned %r.", result)
        if self.state == CONNECTING:
            if self.response_status:
                logger.error("ASGI callable returned without completing response.")
            else:
                logger.error("ASGI callable returned without completing handshake.")
        self._finish(NORMAL_CLOSURE)

    def _finish(self, code: int) -> None:
        """The app is done: answer 500 if it never decided, else close with ``code``."""
        self.messages.clear()
        if self.state == CONNECTING:
            self.response_status = 0
            headers, body = plain_text(500)
            self.reject(500, headers, body)
        elif self.state == OPEN:
            self.set_disconnect(code)
            self.start_close(code)
        self._resume_reading()

    def log_access(self, outcome: str) -> None:
        conn = self.conn
        access_logger.info(
            '%s - "WebSocket %s" %s',
            scope_client_addr(self.scope, conn.client, conn.client_addr),
            log_safe(conn.raw_root_path + self.target),
            outcome,
            extra={"duration": conn.loop.time() - self.start_time, "size": 0},
        )

    # -- called by the server, through the framing --------------------------------------

    def shutdown(self) -> None:
        """Server shutdown: close with 1012 (the app gets ``websocket.disconnect``)."""
        if self.shutting_down:
            return
        self.shutting_down = True
        if self.state == OPEN:
            self.set_disconnect(SERVICE_RESTART)
            self.start_close(SERVICE_RESTART)
        # CONNECTING: the app still decides; an accept is followed by a 1012 close.
        # The one timer of this module: while the server waits for connections to close
        # it may no longer tick them, and a client that never answers our close frame
        # must not hold the shutdown up. It runs once a second, during shutdown only.
        self.conn.loop.call_later(1.0, self._shutdown_tick)

    def _shutdown_tick(self) -> None:
        if self.state != CLOSED:
            self.on_tick(self.conn.loop.time())
            self.conn.loop.call_later(1.0, self._shutdown_tick)

    def on_tick(self, now: float) -> None:
        state = self.state
        if state == OPEN:
            interval = self.ping_interval
            if interval is None:
                return
            if self.reading_paused:
                # The app lags and we are not reading, so a pong could not be seen: the
                # clock restarts once reading resumes, instead of failing a live client.
                self.ping_sent = now
                return
            timeout = self.ping_timeout
            if self.ping_payload is not None and timeout is not None:
                if now - self.ping_sent >= timeout:
                    if self.conn.trace:
                        logger.log(
                            TRACE_LOG_LEVEL, "%s - WebSocket ping timeout", self.conn.client_addr
                        )
                    self.fail(INTERNAL_ERROR, "keepalive ping timeout", drop=True)
            elif now - self.ping_sent >= interval:
                payload = self.ping_payload = os.urandom(4)
                self.ping_sent = now
                self.sink.send_ping(payload)
        elif state in (CLOSING, FAILED) and now >= self.close_deadline:
            self.state = CLOSED
            self.sink.abort()
