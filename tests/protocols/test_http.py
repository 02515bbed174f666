"""HTTP/1.1 protocol in memory: a fake transport, exact bytes, both backends.

Every test takes ``http_backend`` ("httptools" / "h11"), so both parser backends must give
the app the same scope and messages and put the same bytes on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.protocols.conftest import (
    GET,
    App,
    Conn,
    Message,
    Receive,
    Scope,
    Send,
    plain_app,
    read_body,
    response,
    until,
)

HELLO = response(b"200 OK", b"content-length: 13\r\n", b"Hello, world!")
INTERNAL_ERROR = response(
    b"500 Internal Server Error",
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n",
    b"Internal Server Error",
)


def scope_recorder(scopes: list[Scope]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await read_body(receive)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


NO_CONTENT = response(b"204 No Content")


# -- scope -------------------------------------------------------------------------------


async def test_scope_has_every_asgi_key(http_backend: str) -> None:
    scopes: list[Scope] = []
    shared: list[int] = [1]
    app_state: dict[str, Any] = {"shared": shared, "name": "tricorn"}
    conn = Conn(http_backend, scope_recorder(scopes), app_state=app_state)
    request = (
        b"GET /caf%C3%A9/a%20b%2Fc?x=1&y=%20z HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"X-Custom: Mixed Case\r\n"
        b"Accept: */*\r\n"
        b"x-custom: second\r\n\r\n"
    )
    assert await conn.exchange(request) == NO_CONTENT
    [scope] = scopes
    state = scope.pop("state")
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/café/a b/c",
        "raw_path": b"/caf%C3%A9/a%20b%2Fc",
        "query_string": b"x=1&y=%20z",
        "headers": [
            (b"host", b"example.com"),
            (b"x-custom", b"Mixed Case"),
            (b"accept", b"*/*"),
            (b"x-custom", b"second"),
        ],
    }
    # state: a shallow copy of the lifespan state
    assert state == app_state
    assert state is not app_state
    assert state["shared"] is shared


async def test_scope_header_values_lose_surrounding_whitespace(http_backend: str) -> None:
    # RFC 9110 5.5: optional whitespace around a field value is not part of it.
    scopes: list[Scope] = []
    conn = Conn(http_backend, scope_recorder(scopes))
    request = b"GET / HTTP/1.1\r\nHost: a \r\nX-A:  b c \t\r\nX-B:\t\r\nContent-Length: 0  \r\n\r\n"
    for mode in ("whole", "bytewise"):
        if mode == "whole":
            assert await conn.exchange(request) == NO_CONTENT
        else:
            for byte in request:
                conn.feed(bytes([byte]))
            await conn.settle()
    assert [scope["headers"] for scope in scopes] == 2 * [
        [(b"host", b"a"), (b"x-a", b"b c"), (b"x-b", b""), (b"content-length", b"0")]
    ]


async def test_scope_state_is_copied_per_request(http_backend: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope["state"]))
        scope["state"]["name"] = "changed"
        scope["state"]["items"].append("request")
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    app_state: dict[str, Any] = {"name": "tricorn", "items": []}
    conn = Conn(http_backend, app, app_state=app_state)
    assert await conn.exchange(GET + GET) == NO_CONTENT * 2
    # The key set by the first request is not seen by the second; the shared list is.
    assert [s["name"] for s in seen] == ["tricorn", "tricorn"]
    assert app_state == {"name": "tricorn", "items": ["request", "request"]}


async def test_scope_http_10_and_other_methods(http_backend: str) -> None:
    scopes: list[Scope] = []
    conn = Conn(http_backend, scope_recorder(scopes))
    await conn.exchange(b"PURGE /x HTTP/1.0\r\n\r\n")
    [scope] = scopes
    assert scope["http_version"] == "1.0"
    assert scope["method"] == "PURGE"
    assert scope["path"] == "/x"
    assert scope["headers"] == []


async def test_scope_https_scheme(http_backend: str) -> None:
    scopes: list[Scope] = []
    conn = Conn(http_backend, scope_recorder(scopes), sslcontext=object())
    await conn.exchange(GET)
    assert scopes[0]["scheme"] == "https"


async def test_scope_root_path(http_backend: str) -> None:
    scopes: list[Scope] = []
    conn = Conn(http_backend, scope_recorder(scopes), root_path="/api")
    await conn.exchange(b"GET /items/%41?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    [scope] = scopes
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items/A"
    assert scope["raw_path"] == b"/api/items/%41"
    assert scope["query_string"] == b"q=1"


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"http://example.com:8080/a/b?q=1", "/a/b", b"q=1"),
        (b"HTTPS://example.com/x%20y", "/x y", b""),
        (b"http://example.com", "/", b""),
        (b"http://example.com?q=2", "/", b"q=2"),
    ],
)
async def test_scope_absolute_form(
    http_backend: str, target: bytes, path: str, query: bytes
) -> None:
    scopes: list[Scope] = []
    conn = Conn(http_backend, scope_recorder(scopes))
    await conn.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: example.com\r\n\r\n")
    [scope] = scopes
    assert scope["path"] == path
    assert scope["raw_path"] == path.replace(" ", "%20").encode()
    assert scope["query_string"] == query


async def test_scope_ipv6(http_backend: str) -> None:
    scopes: list[Scope] = []
    conn = Conn(
        http_backend,
        scope_recorder(scopes),
        peername=("::1", 50000, 0, 0),
        sockname=("::1", 8000, 0, 0),
    )
    await conn.exchange(GET)
    assert scopes[0]["client"] == ("::1", 50000)
    assert scopes[0]["server"] == ("::1", 8000)


async def test_scope_unix_socket(http_backend: str) -> None:
    scopes: list[Scope] = []
    conn = Conn(
        http_backend, scope_recorder(scopes), peername="", sockname="/tmp/tricorn-test.sock"
    )
    await conn.exchange(GET)
    assert scopes[0]["client"] is None
    assert scopes[0]["server"] == ("/tmp/tricorn-test.sock", None)


async def test_connection_bookkeeping(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app())
    assert conn.proto in conn.state.connections
    await conn.exchange(GET + GET)
    assert conn.state.total_requests == 2
    conn.transport.close()
    await until(lambda: conn.transport.lost)
    assert conn.proto not in conn.state.connections


# -- keep-alive --------------------------------------------------------------------------


async def test_http11_keeps_alive_by_default(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app())
    assert await conn.exchange(GET) == HELLO
    assert not conn.closed
    assert await conn.exchange(GET) == HELLO
    assert not conn.closed


async def test_request_connection_close(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app())
    out = await conn.exchange(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out == response(
        b"200 OK", b"content-length: 13\r\nconnection: close\r\n", b"Hello, world!"
    )
    assert conn.closed


async def test_app_connection_close(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(headers=[(b"Connection", b"close")]))
    out = await conn.exchange(GET)
    assert out == response(
        b"200 OK", b"Connection: close\r\ncontent-length: 13\r\n", b"Hello, world!"
    )
    assert conn.closed


async def test_http10_closes_by_default(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app())
    out = await conn.exchange(b"GET / HTTP/1.0\r\n\r\n")
    assert out == response(
        b"200 OK", b"content-length: 13\r\nconnection: close\r\n", b"Hello, world!"
    )
    assert conn.closed


async def test_http10_keep_alive_when_asked(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app())
    request = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    expected = response(
        b"200 OK", b"content-length: 13\r\nconnection: keep-alive\r\n", b"Hello, world!"
    )
    assert await conn.exchange(request) == expected
    assert not conn.closed
    assert await conn.exchange(request) == expected
    assert not conn.closed


async def test_pipelined_requests_one_app_at_a_time(http_backend: str) -> None:
    gates = {"/1": asyncio.Event(), "/2": asyncio.Event(), "/3": asyncio.Event()}
    running: list[str] = []
    log: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        running.append(path)
        log.append("start " + path)
        assert len(running) == 1, "two apps ran at once"
        await gates[path].wait()
        body = path.encode()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})
        running.remove(path)
        log.append("end " + path)

    conn = Conn(http_backend, app)
    requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in (1, 2, 3))
    conn.feed(requests)
    await until(lambda: log == ["start /1"])
    assert not conn.transport.reading, "reading must pause while requests queue up"
    # Released out of order: the responses still leave in request order.
    gates["/3"].set()
    gates["/2"].set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert log == ["start /1"]
    gates["/1"].set()
    await conn.settle()
    assert log == ["start /1", "end /1", "start /2", "end /2", "start /3", "end /3"]
    assert conn.transport.take() == b"".join(
        response(b"200 OK", b"content-length: 2\r\n", b"/%d" % i) for i in (1, 2, 3)
    )
    assert conn.transport.reading
    assert conn.transport.reading_events == ["pause", "resume"]
    assert not conn.closed


def echo_app() -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["method"].encode() + body})

    return app


PIPELINE = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    b"HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n"
    b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxy"
)
PIPELINE_OUT = (
    response(b"200 OK", b"content-length: 3\r\n", b"GET")
    + response(b"200 OK", b"content-length: 9\r\n", b"POSThello")
    + response(b"200 OK", b"content-length: 9\r\n", b"POSTabcde")
    + response(b"200 OK")
    + response(b"200 OK", b"content-length: 5\r\nconnection: close\r\n", b"PUTxy")
)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
async def test_pipelined_bodies_whole_and_bytewise(http_backend: str, mode: str) -> None:
    conn = Conn(http_backend, echo_app())
    out = await (conn.exchange(PIPELINE) if mode == "whole" else conn.bytewise(PIPELINE))
    assert out == PIPELINE_OUT
    assert conn.closed
    assert conn.state.total_requests == 5


# -- request bodies ----------------------------------------------------------------------


def body_recorder(messages: list[Message]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})

    return app


async def test_empty_body(http_backend: str) -> None:
    messages: list[Message] = []
    conn = Conn(http_backend, body_recorder(messages))
    out = await conn.exchange(GET)
    assert messages == [{"type": "http.request", "body": b"", "more_body": False}]
    assert out == response(b"200 OK", b"content-length: 0\r\n")


async def test_content_length_body_in_pieces(http_backend: str) -> None:
    messages: list[Message] = []
    conn = Conn(http_backend, body_recorder(messages))
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    await until(lambda: messages)
    conn.feed(b"def")
    await conn.settle()
    assert messages == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False},
    ]
    assert conn.transport.take() == response(b"200 OK", b"content-length: 6\r\n", b"abcdef")
    assert not conn.closed


async def test_chunked_body_in_pieces(http_backend: str) -> None:
    messages: list[Message] = []
    conn = Conn(http_backend, body_recorder(messages))
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await until(lambda: messages)
    assert messages == [{"type": "http.request", "body": b"hello", "more_body": True}]
    conn.feed(b"6\r\n world\r\n0\r\n\r\n")
    await conn.settle()
    assert all(m["more_body"] for m in messages[:-1])
    assert messages[-1]["more_body"] is False
    assert b"".join(m["body"] for m in messages) == b"hello world"
    assert conn.transport.take() == response(b"200 OK", b"content-length: 11\r\n", b"hello world")
    # the connection is reusable after a chunked body
    messages.clear()
    assert await conn.exchange(GET) == response(b"200 OK", b"content-length: 0\r\n")


async def test_reading_pauses_above_high_water(http_backend: str) -> None:
    ready = asyncio.Event()
    received: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await ready.wait()
        while True:
            message = await receive()
            received.append(len(message["body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"%d" % sum(received)})

    conn = Conn(http_backend, app)
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
    conn.feed(b"a" * 60_000)
    await asyncio.sleep(0)
    assert conn.transport.reading, "64 KiB or less unread must not pause reading"
    conn.feed(b"a" * 40_000)
    assert not conn.transport.reading, "more than 64 KiB unread must pause reading"
    ready.set()
    await until(lambda: received)
    assert received == [100_000]
    assert conn.transport.reading, "reading resumes once the app read the body"
    conn.feed(b"a" * 100_000)
    await conn.settle()
    assert sum(received) == 200_000
    assert conn.transport.take() == response(b"200 OK", b"content-length: 6\r\n", b"200000")
    assert conn.transport.reading
    assert conn.transport.reading_events[:2] == ["pause", "resume"]


async def test_expect_100_continue(http_backend: str) -> None:
    messages: list[Message] = []
    conn = Conn(http_backend, body_recorder(messages))
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    await until(lambda: conn.transport.buffer)
    assert conn.transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.feed(b"ab")
    await until(lambda: messages)
    conn.feed(b"cd")
    await conn.settle()
    # Only the first receive() answered 100 Continue.
    assert conn.transport.take() == response(b"200 OK", b"content-length: 4\r\n", b"abcd")
    assert not conn.closed


async def test_expect_100_continue_not_sent_when_app_does_not_read(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app())
    out = await conn.exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    # The client may still send its body or not: the connection cannot be reused.
    assert out == response(
        b"200 OK", b"content-length: 13\r\nconnection: close\r\n", b"Hello, world!"
    )
    assert conn.closed


async def test_expect_100_continue_not_sent_when_body_already_here(http_backend: str) -> None:
    messages: list[Message] = []
    conn = Conn(http_backend, body_recorder(messages))
    out = await conn.exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd"
    )
    assert out == response(b"200 OK", b"content-length: 4\r\n", b"abcd")


async def test_disconnect_after_response_complete(http_backend: str) -> None:
    after: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
        after.append(await receive())
        after.append(await receive())

    conn = Conn(http_backend, app)
    assert await conn.exchange(GET) == NO_CONTENT
    assert after == [{"type": "http.disconnect"}] * 2
    assert not conn.closed


async def test_disconnect_when_client_goes_away(http_backend: str) -> None:
    messages: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        messages.append(await receive())  # the body
        messages.append(await receive())  # waits: the client leaves

    conn = Conn(http_backend, app)
    conn.feed(GET)
    await until(lambda: messages)
    await asyncio.sleep(0)
    assert len(messages) == 1
    conn.transport.close()  # the peer is gone
    await conn.settle()
    assert messages[1] == {"type": "http.disconnect"}
    assert conn.transport.take() == b""


def record_until_disconnect(messages: list[Message]) -> App:
    """An app that only reads, keeping every message, until ``http.disconnect``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect":
                return

    return app


