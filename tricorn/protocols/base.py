"""What every connection does the same way, whatever its wire protocol.

``BaseConnection`` is the ``asyncio.Protocol`` each framing (``http1``, later ``http2``)
subclasses: the settings read once per connection, the transport and its addresses, write
back-pressure (``pause_writing``/``resume_writing``/``drain``) and starting the app's
task. It is also the context the ASGI streams (``protocols.asgi``) read: the app's
addresses and state, the access-log switch, the loop. Protocol rules live in the framings
and the streams; nothing here knows HTTP or WebSocket.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any, cast

from tricorn.config import Config
from tricorn.logs import TRACE_LOG_LEVEL
from tricorn.protocols.state import ServerState
from tricorn.protocols.utils import (
    Wakeup,
    format_addr,
    get_local_addr,
    get_remote_addr,
    is_ssl,
)

logger = logging.getLogger("tricorn.error")
access_logger = logging.getLogger("tricorn.access")


class BaseConnection(asyncio.Protocol):
    """Shared per-connection state; subclasses add their framing's rules."""

    __slots__ = (
        "config",
        "app",
        "loop",
        "server_state",
        "app_state",
        "root_path",
        "raw_root_path",
        "access_log",
        "trace",
        "reset_contextvars",
        "asgi",
        "transport",
        "server",
        "client",
        "client_addr",
        "tls",
        "writing_paused",
        "drained",
        "shutting_down",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.root_path: str = config.root_path
        self.raw_root_path = self.root_path.encode()
        # Level checks once per connection, not per line.
        self.access_log = bool(config.access_log) and access_logger.isEnabledFor(logging.INFO)
        self.trace = logger.isEnabledFor(TRACE_LOG_LEVEL)
        self.reset_contextvars = config.reset_contextvars
        self.asgi = {"version": config.asgi_version, "spec_version": "2.4"}

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.client_addr = ""
        self.tls = False
        self.writing_paused = False
        self.drained = Wakeup()
        self.shutting_down = False
        self.setup()

    def setup(self) -> None:
        """The subclass's own per-connection state (called at the end of ``__init__``)."""

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport (from ``connection_made``) and register with the server."""
        # uvloop's transports do not subclass asyncio.Transport, hence a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)
        self.server_state.connections.add(self)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.client_addr = format_addr(self.client)
        self.tls = is_ssl(transport)

    def detach(self) -> None:
        """The connection is gone (from ``connection_lost``): unregister, free writers."""
        self.server_state.connections.discard(self)
        self.resume_writing()

    def start_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run the app's coroutine as a task the server waits for on shutdown."""
        if self.reset_contextvars:
            task = contextvars.Context().run(self.loop.create_task, coro)
        else:
            task = self.loop.create_task(coro)
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def write(self, data: bytes) -> None:
        """Write unless the transport is closing (a peer reset before connection_lost)."""
        if data and not self.transport.is_closing():
            self.transport.write(data)

    # -- called by the server (ServerState.tick and graceful shutdown) -------------------

    def shutdown(self) -> None:
        """Stop taking new work; finish what the client already sent, then close."""
        raise NotImplementedError

    def on_tick(self, now: float) -> None:
        """About once a second: enforce timeouts against ``now`` (loop time)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the transport now (what is buffered is still written)."""
        if not self.transport.is_closing():
            self.transport.close()

    # -- write back-pressure ------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.drained.wake()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self.writing_paused and not self.transport.is_closing():
            await self.drained.wait()
