"""An ASGI 2 ("double callable") app: ``tricorn examples.asgi2_app:App --interface asgi2``.

ASGI 2 apps are classes (or functions) called once with the scope, returning the coroutine
function that gets ``receive`` and ``send``. ``--interface auto`` recognises a class as
ASGI 2 too.
"""

from __future__ import annotations

from typing import Any


class App:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                reply = {
                    "lifespan.startup": "lifespan.startup.complete",
                    "lifespan.shutdown": "lifespan.shutdown.complete",
                }[message["type"]]
                await send({"type": reply})
                if message["type"] == "lifespan.shutdown":
                    return
        # Read the whole request body, then say how much arrived.
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            size += len(message.get("body", b""))
            more_body = message.get("more_body", False)
        body = f"ASGI 2: {self.scope['method']} {self.scope['path']} ({size} bytes)".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})


app = App
