"""Log every ASGI message at TRACE level (``--log-level trace``).

Bodies never reach the log: ``body``/``bytes`` become ``<N bytes>``, ``text`` becomes
``<N chars>`` and scope headers ``<...>``, so traces are safe to share and cheap to write.
"""

from __future__ import annotations

import logging
from typing import Any

from tricorn.logs import TRACE_LOG_LEVEL
from tricorn.middleware import ASGIApp, Message, Receive, Scope, Send

_PLACEHOLDERS = {
    "body": "<{} bytes>",
    "bytes": "<{} bytes>",
    "text": "<{} chars>",
    "headers": "<...>",
}


def message_with_placeholders(message: Any) -> dict[str, Any]:
    """A shallow copy of ``message`` with contents replaced by their size."""
    shown = dict(message)
    for key, placeholder in _PLACEHOLDERS.items():
        value = message.get(key)
        if value is not None:
            shown[key] = placeholder.format(len(value))
    return shown


class MessageLoggerMiddleware:
    """Wrap ``app`` so every scope, received and sent message is logged on ``tricorn.asgi``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.task_counter = 0
        self.logger = logging.getLogger("tricorn.asgi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.task_counter += 1
        task = self.task_counter
        client = scope.get("client")
        prefix = f"{client[0]}:{client[1]} - ASGI" if client else "ASGI"
        log = self.logger.log

        async def logged_receive() -> Message:
            message = await receive()
            log(
                TRACE_LOG_LEVEL,
                "%s [%d] Receive %s",
                prefix,
                task,
                message_with_placeholders(message),
            )
            return message

        async def logged_send(message: Message) -> None:
            log(
                TRACE_LOG_LEVEL, "%s [%d] Send %s", prefix, task, message_with_placeholders(message)
            )
            await send(message)

        log(
            TRACE_LOG_LEVEL,
            "%s [%d] Started scope=%s",
            prefix,
            task,
            message_with_placeholders(scope),
        )
        try:
            await self.app(scope, logged_receive, logged_send)
        except BaseException:
            log(TRACE_LOG_LEVEL, "%s [%d] Raised exception", prefix, task)
            raise
        log(TRACE_LOG_LEVEL, "%s [%d] Completed", prefix, task)