async def test_disconnect_while_body_incomplete(http_backend: str) -> None:
    messages: list[Message] = []
    app = record_until_disconnect(messages)
    conn = Conn(http_backend, app)
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    await until(lambda: messages)
    conn.transport.close()
    await conn.settle()
    assert messages == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
    ]


async def test_half_close_after_request_is_answered(http_backend: str) -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await plain_app()(scope, receive, send)

    conn = Conn(http_backend, app)
    conn.feed(GET)
    await until(lambda: conn.state.tasks)
    conn.proto.eof_received()  # the client shut down its sending side
    release.set()
    await conn.settle()
    assert conn.transport.take() == response(
        b"200 OK", b"content-length: 13\r\nconnection: close\r\n", b"Hello, world!"
    )
    assert conn.closed


async def test_half_close_during_streamed_response_closes_after_it(http_backend: str) -> None:
    # The head already went out with keep-alive; the client then shut down its sending
    # side. Once the response is complete nothing more is owed: close, do not linger.
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"end"})

    conn = Conn(http_backend, app)
    conn.feed(GET)
    await until(lambda: conn.transport.buffer)
    assert conn.proto.eof_received() is True  # keep writing: the response is not done
    release.set()
    await conn.settle()
    assert conn.transport.take() == response(
        b"200 OK", b"transfer-encoding: chunked\r\n", b"4\r\npart\r\n3\r\nend\r\n0\r\n\r\n"
    )
    assert conn.closed


