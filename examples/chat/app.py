"""A chat room in plain ASGI: one HTML page and one WebSocket that broadcasts to everyone.

Run it with ``tricorn examples.chat.app:app`` and open http://127.0.0.1:8000/ in two
browser tabs. Each line typed in one tab appears in every tab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

PAGE = (Path(__file__).parent / "index.html").read_bytes()

Scope = dict[str, Any]
Message = dict[str, Any]


class ChatRoom:
    """The connected members: a send callable each, keyed by a number."""

    def __init__(self) -> None:
        self.members: dict[int, Any] = {}
        self.next_id = 0

    async def broadcast(self, text: str) -> None:
        for member, send in list(self.members.items()):
            try:
                await send({"type": "websocket.send", "text": text})
            except OSError:  # that member's connection is gone
                self.members.pop(member, None)


room = ChatRoom()


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await page(scope, send)
    elif scope["path"] == "/ws":
        await chat(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 1008})


async def page(scope: Scope, send: Any) -> None:
    if scope["path"] == "/":
        status, body, kind = 200, PAGE, b"text/html; charset=utf-8"
    else:
        status, body, kind = 404, b"Not Found", b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def chat(scope: Scope, receive: Any, send: Any) -> None:
    query = parse_qs(scope["query_string"].decode("latin-1"))
    name = (query.get("name") or ["anonymous"])[0][:32]
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    member = room.next_id
    room.next_id += 1
    room.members[member] = send
    await room.broadcast(json.dumps({"from": "server", "text": f"{name} joined"}))
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text:
                await room.broadcast(json.dumps({"from": name, "text": text[:1000]}))
    finally:
        room.members.pop(member, None)
        await room.broadcast(json.dumps({"from": "server", "text": f"{name} left"}))
