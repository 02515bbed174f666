"""The smallest useful ASGI 3 app: ``tricorn examples.hello:app``.

Answers every HTTP request with ``Hello, world!`` and takes part in the lifespan protocol,
so the server logs a clean startup and shutdown.
"""

from __future__ import annotations

from typing import Any

BODY = b"Hello, world!"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"  # WebSockets arrive with a later issue
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
