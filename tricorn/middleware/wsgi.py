"""Serve a WSGI app through a2wsgi.

a2wsgi runs the WSGI callable in a thread pool and translates the HTTP cycle. This wrapper
keeps the rules Tricorn promises on top: a WSGI app never sees a WebSocket scope (the
handshake is refused before accept) and the lifespan protocol is answered here, so the
WSGI app is only ever called for HTTP requests.
"""

from __future__ import annotations

from typing import Any

from tricorn.middleware import Receive, Scope, Send


class WSGIMiddleware:
    """ASGI 3 app serving the WSGI callable ``app`` (``environ, start_response``)."""

    def __init__(self, app: Any, workers: int = 10) -> None:
        from a2wsgi import WSGIMiddleware as A2WSGIMiddleware

        self.app = app
        self._http: Any = A2WSGIMiddleware(app, workers=workers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            # Closing before accepting refuses the handshake (HTTP 403 to the client).
            await send({"type": "websocket.close", "code": 1000})
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
