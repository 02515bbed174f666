"""The echo app the RFC 6455 conformance run (Autobahn|Testsuite) talks to.

Every WebSocket message comes back as it arrived: text as text, binary as binary. Plain
HTTP requests get a short 404 so a stray browser or health check does not crash the run.
The size limit is the server's (``--ws-max-size``, 16 MiB by default), which is exactly
what Autobahn's largest limits cases (9.x) send.
"""

from __future__ import annotations

from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"WebSocket echo only\n"})
    else:
        await echo(receive, send)


async def echo(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
