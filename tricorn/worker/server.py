"""One worker's server: lifespan, listening sockets, the main loop and graceful shutdown.

Theory of operation: ``serve()`` loads the config, runs lifespan startup, starts listening,
then sits in a main loop that wakes every ``_TICK`` seconds. Nothing is armed per request:
the loop calls ``ServerState.tick()`` once a second (Date header, connection timeouts) and
checks the exit conditions (``should_exit``, ``--limit-max-requests``). Shutdown closes the
listeners, asks every connection to finish its in-flight request, waits for them within
``--timeout-graceful-shutdown`` (a second signal / ``force_exit`` stops the wait), cancels
what is left, then runs lifespan shutdown.

Signal handlers (main thread only) only set flags; the main loop does the work. After a
SIGINT-triggered exit the signal is raised again with the original handler restored, so the
caller sees the usual KeyboardInterrupt, as with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

import click

from tricorn.config import Config, ConfigError
from tricorn.protocols.selector import ProtocolSelector
from tricorn.protocols.state import ServerState
from tricorn.worker.lifespan import LifespanOff, LifespanOn

logger = logging.getLogger("tricorn.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Main loop period: how quickly should_exit is noticed; the state ticks once a second.
_TICK = 0.1
# Loop iterations between accept() and connection_made() in asyncio (2), with a margin.
_ACCEPT_SETTLE = 4

_T = TypeVar("_T")

_CYAN_PID = click.style("%d", fg="cyan")


class Server:
    """A single-process ASGI server (uvicorn's ``Server`` API).

    Build it from a ``tricorn.Config`` and call ``run()`` (blocking, creates the event loop)
    or ``await serve()`` from your own loop. Set ``should_exit = True`` to stop gracefully
    and ``force_exit = True`` to stop waiting for in-flight requests. ``started`` becomes
    True once the server listens; if it is still False after ``run()`` returned, startup
    failed (already logged) and a command-line caller should exit with status 3.

    Subclasses may override ``on_started()`` (called once, right after ``started`` became
    True) and set ``announce = False`` to not log "Tricorn running on ..." (a pre-fork
    master logs its addresses once, not once per worker).
    """

    announce = True
    # A single process that stops takes its port with it: an idle keep-alive connection
    # gets this much grace for a request already on its way, not the whole keep-alive
    # timeout (Ctrl+C stays quick). Workers of the master drain exactly (None).
    drain_idle_grace: float | None = 1.0

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = self._new_state()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.lifespan: LifespanOn | LifespanOff | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self._captured_signals: list[int] = []
        self._bound_uds: str | None = None
        # The server's own limits, from the config: a subclass may set them otherwise.
        self.limit_max_requests: int | None = None
        if config.limit_max_requests is not None:
            # The jitter is drawn once, so workers started together recycle at
            # different times.
            jitter = config.limit_max_requests_jitter or 0
            self.limit_max_requests = config.limit_max_requests + random.randint(0, jitter)
        self.timeout_graceful_shutdown: float | None = config.timeout_graceful_shutdown

    def _new_state(self) -> ServerState:
        config = self.config
        return ServerState(
            server_header=config.server_header,
            date_header=config.date_header,
            extra_headers=config.encoded_headers if config.loaded else None,
            drain_idle_grace=self.drain_idle_grace,
        )

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Create an event loop (``--loop``) and serve until asked to exit."""
        _run_in_new_loop(self.serve(sockets=sockets), self.config.get_loop_factory())

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve on ``sockets`` (already bound), or on the configured host/port, uds or fd.

        Returns once shut down, or at once if startup failed (``started`` stays False).
        """
        with self._capture_signals():
            await self._serve(sockets)
        # Re-deliver a SIGINT to the original handler: the caller gets KeyboardInterrupt
        # exactly as if we had not been listening. SIGTERM is handled: exit normally.
        if signal.SIGINT in self._captured_signals:
            signal.raise_signal(signal.SIGINT)

    async def _serve(self, sockets: list[socket.socket] | None) -> None:
        config = self.config
        if not config.loaded:
            config.load()
        self.server_state = self._new_state()
        self.servers = []
        self.lifespan = config.lifespan_class(config)

        pid = os.getpid()
        logger.info(
            "Started server process [%d]",
            pid,
            extra={"color_message": "Started server process [" + _CYAN_PID + "]"},
        )

        await self.lifespan.startup()
        if self.lifespan.should_exit:
            return  # logged by the lifespan; the caller exits with status 3
        try:
            if not await self._listen(sockets):
                await self.lifespan.shutdown()
                return
            self.started = True
            self.on_started()
            await self._main_loop()
            await self._shutdown()
        finally:
            for server in self.servers:
                server.close()
            if self._bound_uds is not None:
                # Only a socket file we created: never one another server listens on.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self._bound_uds)
                self._bound_uds = None
        logger.info(
            "Finished server process [%d]",
            pid,
            extra={"color_message": "Finished server process [" + _CYAN_PID + "]"},
        )

    async def _listen(self, sockets: list[socket.socket] | None) -> bool:
        """Start serving on every listener; False (error logged) if a socket cannot be had."""
        config = self.config
        assert self.lifespan is not None
        loop = asyncio.get_running_loop()
        factory = ProtocolSelector(config, self.server_state, self.lifespan.state)
        if sockets is None:
            try:
                listeners = [config.bind_socket()]
            except (OSError, ConfigError) as exc:
                logger.error("%s", exc)
                return False
            if config.uds is not None:
                self._bound_uds = config.uds
        else:
            listeners = list(sockets)
        for sock in listeners:
            try:
                server = await loop.create_server(
                    factory, sock=sock, ssl=config.ssl, backlog=config.backlog
                )
            except OSError as exc:
                logger.error("%s", exc)
                if sockets is None:
                    sock.close()
                return False
            self.servers.append(server)
            self._log_listening(sock, own=sockets is None)
        return True

    def on_started(self) -> None:
        """Hook: the server listens and lifespan startup is done. Does nothing here."""

    def _log_listening(self, sock: socket.socket, own: bool) -> None:
        if self.announce:
            log_running_on(self.config, sock, own)

    async def _main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.server_state
        config = self.config
        next_tick = loop.time() + 1.0
        last_notified = loop.time()
        while not self.should_exit:
            await asyncio.sleep(_TICK)
            now = loop.time()
            if now >= next_tick:
                next_tick = now + 1.0
                state.tick(now)
                if config.callback_notify is not None and (
                    now - last_notified >= config.timeout_notify
                ):
                    last_notified = now
                    await config.callback_notify()
            limit = self.limit_max_requests
            if limit is not None and state.total_requests >= limit:
                logger.info("Maximum request limit of %d exceeded. Terminating process.", limit)
                break

    async def _shutdown(self) -> None:
        logger.info("Shutting down")
        loop = asyncio.get_running_loop()
        state = self.server_state
        for server in self.servers:
            server.close()
        # asyncio hands an accepted socket to its protocol a couple of loop iterations
        # after accept(): let that happen now, or such a connection would be missing from
        # state.connections, never drained, and reset when the process exits.
        for _ in range(_ACCEPT_SETTLE):
            await asyncio.sleep(0)

        def drained() -> bool:
            # Re-sent on every check: a connection accepted just before the listeners
            # closed gets its protocol after this loop started, and must drain too.
            for conn in list(state.connections):
                conn.shutdown()
            return not state.connections

        timeout = self.timeout_graceful_shutdown
        deadline = None if timeout is None else loop.time() + timeout
        if state.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
        if await self._wait_until(drained, deadline) and state.tasks:
            if not self.force_exit:
                logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            await self._wait_until(lambda: not state.tasks, deadline)

        remaining = list(state.tasks)
        if remaining:
            if not self.force_exit:
                logger.error(
                    "Cancel %d running task(s), timeout graceful shutdown exceeded",
                    len(remaining),
                )
            for task in remaining:
                task.cancel()
            # Let the cancelled requests unwind (their stream answers or closes).
            await asyncio.wait(remaining, timeout=_TICK)
        for conn in list(state.connections):
            conn.close()
        await asyncio.sleep(0)

        if not self.force_exit and self.lifespan is not None:
            await self.lifespan.shutdown()

    async def _wait_until(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Poll ``done`` every tick; False on ``force_exit`` or once ``deadline`` passed."""
        loop = asyncio.get_running_loop()
        # Keep ticking while waiting: connection timeouts (keep-alive) still apply.
        next_tick = loop.time() + 1.0
        while not done():
            if self.force_exit:
                return False
            now = loop.time()
            if deadline is not None and now >= deadline:
                return False
            if now >= next_tick:
                next_tick = now + 1.0
                self.server_state.tick(now)
            delay = _TICK if deadline is None else min(_TICK, deadline - now)
            await asyncio.sleep(delay)
        return True

    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        # signal.signal() only works in the main thread (tests run servers in threads).
        # It is used rather than loop.add_signal_handler so the previous handlers can be
        # put back afterwards.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: the first signal asks for a graceful stop, a second forces it."""
        self._captured_signals.append(sig)
        if self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True


def log_running_on(config: Config, sock: socket.socket, own: bool = False) -> None:
    """Log "Tricorn running on <address> (Press CTRL+C to quit)" for one listener.

    ``own``: the socket was bound from ``config`` by this server (then the configured host
    is shown, and the fd for ``--fd``); otherwise the socket's own address is shown.
    """
    scheme = "https" if config.ssl is not None or config.is_ssl else "http"
    name = sock.getsockname()
    # Decide by the address, not sock.family: socket.fromfd() may carry a wrong family.
    if isinstance(name, (str, bytes)):
        path = name if isinstance(name, str) else os.fsdecode(name)
        where = "unix socket %s"
        args: list[object] = [path or config.uds or "?"]
    else:
        # The configured host reads best ("0.0.0.0", "localhost"); the port comes from
        # the socket so that port 0 shows the port actually picked.
        from_fd = own and config.fd is not None and config.uds is None
        host = config.host if own and not from_fd and config.host else name[0]
        where = "%s://[%s]:%d" if ":" in host else "%s://%s:%d"
        args = [scheme, host, name[1]]
    if own and config.fd is not None and config.uds is None:
        where += " (fd %d)"
        args.append(config.fd)
    logger.info(
        f"Tricorn running on {where} (Press CTRL+C to quit)",
        *args,
        extra={
            "color_message": "Tricorn running on "
            + click.style(where, bold=True)
            + " (Press CTRL+C to quit)"
        },
    )


def _run_in_new_loop(
    main: Coroutine[Any, Any, _T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> _T:
    """``asyncio.run(main, loop_factory=...)`` for Python 3.10 too."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)
    loop = asyncio.new_event_loop() if loop_factory is None else loop_factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
