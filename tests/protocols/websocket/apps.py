"""Apps for WebSocket tests through the real CLI (``tests.protocols.websocket.apps:<name>``).

* ``recorder``: accepts every WebSocket, sends the worker's pid as the first message, then
  echoes; when it receives ``websocket.disconnect`` it prints
  ``ws-disconnect pid=<pid> code=<code>`` (stdout, read by the test from the server log).
  HTTP requests get 200 with the worker's pid.
"""

from __future__ import annotations

import os
from typing import Any


async def recorder(scope: dict[str, Any], receive: Any, send: Any) -> None:
    pid = str(os.getpid())
    if scope["type"] == "http":
        body = pid.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": pid})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            print(f"ws-disconnect pid={pid} code={message['code']}", flush=True)
            return
        await send(
            {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
        )
