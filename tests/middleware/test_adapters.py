"""ASGI 2 and WSGI adapters, and the TRACE message logger, in memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import pytest

from tricorn.logs import TRACE_LOG_LEVEL
from tricorn.middleware.asgi2 import ASGI2Middleware
from tricorn.middleware.message_logger import MessageLoggerMiddleware, message_with_placeholders
from tricorn.middleware.wsgi import WSGIMiddleware


def http_scope(**extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "root_path": "",
        "query_string": b"a=1",
        "headers": [(b"host", b"example.org"), (b"content-type", b"text/plain")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


async def call(
    app: Any, scope: dict[str, Any], inbound: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = list(inbound)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # pragma: no cover - never reached in these tests
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    return sent


def test_asgi2_adapter() -> None:
    class App:
        def __init__(self, scope: Any) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            message = await receive()
            await send({"type": "seen", "path": self.scope["path"], "got": message["type"]})

    sent = asyncio.run(call(ASGI2Middleware(App), http_scope(), [{"type": "http.request"}]))
    assert sent == [{"type": "seen", "path": "/hello", "got": "http.request"}]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response(
        "201 Created", [("Content-Type", "text/plain"), ("X-Method", environ["REQUEST_METHOD"])]
    )
    return [
        b"path=",
        environ["PATH_INFO"].encode(),
        b" query=",
        environ["QUERY_STRING"].encode(),
        b" body=",
        body,
    ]


def test_wsgi_http() -> None:
    inbound = [
        {"type": "http.request", "body": b"part1-", "more_body": True},
        {"type": "http.request", "body": b"part2", "more_body": False},
    ]
    sent = asyncio.run(call(WSGIMiddleware(wsgi_app), http_scope(), inbound))
    start = sent[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == 201
    assert (b"x-method", b"POST") in start["headers"]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    assert body == b"path=/hello query=a=1 body=part1-part2"
    assert sent[-1].get("more_body", False) is False


def test_wsgi_never_sees_websockets_or_lifespan() -> None:
    called: list[Any] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:  # pragma: no cover - must not run
        called.append(environ)
        return []

    middleware = WSGIMiddleware(app)
    ws = asyncio.run(
        call(middleware, http_scope(type="websocket"), [{"type": "websocket.connect"}])
    )
    assert ws == [{"type": "websocket.close", "code": 1000}]
    lifespan = asyncio.run(
        call(
            middleware,
            {"type": "lifespan", "asgi": {"version": "3.0"}},
            [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
        )
    )
    assert lifespan == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert called == []


def test_placeholders() -> None:
    shown = message_with_placeholders({"type": "http.response.body", "body": b"x" * 1234})
    assert shown == {"type": "http.response.body", "body": "<1234 bytes>"}
    assert message_with_placeholders({"text": "héllo"})["text"] == "<5 chars>"
    assert message_with_placeholders({"headers": [(b"a", b"b")]})["headers"] == "<...>"


def test_trace_logger_shows_sizes_not_bodies(caplog: pytest.LogCaptureFixture) -> None:
    secret = b"top-secret-body" * 100

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-secret", secret)]}
        )
        await send({"type": "http.response.body", "body": secret})

    with caplog.at_level(TRACE_LOG_LEVEL, logger="tricorn.asgi"):
        asyncio.run(
            call(
                MessageLoggerMiddleware(app),
                http_scope(),
                [{"type": "http.request", "body": secret}],
            )
        )
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "tricorn.asgi"]
    assert all(
        rec.levelno == TRACE_LOG_LEVEL for rec in caplog.records if rec.name == "tricorn.asgi"
    )
    assert len(lines) == 5
    assert lines[0].startswith("127.0.0.1:5000 - ASGI [1] Started scope=")
    assert "Receive {'type': 'http.request', 'body': '<1500 bytes>'}" in lines[1]
    assert "Send {'type': 'http.response.body', 'body': '<1500 bytes>'}" in lines[3]
    assert lines[4] == "127.0.0.1:5000 - ASGI [1] Completed"
    assert "top-secret" not in caplog.text


def test_trace_logger_logs_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    with caplog.at_level(TRACE_LOG_LEVEL, logger="tricorn.asgi"), pytest.raises(ValueError):
        asyncio.run(call(MessageLoggerMiddleware(app), http_scope(client=None), []))
    assert caplog.records[-1].getMessage() == "ASGI [1] Raised exception"
    assert logging.getLogger("tricorn.asgi").name == "tricorn.asgi"
