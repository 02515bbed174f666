"""Run an ASGI 2 ("double callable") app as an ASGI 3 app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tricorn.middleware import Receive, Scope, Send

ASGI2App = Callable[[Scope], Callable[[Receive, Send], Awaitable[None]]]


class ASGI2Middleware:
    """Wrap an ASGI 2 app: ``app(scope)`` returns an instance awaited with (receive, send)."""

    __slots__ = ("app",)

    def __init__(self, app: ASGI2App | Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self.app(scope)
        await instance(receive, send)
