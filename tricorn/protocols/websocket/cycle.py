"""The ASGI WebSocket cycle: one connection's handshake, messages and close, written once.

Rules of this module: everything about a WebSocket connection that does not depend on the
protocol library lives here, once: the ASGI scope and messages, the close codes, the
queue of received messages, flow control, keepalive pings, closing, logging. A backend
subclass feeds bytes to its sans-I/O library in ``parse(data)`` and reports what the
library found by calling ``handshake``, ``handshake_failed``, ``message_part``,
``pong_received``, ``close_received`` and ``fail``; it turns our decisions into bytes with
``accept_bytes``, ``message_bytes``, ``ping_bytes`` and ``close_bytes``.

Theory of operation
-------------------
* The HTTP connection hands over its transport and replays the upgrade request's head, so
  the library parses the handshake itself. States: HANDSHAKE (head not parsed yet) ->
  CONNECTING (the app decides: accept, close = 403, or a denial response) -> OPEN ->
  CLOSING (our close frame is sent; we wait for the client's) or FAILED (we failed the
  connection: input is discarded until the client closes) -> CLOSED.
* Close codes, all decided here: app closes before accept -> HTTP 403; app returns or
  raises before accept -> HTTP 500; app raises after accept -> 1011 without detail; app
  returns after accept -> 1000; server shutdown -> 1012; message over ws_max_size -> 1009;
  invalid UTF-8 -> 1007; protocol violation -> 1002; no pong within ws_ping_timeout ->
  1011. Exception text never reaches the client.
* A client must wait for our 101 before it sends frames (RFC 6455 4.1): frames that
  arrive earlier are not delivered (wsproto drops them itself; we do the same).
* Received messages wait in a deque. Reading pauses when it holds ws_max_queue messages and
  resumes once the app has read half of them. ``send()`` waits while the transport is
  paused. Memory per connection is bounded by queue length x ws_max_size.
* Nothing is armed per connection: keepalive pings and the bounded wait for the client's
  close frame (``CLOSE_TIMEOUT``) are swept by ``on_tick``, called once a second by
  ``ServerState.tick``.
* ``send()`` once the connection is gone raises ``ClientDisconnected`` (an ``OSError``);
  ``receive()`` returns ``websocket.disconnect`` (again and again) once the queue is empty.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from tricorn.protocols.base import TRACE, BaseConnection, access_logger, logger
from tricorn.protocols.http.errors import ClientDisconnected, status_line
from tricorn.protocols.utils import Wakeup, is_ssl, log_safe, scope_client_addr
from tricorn.protocols.websocket.errors import (
    ABNORMAL_CLOSURE,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
    SERVICE_RESTART,
    check_headers,
    truncate_reason,
    valid_close_code,
)

if TYPE_CHECKING:
    pass


# Seconds we wait for the client's close frame (or EOF) after sending ours; then the TCP
# connection is dropped. Swept by on_tick, so the real bound is up to one second more.
CLOSE_TIMEOUT = 10.0
MAX_HANDSHAKE = 64 * 1024  # bytes of upgrade request head a backend may buffer

_CONNECT: dict[str, Any] = {"type": "websocket.connect"}
# Headers of a denial response that we frame ourselves.
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"connection"))

# Connection states, in order: comparisons like ``state >= FAILED`` are meaningful.
HANDSHAKE = 0
CONNECTING = 1
OPEN = 2
CLOSING = 3
FAILED = 4
CLOSED = 5


class WebSocketConnection(BaseConnection):
    """One WebSocket connection and its ASGI app; subclasses only plug in a library."""

    schemes = ("ws", "wss")

    __slots__ = (
        "max_size",
        "max_queue",
        "resume_at",
        "ping_interval",
        "ping_timeout",
        "per_message_deflate",
        "state",
        "scope",
        "target",
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
        "ping_payload",
        "ping_sent",
        "close_deadline",
    )

    def setup(self) -> None:
        config = self.config
        self.max_size: int | None = config.ws_max_size or None
        self.max_queue: int = max(1, config.ws_max_queue or 1)
        self.resume_at = self.max_queue // 2
        self.ping_interval: float | None = config.ws_ping_interval or None
        self.ping_timeout: float | None = config.ws_ping_timeout or None
        self.per_message_deflate = bool(config.ws_per_message_deflate)
        self.state = HANDSHAKE
        self.scope: dict[str, Any] = {}
        self.target = b""
        self.start_time = 0.0
        # ASGI receive side: messages not yet read, then the disconnect message.
        self.messages: deque[dict[str, Any]] = deque()
        self.disconnect: dict[str, Any] | None = None
        self.wakeup = Wakeup()  # receive() waits on it for a message or the disconnect
        # The fragmented message being received.
        self.parts: list[Any] = []
        self.message_size = 0
        self.reading_paused = False
        # A denial response the app is sending (websocket.http.response.*).
        self.response_status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.response_body: list[bytes] = []
        self.responded = False  # an HTTP response refused the upgrade
        self.app_closed = False  # the app sent websocket.close
        self.app_done = False  # the app returned or raised
        self.ping_payload: bytes | None = None  # the ping awaiting its pong
        self.ping_sent = 0.0
        self.close_deadline = 0.0
        self.new_library()

    # -- the backend's part -------------------------------------------------------------

    def new_library(self) -> None:
        """Create the library's connection object, once this object's state is set."""
        raise NotImplementedError

    def parse(self, data: bytes) -> None:
        """Feed bytes to the library and report what it found (see module docstring)."""
        raise NotImplementedError

    def accept_bytes(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The 101 response accepting the handshake, with ``headers`` added."""
        raise NotImplementedError

    def message_bytes(self, data: str | bytes) -> bytes:
        """One text (``str``) or binary (``bytes``) message as a frame."""
        raise NotImplementedError

    def ping_bytes(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def close_bytes(self, code: int, reason: str) -> bytes:
        """Our close frame; the library must expect no more frames from us."""
        raise NotImplementedError

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)
        if self.trace:
            logger.log(TRACE, "%s - WebSocket connection made", self.client_addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.detach()
        if self.trace:
            logger.log(TRACE, "%s - WebSocket connection lost", self.client_addr)
        self.set_disconnect(ABNORMAL_CLOSURE)
        self.parts = []

    def eof_received(self) -> bool | None:
        # The client sends nothing more: a connection without a closing handshake (1006),
        # or the end of the one we failed. Returning None lets the transport close.
        self.set_disconnect(ABNORMAL_CLOSURE)
        return None

    def data_received(self, data: bytes) -> None:
        if self.state >= FAILED:
            return  # failed or closed: RFC 6455 7.1.7 says to discard what follows
        self.parse(data)

    def write(self, data: bytes) -> None:
        # Closing covers CLOSED and a transport that failed before connection_lost ran.
        if data and not self.transport.is_closing():
            self.transport.write(data)

    # -- called by the backend ----------------------------------------------------------

    def handshake(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """A valid upgrade request arrived (header names lower-cased, wire order)."""
        self.state = CONNECTING
        self.start_time = self.loop.time()
        self.target = target
        raw_path, _, query = target.partition(b"?")
        if b"%" in raw_path or not raw_path.isascii():
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("ascii")
        subprotocols = [
            token
            for name, value in headers
            if name == b"sec-websocket-protocol"
            for token in (t.strip() for t in value.decode("latin-1").split(","))
            if token
        ]
        root_path = self.root_path
        self.scope = {
            "type": "websocket",
            "asgi": self.asgi,
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + path,
            "raw_path": self.raw_root_path + raw_path if root_path else raw_path,
            "query_string": query,
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self.messages.append(_CONNECT)
        self.start_task(self.run_asgi())

    def handshake_failed(self, status: int, reason: str) -> None:
        """The upgrade request is not a valid WebSocket handshake: answer ``status``."""
        if self.state != HANDSHAKE:
            return
        # The library's reason may quote client bytes: escaped and bounded.
        logger.warning(
            "Invalid WebSocket handshake: %s", log_safe(reason.encode("utf-8", "replace")[:200])
        )
        body = b"Invalid WebSocket handshake."
        self.respond(
            status,
            [(b"sec-websocket-version", b"13"), (b"content-type", b"text/plain; charset=utf-8")],
            body,
        )

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
        if self.trace:
            kind = "text" if isinstance(data, str) else "binary"
            logger.log(TRACE, "%s - WebSocket < %s %d bytes", self.client_addr, kind, total)
        if self.app_done:
            return
        if isinstance(data, str):
            self.messages.append({"type": "websocket.receive", "text": data})
        else:
            self.messages.append({"type": "websocket.receive", "bytes": data})
        self.wake()
        if len(self.messages) >= self.max_queue and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def pong_received(self, payload: bytes) -> None:
        if self.trace:
            logger.log(TRACE, "%s - WebSocket < pong %d bytes", self.client_addr, len(payload))
        if payload == self.ping_payload:
            self.ping_payload = None

    def close_received(self, code: int, reason: str) -> None:
        """The client's close frame; the backend has already written the library's echo."""
        if self.trace:
            logger.log(TRACE, "%s - WebSocket < close %d", self.client_addr, code)
        if self.state > CLOSING:
            return
        self.set_disconnect(code, reason)
        # Either the closing handshake is complete or we just echoed the client's close:
        # a server closes the TCP connection first (RFC 6455 7.1.1).
        self.state = CLOSED
        self.transport.close()

    def fail(self, code: int, reason: str, *, frame_sent: bool = False, drop: bool = False) -> None:
        """Fail the connection with ``code`` (RFC 6455 7.1.7).

        ``reason`` goes in the close frame: it must never carry internal detail.
        ``frame_sent``: the library already produced the close frame (the backend wrote
        it). ``drop``: close the TCP connection at once instead of half-closing it and
        waiting (boundedly) for the client to close.
        """
        state = self.state
        if state >= FAILED:
            return
        if self.trace:
            logger.log(TRACE, "%s - WebSocket failed with %d", self.client_addr, code)
        if state == OPEN and not frame_sent:
            self.write(self.close_bytes(code, truncate_reason(reason)))
        self.set_disconnect(code, reason)
        self.parts = []
        self.state = FAILED
        self.close_deadline = self.loop.time() + CLOSE_TIMEOUT
        transport = self.transport
        if drop or not transport.can_write_eof() or is_ssl(transport):
            transport.close()
            return
        # Half-close: the client reads our close frame, then EOF, and closes; closing at
        # once could reset the connection under its unread bytes and lose the frame.
        transport.write_eof()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()

    # -- the app's side -----------------------------------------------------------------

    def set_disconnect(self, code: int, reason: str = "") -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self.wake()

    def wake(self) -> None:
        self.wakeup.wake()

    async def receive(self) -> dict[str, Any]:
        messages = self.messages
        while True:
            if messages:
                message = messages.popleft()
                if self.reading_paused and len(messages) <= self.resume_at:
                    self.reading_paused = False
                    if self.state < CLOSED:
                        self.transport.resume_reading()
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
                transport = self.transport
                if transport.is_closing():
                    # The transport failed (peer reset) and connection_lost is still on its
                    # way: an app sending in a loop without yielding must stop here.
                    raise ClientDisconnected("The client has disconnected.")
                if self.trace:
                    kind = "text" if isinstance(data, str) else "binary"
                    logger.log(TRACE, "%s - WebSocket > %s %d", self.client_addr, kind, len(data))
                transport.write(self.message_bytes(data))
                if self.writing_paused:
                    await self.drain()
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
                self.respond(403, [], b"")
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
        app_headers = check_headers(message.get("headers") or ())
        state = self.server_state
        names = {name.lower() for name, _ in app_headers}
        if b"sec-websocket-protocol" in names:
            raise RuntimeError(
                "The 'websocket.accept' headers may not set Sec-WebSocket-Protocol: "
                "use its 'subprotocol' key."
            )
        headers = [(name, line) for name, line in state.default_header_lines if name not in names]
        extra = [(name, line[len(name) + 2 : -2]) for name, line in headers]
        extra.extend(app_headers)
        data = self.accept_bytes(subprotocol, extra)
        self.state = OPEN
        self.ping_sent = self.loop.time()
        self.write(data)
        if self.access_log:
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
            self.respond(self.response_status, self.response_headers, b"".join(self.response_body))

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Refuse the upgrade with a plain HTTP response, then close the connection."""
        if self.state >= FAILED:
            return
        state = self.server_state
        names = {name.lower() for name, _ in headers}
        lines = [status_line(status), state.default_headers_without(names)]
        lines.extend(
            b"%s: %s\r\n" % (name, value)
            for name, value in headers
            if name.lower() not in _FRAMING_HEADERS
        )
        lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        lines.append(body)
        self.write(b"".join(lines))
        if self.access_log and self.scope:
            self.log_access(str(status))
        self.responded = True
        self.state = CLOSED
        self.set_disconnect(ABNORMAL_CLOSURE)
        self.transport.close()

    def start_close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; the client's close frame completes it."""
        if self.state != OPEN:
            return
        if self.trace:
            logger.log(TRACE, "%s - WebSocket > close %d", self.client_addr, code)
        self.write(self.close_bytes(code, reason))
        self.state = CLOSING
        self.close_deadline = self.loop.time() + CLOSE_TIMEOUT
        self.parts = []
        if self.reading_paused:
            # The client's close frame is behind the messages we were refusing to read.
            self.reading_paused = False
            self.transport.resume_reading()

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Graceful shutdown ran out of time: nothing orderly can be sent any more.
            self.app_done = True
            if self.state != CLOSED:
                self.state = CLOSED
                self.transport.abort()
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
            body = b"Internal Server Error"
            self.respond(500, [(b"content-type", b"text/plain; charset=utf-8")], body)
        elif self.state == OPEN:
            self.set_disconnect(code)
            self.start_close(code)
        if self.reading_paused and self.state < CLOSED:
            self.reading_paused = False
            self.transport.resume_reading()

    def log_access(self, outcome: str) -> None:
        access_logger.info(
            '%s - "WebSocket %s" %s',
            scope_client_addr(self.scope, self.client, self.client_addr),
            log_safe(self.raw_root_path + self.target),
            outcome,
            extra={"duration": self.loop.time() - self.start_time, "size": 0},
        )

    # -- called by the server -----------------------------------------------------------

    def shutdown(self) -> None:
        """Server shutdown: close with 1012 (the app gets ``websocket.disconnect``)."""
        if self.shutting_down:
            return
        self.shutting_down = True
        state = self.state
        if state == HANDSHAKE:
            self.state = CLOSED
            self.transport.close()
            return
        if state == OPEN:
            self.set_disconnect(SERVICE_RESTART)
            self.start_close(SERVICE_RESTART)
        # CONNECTING: the app still decides; an accept is followed by a 1012 close.
        # The one timer of this module: while the server waits for connections to close
        # it may no longer tick them, and a client that never answers our close frame
        # must not hold the shutdown up. It runs once a second, during shutdown only.
        self.loop.call_later(1.0, self._shutdown_tick)

    def _shutdown_tick(self) -> None:
        if self.state != CLOSED:
            self.on_tick(self.loop.time())
            self.loop.call_later(1.0, self._shutdown_tick)

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
                    if self.trace:
                        logger.log(TRACE, "%s - WebSocket ping timeout", self.client_addr)
                    self.fail(INTERNAL_ERROR, "keepalive ping timeout", drop=True)
            elif now - self.ping_sent >= interval:
                payload = self.ping_payload = os.urandom(4)
                self.ping_sent = now
                self.write(self.ping_bytes(payload))
        elif state in (CLOSING, FAILED) and now >= self.close_deadline:
            self.state = CLOSED
            self.transport.abort()
