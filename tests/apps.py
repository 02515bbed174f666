"""Small ASGI apps shared by the tests (importable as ``tests.apps:<name>`` by the CLI).

The names are an interface for every test module: keep them and their behaviour stable.

HTTP apps (they ignore the lifespan scope by returning, so ``--lifespan auto`` treats them
as apps without lifespan support):

* ``hello``: 200 ``text/plain`` ``Hello, world!``.
* ``echo``: 200 with the request body read in full (request content-type kept).
* ``scope_json``: 200 JSON of the scope (bytes decoded as latin-1, ``state`` included).
* ``slow``: sleeps ``?delay=`` seconds (default 1), then 200 ``done``.
* ``slow_stream``: sends the head and ``started\\n`` at once, sleeps ``?delay=`` seconds
  (default 1), then ``done\\n``; a client that read ``started`` knows the request is in flight.
* ``streaming``: ``?chunks=N`` (default 3) body chunks ``chunk <i>\\n`` without
  Content-Length (chunked encoding).

Lifespan apps:

* ``lifespan_state``: startup stores ``{"name": "tricorn", "items": []}`` in the state and
  prints ``lifespan startup`` / ``lifespan shutdown`` on stdout; each request answers JSON
  ``{"name": ..., "items": [...]}`` as found in ``scope["state"]``, then sets
  ``scope["state"]["name"] = "changed"`` and appends ``"request"`` to the shared list (so a
  shallow copy shows the first change never, the second one on the next request).
* ``startup_failed``: answers ``lifespan.startup.failed`` with ``STARTUP_FAILED_MESSAGE``.
* ``startup_raises``: raises ``RuntimeError(STARTUP_RAISES_MESSAGE)`` on ``lifespan.startup``.
* ``no_lifespan``: raises ``AssertionError`` on any non-HTTP scope (a pre-lifespan app).
* ``shutdown_failed``: starts fine, answers ``lifespan.shutdown.failed`` with
  ``SHUTDOWN_FAILED_MESSAGE``.
* ``wrong_order``: answers ``lifespan.startup`` with ``lifespan.shutdown.complete``.

Factories (in-process tests only):

* ``Gate``: an app that signals ``entered`` (a ``threading.Event``) when a request arrives and
  holds it until ``release`` is set, then answers 200 ``released``.
* ``LifespanRecorder``: records every lifespan event it handles in ``events``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STARTUP_FAILED_MESSAGE = "database unreachable: connection refused"
STARTUP_RAISES_MESSAGE = "startup exploded"
SHUTDOWN_FAILED_MESSAGE = "could not flush the queue"


def _query(scope: Scope, name: str, default: str) -> str:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else default


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"text/plain"
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await _respond(send, 200, b"Hello, world!")


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = await _read_body(receive)
    content_type = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
    await _respond(send, 200, body, content_type)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, MutableMapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


async def scope_json(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await _read_body(receive)
    await _respond(send, 200, json.dumps(_jsonable(scope)).encode(), b"application/json")


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await asyncio.sleep(float(_query(scope, "delay", "1")))
    await _respond(send, 200, b"done")


async def slow_stream(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
    await asyncio.sleep(float(_query(scope, "delay", "1")))
    await send({"type": "http.response.body", "body": b"done\n"})


async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    count = int(_query(scope, "chunks", "3"))
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for index in range(count):
        chunk = f"chunk {index}\n".encode()
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan_loop(
    receive: Receive,
    send: Send,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> None:
    # Answers startup/shutdown with "complete", running the hooks first.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if on_startup is not None:
                on_startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown is not None:
                on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def lifespan_state(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        state = scope["state"]

        def startup() -> None:
            state["name"] = "tricorn"
            state["items"] = []
            print("lifespan startup", flush=True)

        def shutdown() -> None:
            print("lifespan shutdown", flush=True)

        await _lifespan_loop(receive, send, startup, shutdown)
        return
    state = scope["state"]
    seen = {"name": state.get("name"), "items": list(state.get("items", []))}
    state["name"] = "changed"
    state.setdefault("items", []).append("request")
    await _respond(send, 200, json.dumps(seen).encode(), b"application/json")


async def startup_failed(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": STARTUP_FAILED_MESSAGE})
        return
    await hello(scope, receive, send)


async def startup_raises(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError(STARTUP_RAISES_MESSAGE)
    await hello(scope, receive, send)


async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http", "this app only speaks HTTP"
    await hello(scope, receive, send)


async def shutdown_failed(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": SHUTDOWN_FAILED_MESSAGE})
        return
    await hello(scope, receive, send)


async def wrong_order(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await hello(scope, receive, send)


class Gate:
    """An app that holds each request until the test sets ``release``.

    ``entered`` is set when a request reached the app; ``cancelled`` when a held request was
    cancelled (graceful shutdown timeout).
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.cancelled = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.entered.set()
        try:
            # The release comes from the test's thread: poll it rather than bridge loops.
            while not self.release.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await _respond(send, 200, b"released")


class LifespanRecorder:
    """A lifespan-aware app that appends each lifespan event type to ``events``."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan_loop(
                receive,
                send,
                lambda: self.events.append("startup"),
                lambda: self.events.append("shutdown"),
            )
            return
        await hello(scope, receive, send)
