"""ASGI lifespan protocol (spec 2.0): startup before serving, shutdown after.

Theory of operation: the app is called once with a ``lifespan`` scope, in a task of its own
that lives from startup to shutdown. ``startup()`` queues ``lifespan.startup`` and waits
until the app answers (``complete`` or ``failed``) or its call ends; ``shutdown()`` does the
same for ``lifespan.shutdown``. The app's answers are checked against the order the spec
allows, so a misbehaving app gets a clear error instead of a hang.

Modes (``--lifespan``): ``auto`` treats an app that fails before answering startup as one
that does not speak lifespan and carries on serving; ``on`` makes that a startup failure;
``off`` never calls the app (``LifespanOff``).

``state`` is the dict handed to the app in the lifespan scope; every request later gets a
shallow copy of it in ``scope["state"]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any, NoReturn

from tricorn.config import Config

logger = logging.getLogger("tricorn.error")

Message = MutableMapping[str, Any]

# How long shutdown() lets the app's lifespan call return after it answered shutdown,
# before cancelling it (an app may keep awaiting receive() forever).
_RETURN_GRACE = 1.0


class LifespanProtocolError(RuntimeError):
    """The app sent a lifespan message the protocol does not allow at that point."""


class LifespanOff:
    """``--lifespan off``: the app is never called with a lifespan scope."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state: dict[str, Any] = {}
        self.should_exit = False

    async def startup(self) -> None:
        """Nothing to start."""

    async def shutdown(self) -> None:
        """Nothing to stop."""


class LifespanOn:
    """``--lifespan on|auto``: run the app's lifespan protocol around serving.

    Call ``await startup()`` before accepting connections; if ``should_exit`` is then True
    the startup failed (already logged) and the server must not serve (exit code 3). Call
    ``await shutdown()`` once serving stopped.
    """

    def __init__(self, config: Config) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.state: dict[str, Any] = {}
        self.should_exit = False
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # What the app has been sent / has answered so far; see send().
        self._startup_sent = False
        self._startup_answered = False
        self._shutdown_sent = False
        self._shutdown_answered = False
        self._startup_failed = False
        self._shutdown_failed = False
        # The app's lifespan call ended (returned or raised); nothing more will be answered.
        self._ended = False
        self._error = False
        # A message sent out of order: always a failure, whatever the mode.
        self._protocol_error: LifespanProtocolError | None = None
        self._answered = asyncio.Event()

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer."""
        logger.info("Waiting for application startup.")
        self._task = asyncio.create_task(self._main())
        await self._request({"type": "lifespan.startup"})
        failed = self._startup_failed or self._protocol_error is not None
        if failed or (self._error and self.config.lifespan == "on"):
            logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app's answer (skipped if it ended)."""
        if self._ended or self._task is None:
            return
        logger.info("Waiting for application shutdown.")
        await self._request({"type": "lifespan.shutdown"})
        if self._shutdown_failed or self._error:
            logger.error("Application shutdown failed. Exiting.")
        else:
            logger.info("Application shutdown complete.")
        await self._finish()

    async def _request(self, message: Message) -> None:
        # Queue one event for the app and wait until it answers or its call ends.
        self._answered.clear()
        if message["type"] == "lifespan.startup":
            self._startup_sent = True
        else:
            self._shutdown_sent = True
        self._queue.put_nowait(message)
        await self._answered.wait()

    async def _finish(self) -> None:
        # Give the app's call a moment to return on its own, then cancel it.
        task = self._task
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=_RETURN_GRACE)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.config.loaded_app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = True
            if self._protocol_error is not None:
                logger.error("%s", self._protocol_error)
            elif self._startup_failed or self._shutdown_failed:
                pass  # already reported through the failed event; its message was logged
            elif self.config.lifespan == "auto" and not self._startup_answered:
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        else:
            if not self._startup_answered:
                # Returned without answering: the app ignores lifespan; carry on without it.
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
        finally:
            self._ended = True
            self._answered.set()

    async def _receive(self) -> Message:
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            self._check_order(kind, "startup", self._startup_sent, self._startup_answered)
            self._startup_answered = True
            if kind == "lifespan.startup.failed":
                self._startup_failed = True
                self._log_failure(message)
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self._check_order(kind, "shutdown", self._shutdown_sent, self._shutdown_answered)
            self._shutdown_answered = True
            if kind == "lifespan.shutdown.failed":
                self._shutdown_failed = True
                self._log_failure(message)
        else:
            self._fail(
                f"ASGI lifespan: unexpected message type {kind!r}; expected one of "
                "'lifespan.startup.complete', 'lifespan.startup.failed', "
                "'lifespan.shutdown.complete', 'lifespan.shutdown.failed'"
            )
        self._answered.set()

    def _check_order(self, kind: str, phase: str, sent: bool, answered: bool) -> None:
        # An answer to a request not sent yet, or a second answer, is a protocol error.
        if not sent or answered:
            self._fail(
                f"ASGI lifespan: unexpected {kind!r}: {phase} was "
                + ("already answered" if answered else "not requested yet")
            )

    def _fail(self, text: str) -> NoReturn:
        # Raised into the app; remembered so the mode cannot turn it into "unsupported".
        self._protocol_error = LifespanProtocolError(text)
        raise self._protocol_error

    @staticmethod
    def _log_failure(message: Message) -> None:
        text = message.get("message")
        if text:
            logger.error("%s", text)