async def test_eof_mid_body_disconnects_and_closes(http_backend: str) -> None:
    messages: list[Message] = []
    app = record_until_disconnect(messages)
    conn = Conn(http_backend, app)
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    await until(lambda: messages)
    keep_open = conn.proto.eof_received()
    await conn.settle()
    assert messages[-1] == {"type": "http.disconnect"}
    # The request was cut short and the app has finished: nothing is left to send, so
    # the connection must not linger half-open.
    assert conn.closed or not keep_open, "connection left open after the client left"
    assert conn.transport.take() == b""


# -- responses ---------------------------------------------------------------------------


async def test_whole_body_gets_content_length(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(b"abc", headers=[(b"content-type", b"text/plain")]))
    assert await conn.exchange(GET) == response(
        b"200 OK", b"content-type: text/plain\r\ncontent-length: 3\r\n", b"abc"
    )


async def test_app_content_length_kept(http_backend: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
        )
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cde"})

    conn = Conn(http_backend, app)
    assert await conn.exchange(GET) == response(b"200 OK", b"content-length: 5\r\n", b"abcde")
    assert not conn.closed


def streaming_app(*chunks: bytes) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


async def test_streaming_is_chunked(http_backend: str) -> None:
    conn = Conn(http_backend, streaming_app(b"a", b"", b"b" * 17))
    out = await conn.exchange(GET)
    assert out == response(
        b"200 OK",
        b"transfer-encoding: chunked\r\n",
        b"1\r\na\r\n11\r\nbbbbbbbbbbbbbbbbb\r\n0\r\n\r\n",
    )
    assert not conn.closed
    # head and first chunk leave in one write
    assert conn.transport.writes[0].endswith(b"1\r\na\r\n")


