"""In-memory harness for the HTTP protocol tests.

* ``async def`` tests in this directory run on a fresh asyncio loop (``asyncio.run``);
  an exception that reaches the loop's exception handler fails the test.
* ``FakeTransport`` collects what the protocol writes and records reading pauses; its
  ``close()`` delivers ``connection_lost`` on the next loop iteration, like a real one.
* ``Conn`` builds ``Config(app, http=backend, lifespan="off", log_config=None, ...)``, a
  ``ServerState`` without a Date header (so responses are exact bytes) and one protocol
  instance wired to a ``FakeTransport``.

Waits never sleep: ``Conn.settle()`` awaits the app tasks, ``until()`` spins the loop
(bounded) until a condition holds.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest

from tests.utils import TIME_UNIT

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh event loop that fails on stray exceptions."""
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    loop_errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: loop_errors.append(context)
        )
        await asyncio.wait_for(func(**kwargs), timeout=10 * TIME_UNIT)

    asyncio.run(main())
    assert not loop_errors, f"exception reached the event loop: {loop_errors[0]}"
    return True


async def until(condition: Callable[[], object], what: str = "condition") -> None:
    """Spin the loop until ``condition()`` holds; fail after a bounded number of turns."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


class FakeTransport(asyncio.Transport):
    """A transport that records everything the protocol does to it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        peername: Any = ("127.0.0.1", 50000),
        sockname: Any = ("127.0.0.1", 8000),
        sslcontext: Any = None,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.Protocol | None = None
        self.extra = {
            "peername": peername,
            "sockname": sockname,
            "sslcontext": sslcontext,
            "socket": None,
        }
        self.buffer = bytearray()
        self.writes: list[bytes] = []
        self.writes_after_close: list[bytes] = []
        self.closed = False
        self.lost = 0
        self.reading = True
        self.reading_events: list[str] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            self.writes_after_close.append(bytes(data))
            return
        self.writes.append(bytes(data))
        self.buffer += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon(self._lost)

    def abort(self) -> None:
        self.close()

    def _lost(self) -> None:
        self.lost += 1
        assert self.protocol is not None
        self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        assert self.reading, "pause_reading while already paused"
        self.reading = False
        self.reading_events.append("pause")

    def resume_reading(self) -> None:
        assert not self.reading, "resume_reading while not paused"
        self.reading = True
        self.reading_events.append("resume")

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def take(self) -> bytes:
        """Everything written since the last ``take()``."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class Conn:
    """One protocol instance over a ``FakeTransport``; create it inside a running loop."""

    def __init__(
        self,
        backend: str,
        app: Any,
        *,
        app_state: dict[str, Any] | None = None,
        state: Any = None,
        peername: Any = ("127.0.0.1", 50000),
        sockname: Any = ("127.0.0.1", 8000),
        sslcontext: Any = None,
        **settings: Any,
    ) -> None:
        from tricorn.config import Config
        from tricorn.protocols.state import ServerState

        self.loop = asyncio.get_running_loop()
        settings.setdefault("lifespan", "off")
        settings.setdefault("log_config", None)
        self.config = Config(app, http=backend, **settings)
        self.config.load()
        if state is None:
            state = ServerState(
                server_header=self.config.server_header,
                date_header=False,
                extra_headers=self.config.encoded_headers,
            )
        self.state = state
        self.app_state = {} if app_state is None else app_state
        self.proto = self.config.http_protocol_class(
            config=self.config, server_state=state, app_state=self.app_state, _loop=self.loop
        )
        self.transport = FakeTransport(
            self.loop, peername=peername, sockname=sockname, sslcontext=sslcontext
        )
        self.transport.protocol = self.proto
        self.proto.connection_made(self.transport)

    def feed(self, data: bytes) -> None:
        self.proto.data_received(data)

    async def settle(self) -> None:
        """Wait for every app task (and what they schedule, e.g. connection_lost)."""
        deadline = self.loop.time() + 5 * TIME_UNIT
        while True:
            tasks = set(self.state.tasks)
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=deadline - self.loop.time())
                assert not pending, "app tasks still running"
            for _ in range(5):
                await asyncio.sleep(0)
            if not self.state.tasks:
                break
        assert not self.transport.writes_after_close, (
            f"written after close: {self.transport.writes_after_close!r}"
        )

    async def exchange(self, data: bytes) -> bytes:
        """Feed ``data``, wait for the apps, return what was written."""
        self.feed(data)
        await self.settle()
        return self.transport.take()

    async def bytewise(self, data: bytes) -> bytes:
        """Feed ``data`` one byte at a time (the app runs between bytes)."""
        for index in range(len(data)):
            if self.transport.closed:
                break
            self.feed(data[index : index + 1])
            await asyncio.sleep(0)
        await self.settle()
        return self.transport.take()

    @property
    def closed(self) -> bool:
        return self.transport.closed


def response(
    status: bytes,
    headers: bytes = b"",
    body: bytes = b"",
    *,
    server: bool = True,
) -> bytes:
    """Expected response bytes: status line, ``server: tricorn``, ``headers``, body."""
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + (b"server: tricorn\r\n" if server else b"")
        + headers
        + b"\r\n"
        + body
    )


# The body the server sends with each protocol error it answers itself.
ERROR_BODIES = {
    400: b"Invalid HTTP request received.",
    414: b"Request target too long.",
    431: b"Request header fields too large.",
    501: b"Unsupported transfer coding.",
    505: b"HTTP version not supported.",
}


def error(status: int) -> bytes:
    """Expected bytes of the server's own error response (it then closes)."""
    body = ERROR_BODIES[status]
    return response(
        b"%d %s" % (status, HTTPStatus(status).phrase.encode()),
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n" % len(body),
        body,
    )


def plain_app(
    body: bytes = b"Hello, world!",
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> App:
    """An app answering ``body`` in one message (no Content-Length from the app)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": body})

    return app


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += bytes(message["body"])
        if not message["more_body"]:
            return body
