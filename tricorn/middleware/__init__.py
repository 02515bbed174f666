"""ASGI middleware Tricorn wraps around the app in ``Config.load()``.

Order, inside out: interface adapter (asgi2 / wsgi), trace message logger (log level
trace), proxy headers (``proxy_headers``). The types below are the loose ASGI shapes the
middleware need; apps are duck-typed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]