async def test_http10_streaming_is_close_delimited(http_backend: str) -> None:
    conn = Conn(http_backend, streaming_app(b"ab", b"cd"))
    out = await conn.exchange(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert out == response(b"200 OK", b"connection: close\r\n", b"abcd")
    assert conn.closed


async def test_head_has_no_body(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(headers=[(b"content-length", b"13")]))
    out = await conn.exchange(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out == response(b"200 OK", b"content-length: 13\r\n")
    assert not conn.closed
    assert await conn.exchange(GET) == HELLO


@pytest.mark.parametrize(("status", "line"), [(204, b"204 No Content"), (304, b"304 Not Modified")])
async def test_204_304_have_no_body(http_backend: str, status: int, line: bytes) -> None:
    conn = Conn(http_backend, plain_app(b"", status=status, headers=[(b"etag", b'"x"')]))
    assert await conn.exchange(GET) == response(line, b'etag: "x"\r\n')
    assert not conn.closed
    assert await conn.exchange(GET) == response(line, b'etag: "x"\r\n')


@pytest.mark.parametrize(("declared", "sent"), [(b"10", b"abc"), (b"2", b"abc")])
async def test_content_length_mismatch_closes(
    http_backend: str, declared: bytes, sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", declared)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": sent})

    conn = Conn(http_backend, app)
    out = await conn.exchange(GET)
    assert conn.closed
    # never more bytes than announced: they would be read as the next response
    assert len(out.partition(b"\r\n\r\n")[2]) <= int(declared)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "the app error must be logged"
    assert "Content-Length" in str(errors[0].exc_info[1] if errors[0].exc_info else errors[0])


@pytest.mark.parametrize(
    "header",
    [(b"bad header", b"x"), (b"x-ok", b"line\r\nbreak"), (b"", b"x"), (b"x-nul", b"a\x00b")],
)
async def test_invalid_app_header_is_500(
    http_backend: str, header: tuple[bytes, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    conn = Conn(http_backend, plain_app(b"secret", headers=[header]))
    out = await conn.exchange(GET)
    assert out == INTERNAL_ERROR
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_app_headers_may_be_any_iterable(http_backend: str) -> None:
    # The ASGI spec asks for an iterable of pairs: a generator is read once, whole.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = ((name, value) for name, value in [(b"x-a", b"1"), [b"x-b", b"2"]])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x"})

    conn = Conn(http_backend, app)
    assert await conn.exchange(GET) == response(
        b"200 OK", b"x-a: 1\r\nx-b: 2\r\ncontent-length: 1\r\n", b"x"
    )


async def test_app_server_and_date_not_duplicated(http_backend: str) -> None:
    from tricorn.protocols.state import ServerState

    state = ServerState(server_header=True, date_header=True)
    headers = [(b"Server", b"mine"), (b"Date", b"Thu, 01 Jan 1970 00:00:00 GMT")]
    conn = Conn(http_backend, plain_app(b"x", headers=headers), state=state)
    out = await conn.exchange(GET)
    assert out == (
        b"HTTP/1.1 200 OK\r\nServer: mine\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        b"content-length: 1\r\n\r\nx"
    )
    # Only the date from the app: the default server header still comes
    conn2 = Conn(http_backend, plain_app(b"x", headers=headers[1:]), state=state)
    out = await conn2.exchange(GET)
    assert out == (
        b"HTTP/1.1 200 OK\r\nserver: tricorn\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        b"content-length: 1\r\n\r\nx"
    )


async def test_default_date_header(http_backend: str) -> None:
    from tricorn.protocols.state import ServerState

    state = ServerState(server_header=False, date_header=True)
    conn = Conn(http_backend, plain_app(b"x"), state=state)
    out = await conn.exchange(GET)
    assert re.fullmatch(
        rb"HTTP/1\.1 200 OK\r\ndate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n"
        rb"content-length: 1\r\n\r\nx",
        out,
    ), out


async def test_extra_headers(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(b"x"), headers=[("X-A", "1"), ("X-B", "two words")])
    assert await conn.exchange(GET) == response(
        b"200 OK", b"x-a: 1\r\nx-b: two words\r\ncontent-length: 1\r\n", b"x"
    )


async def test_no_server_header(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(b"x"), server_header=False)
    assert await conn.exchange(GET) == b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"


async def test_send_waits_while_writing_paused(http_backend: str) -> None:
    steps: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        steps.append("first sent")
        await send({"type": "http.response.body", "body": b"b", "more_body": True})
        steps.append("second sent")
        await send({"type": "http.response.body", "body": b""})

    conn = Conn(http_backend, app)
    conn.proto.pause_writing()
    conn.feed(GET)
    await until(lambda: conn.transport.buffer)
    for _ in range(50):
        await asyncio.sleep(0)
    # the chunk is handed to the transport, then send() waits for the buffer to drain
    assert conn.transport.take() == response(
        b"200 OK", b"transfer-encoding: chunked\r\n", b"1\r\na\r\n"
    )
    assert steps == [], "send() must wait while the transport is paused"
    conn.proto.resume_writing()
    await conn.settle()
    assert steps == ["first sent", "second sent"]
    assert conn.transport.take() == b"1\r\nb\r\n0\r\n\r\n"


async def test_paused_send_fails_when_client_leaves(http_backend: str) -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
        except OSError as exc:
            errors.append(exc)

    conn = Conn(http_backend, app)
    conn.proto.pause_writing()
    conn.feed(GET)
    await until(lambda: conn.transport.buffer)
    conn.transport.close()
    await conn.settle()
    assert len(errors) == 1


async def test_send_after_connection_lost_raises_oserror(http_backend: str) -> None:
    gone = asyncio.Event()
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await gone.wait()
        try:
            await send({"type": "http.response.start", "status": 200})
        except OSError as exc:
            errors.append(exc)

    conn = Conn(http_backend, app)
    conn.feed(GET)
    await asyncio.sleep(0)
    conn.transport.close()
    await until(lambda: conn.transport.lost)
    gone.set()
    await conn.settle()
    assert len(errors) == 1
    assert conn.transport.take() == b""


# -- errors ------------------------------------------------------------------------------


async def test_exception_before_start_is_500(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom: secret detail")

    conn = Conn(http_backend, app)
    assert await conn.exchange(GET) == INTERNAL_ERROR
    assert "Exception in ASGI application" in caplog.text
    assert "secret detail" in caplog.text  # logged, never sent


@pytest.mark.parametrize("sent_body", [False, True])
async def test_exception_after_start_closes(
    http_backend: str, sent_body: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        if sent_body:
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("boom")

    conn = Conn(http_backend, app)
    out = await conn.exchange(GET)
    assert conn.closed
    if sent_body:
        assert out == response(b"200 OK", b"transfer-encoding: chunked\r\n", b"4\r\npart\r\n")
    else:
        assert out == b""
    assert "Exception in ASGI application" in caplog.text


async def test_return_without_response_is_500(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    conn = Conn(http_backend, app)
    assert await conn.exchange(GET) == INTERNAL_ERROR
    assert "returned without starting response" in caplog.text


@pytest.mark.parametrize("sent_body", [False, True])
async def test_return_without_completing_closes(
    http_backend: str, sent_body: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        if sent_body:
            await send({"type": "http.response.body", "body": b"part", "more_body": True})

    conn = Conn(http_backend, app)
    await conn.exchange(GET)
    assert conn.closed
    assert "returned without completing response" in caplog.text


async def test_wrong_first_message_is_500(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"x"})

    conn = Conn(http_backend, app)
    assert await conn.exchange(GET) == INTERNAL_ERROR


async def test_app_returning_a_value_closes(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
        return 42

    # without the proxy-headers middleware between the protocol and the app
    conn = Conn(http_backend, app, proxy_headers=False)
    assert await conn.exchange(GET) == NO_CONTENT
    assert "should return None" in caplog.text
    assert conn.closed


async def test_limit_concurrency_503(http_backend: str, caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    first = Conn(http_backend, app, limit_concurrency=1)
    first.feed(GET)
    await until(lambda: first.state.tasks)
    second = Conn(http_backend, app, limit_concurrency=1, state=first.state)
    second.feed(GET)
    await until(lambda: second.closed)
    assert second.transport.take() == response(
        b"503 Service Unavailable",
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: 19\r\nconnection: close\r\n",
        b"Service Unavailable",
    )
    assert "Exceeded concurrency limit" in caplog.text
    release.set()
    await first.settle()
    assert first.transport.take() == NO_CONTENT


# -- timeouts and shutdown ---------------------------------------------------------------


async def test_keep_alive_timeout(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(), timeout_keep_alive=5)
    await conn.exchange(GET)
    done = conn.loop.time()
    conn.proto.on_tick(done + 4)
    assert not conn.closed
    conn.proto.on_tick(conn.loop.time() + 5.5)
    assert conn.closed
    await until(lambda: conn.transport.lost)


async def test_keep_alive_timeout_fresh_connection(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(), timeout_keep_alive=5)
    conn.proto.on_tick(conn.loop.time() + 4)
    assert not conn.closed
    conn.proto.on_tick(conn.loop.time() + 6)
    assert conn.closed


async def test_no_timeout_while_request_runs(http_backend: str) -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    conn = Conn(http_backend, app, timeout_keep_alive=1)
    conn.feed(GET)
    await until(lambda: conn.state.tasks)
    conn.proto.on_tick(conn.loop.time() + 1000)
    assert not conn.closed
    release.set()
    await conn.settle()
    assert conn.transport.take() == NO_CONTENT
    conn.proto.on_tick(conn.loop.time() + 0.5)
    assert not conn.closed
    conn.proto.on_tick(conn.loop.time() + 2)
    assert conn.closed


async def test_shutdown_in_flight_response_closes(http_backend: str) -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    conn = Conn(http_backend, app)
    conn.feed(GET)
    await until(lambda: conn.state.tasks)
    conn.proto.shutdown()
    assert not conn.closed
    release.set()
    await conn.settle()
    assert conn.transport.take() == response(b"204 No Content", b"connection: close\r\n")
    assert conn.closed


async def test_shutdown_idle_connection_answers_next_request(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(b"x"))
    assert await conn.exchange(GET) == response(b"200 OK", b"content-length: 1\r\n", b"x")
    conn.proto.shutdown()
    await asyncio.sleep(0)
    assert not conn.closed, "a request may be on its way: keep the idle connection"
    out = await conn.exchange(GET)
    assert out == response(b"200 OK", b"content-length: 1\r\nconnection: close\r\n", b"x")
    assert conn.closed


async def test_shutdown_idle_connection_keep_alive_timeout(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(b"x"), timeout_keep_alive=5)
    await conn.exchange(GET)
    conn.proto.shutdown()
    conn.proto.on_tick(conn.loop.time() + 1)
    assert not conn.closed
    conn.proto.on_tick(conn.loop.time() + 6)
    assert conn.closed


async def test_shutdown_with_pipelined_requests(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(b"x"))
    conn.proto.shutdown()
    out = await conn.exchange(GET + GET)
    # what the client already sent is answered; only the last says close
    assert out == response(b"200 OK", b"content-length: 1\r\n", b"x") + response(
        b"200 OK", b"content-length: 1\r\nconnection: close\r\n", b"x"
    )
    assert conn.closed


# -- access log --------------------------------------------------------------------------


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tricorn.access"]


async def test_access_log_one_record_per_response(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tricorn.access")
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"de"})

    conn = Conn(http_backend, app)
    conn.feed(b"POST /p/q?x=1&y=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await until(lambda: conn.transport.buffer)
    assert access_records(caplog) == [], "logged when the response completes, not before"
    release.set()
    await conn.settle()
    [record] = access_records(caplog)
    assert record.levelno == logging.INFO
    assert record.args == ("127.0.0.1:50000", "POST", "/p/q?x=1&y=2", "1.1", 201)
    assert record.getMessage() == '127.0.0.1:50000 - "POST /p/q?x=1&y=2 HTTP/1.1" 201'
    duration: Any = record.__dict__["duration"]
    assert isinstance(duration, float)
    assert duration >= 0
    assert record.__dict__["size"] == 5

    await conn.exchange(b"GET / HTTP/1.0\r\n\r\n")
    records = access_records(caplog)
    assert len(records) == 2
    assert records[1].args == ("127.0.0.1:50000", "GET", "/", "1.0", 201)


async def test_access_log_root_path_ipv6_and_unix(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tricorn.access")
    conn = Conn(http_backend, plain_app(), peername=("::1", 4000, 0, 0), root_path="/api")
    await conn.exchange(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    conn = Conn(http_backend, plain_app(), peername="", sockname="/tmp/t.sock")
    await conn.exchange(b"GET /y HTTP/1.1\r\nHost: x\r\n\r\n")
    args = [r.args for r in access_records(caplog)]
    assert args == [("[::1]:4000", "GET", "/api/x", "1.1", 200), ("", "GET", "/y", "1.1", 200)]


async def test_access_log_names_the_forwarded_client(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As uvicorn: behind a trusted proxy the log shows the client, not the proxy.
    caplog.set_level(logging.INFO, logger="tricorn.access")
    settings = {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1"}
    conn = Conn(http_backend, plain_app(), **settings)
    head = b"GET /f HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
    await conn.exchange(head)
    untrusted = Conn(http_backend, plain_app(), peername=("192.0.2.1", 4000), **settings)
    await untrusted.exchange(head)
    args = [r.args for r in access_records(caplog)]
    assert args == [("203.0.113.7:0", "GET", "/f", "1.1", 200)] + [
        ("192.0.2.1:4000", "GET", "/f", "1.1", 200)
    ]


async def test_access_log_escapes_target(
    http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tricorn.access")
    conn = Conn(http_backend, plain_app())
    await conn.exchange(b'GET /a"b\\c?q="x" HTTP/1.1\r\nHost: x\r\n\r\n')
    [record] = access_records(caplog)
    assert isinstance(record.args, tuple)
    path = record.args[2]
    assert path == "/a\\x22b\\x5cc?q=\\x22x\\x22"
    message = record.getMessage()
    assert message.count('"') == 2, "the request cannot close the quoted request line"


@pytest.mark.parametrize("target", [b"/a\x1b[31mb", b"/caf\xc3\xa9", b"/a\x7fb"])
async def test_raw_unsafe_target_is_refused_and_never_logged_raw(
    http_backend: str, target: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tricorn")
    conn = Conn(http_backend, plain_app())
    out = await conn.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert access_records(caplog) == []
    for record in caplog.records:
        message = record.getMessage()
        assert message.isascii() and message.isprintable(), message


@pytest.fixture
def restore_access_logger() -> Iterator[None]:
    # Config(access_log=False) may silence "tricorn.access" process-wide.
    access = logging.getLogger("tricorn.access")
    saved = (access.handlers[:], access.propagate, access.level, access.disabled)
    yield
    access.handlers[:], access.propagate, access.level, access.disabled = saved


@pytest.mark.usefixtures("restore_access_logger")
async def test_access_log_off(http_backend: str) -> None:
    conn = Conn(http_backend, plain_app(), access_log=False)
    # Listen on the logger itself, so the test sees records whatever Config did to it.
    access = logging.getLogger("tricorn.access")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.disabled = False
    try:
        await conn.exchange(GET)
        assert records == []
        # the same logger does get records from a connection with the access log on
        await Conn(http_backend, plain_app()).exchange(GET)
        assert len(records) == 1
    finally:
        access.removeHandler(handler)


@pytest.mark.parametrize(
    "body",
    [
        b"Content-Length: 5\r\n\r\nhello",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
)
async def test_upgrade_served_as_http_keeps_its_body_even_byte_by_byte(
    http_backend: str, body: bytes
) -> None:
    # An upgrade we do not perform (h2c) is a plain request, body included, and the bytes
    # after it are the next request, however the bytes are split.
    received: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more_body = True
        while more_body:
            message = await receive()
            body += message["body"]
            more_body = message["more_body"]
        received.append(body)
        await plain_app()(scope, receive, send)

    request = (
        b"POST /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n" + body
    )
    conn = Conn(http_backend, app, ws="none")
    whole = await conn.exchange(request + GET)
    conn_pieces = Conn(http_backend, app, ws="none")
    pieces = await conn_pieces.bytewise(request + GET)
    assert received == [b"hello", b"", b"hello", b""]
    assert whole == pieces == response(b"200 OK", b"content-length: 13\r\n", b"Hello, world!") * 2


async def test_receive_works_after_a_cancelled_receive(http_backend: str) -> None:
    # Starlette's is_disconnected() cancels a pending receive(); the next one must still work.
    received: list[Message] = []
    timed_out: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.wait_for(receive(), 0.01)  # no body yet: cancelled while waiting
        except asyncio.TimeoutError:
            timed_out.append(True)
        received.append(await receive())
        await plain_app()(scope, receive, send)

    conn = Conn(http_backend, app)
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
    await until(lambda: timed_out)
    conn.feed(b"abc")
    await conn.settle()
    assert received == [{"type": "http.request", "body": b"abc", "more_body": False}]


async def test_trailers_never_reach_the_scope_headers(http_backend: str) -> None:
    # Trailer fields come after the body, unchecked by any proxy: not request headers.
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["more_body"]:
            pass
        seen.append(list(scope["headers"]))
        await plain_app()(scope, receive, send)

    conn = Conn(http_backend, app)
    await conn.exchange(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nAuthorization: Bearer x\r\n\r\n"
    )
    assert seen == [[(b"host", b"a"), (b"transfer-encoding", b"chunked")]]


@pytest.mark.parametrize(
    ("header", "closes"),
    [(b"x-closed", False), (b"keep-alive, close", True), (b"Close", True), (b"closer", False)],
)
async def test_connection_header_is_read_as_tokens(
    http_backend: str, header: bytes, closes: bool
) -> None:
    conn = Conn(http_backend, plain_app())
    await conn.exchange(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: " + header + b"\r\n\r\n")
    assert conn.closed is closes


async def test_app_content_length_must_be_digits(http_backend: str) -> None:
    # int() would take b"1_0" as 10 while the header went out as "1_0".
    conn = Conn(http_backend, plain_app(b"0123456789", headers=[(b"content-length", b"1_0")]))
    assert await conn.exchange(GET) == INTERNAL_ERROR
