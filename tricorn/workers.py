"""Gunicorn worker classes: ``gunicorn main:app -k tricorn.workers.TricornWorker``.

Gunicorn's arbiter binds the sockets, forks the workers and watches them; each worker here
runs one ``tricorn.Server`` on gunicorn's sockets, in the main thread of the forked process.

The worker contract with gunicorn's arbiter, and where each part is kept:

* heartbeat: ``notify()`` (touching the worker's temporary file) is called from a task on
  the event loop, so a blocked loop stops the heartbeat and the arbiter's ``--timeout``
  notices. The same task stops the server when the arbiter changed (``ppid``) or the worker
  was told to stop before the server captured the signals (``alive``);
* ``--max-requests`` (+ jitter, drawn by gunicorn into ``max_requests``): the server stops
  gracefully past that many requests and the arbiter starts the replacement;
* ``--graceful-timeout``: the server's own drain bound, so it cancels what is left and runs
  lifespan shutdown before the arbiter's SIGKILL;
* signals: TERM drains, INT and QUIT stop quickly, USR1 reopens the log files, ABRT (the
  arbiter's timeout) logs where the worker was stuck and exits at once;
* exit status 3 (gunicorn's ``WORKER_BOOT_ERROR``) when the app cannot be loaded or its
  lifespan startup fails, so the arbiter stops instead of respawning forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import traceback
from types import FrameType
from typing import Any, ClassVar

from gunicorn.workers.base import Worker  # type: ignore[import-untyped]

from tricorn.config import STARTUP_FAILURE, Config
from tricorn.worker.child import exit_now
from tricorn.worker.server import Server

__all__ = ["TricornWorker", "TricornH11Worker"]

# gunicorn's Arbiter.WORKER_BOOT_ERROR: the arbiter halts when a worker exits with it.
WORKER_BOOT_ERROR = STARTUP_FAILURE

# Heartbeat period bound: gunicorn hands the worker half of its --timeout; beating twice
# within that leaves room for a busy (not blocked) loop.
_MAX_HEARTBEAT = 1.0


class TricornWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker serving an ASGI (or ASGI 2 / WSGI) app with Tricorn.

    Use it with ``gunicorn main:app -k tricorn.workers.TricornWorker``. Gunicorn's settings
    are mapped onto ``tricorn.Config``: ``keepalive`` (keep-alive timeout),
    ``worker_connections`` (concurrency limit), ``backlog``, ``graceful_timeout``,
    ``max_requests`` (+ jitter), ``forwarded_allow_ips``, ``root_path``, ``asgi_lifespan``
    and the TLS settings; Tricorn's log records go to gunicorn's error and access log
    handlers at gunicorn's level (no access log unless gunicorn keeps one).

    Subclass and set ``CONFIG_KWARGS`` to pass other ``Config`` arguments (they win over the
    mapped ones), as with uvicorn's worker::

        class MyWorker(TricornWorker):
            CONFIG_KWARGS = {"loop": "asyncio", "http": "h11", "proxy_headers": False}
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "auto"}

    alive: bool  # gunicorn's: False once the worker was told to stop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        access_enabled = self._use_gunicorn_loggers()
        self._quit = False
        self.config = Config(**self._config_kwargs(access_enabled))

    def _use_gunicorn_loggers(self) -> bool:
        """Send Tricorn's records to gunicorn's handlers; whether an access log is kept."""
        error_log: logging.Logger = self.log.error_log
        access_log: logging.Logger = self.log.access_log
        for name in ("tricorn.error", "tricorn.asgi"):
            logger = logging.getLogger(name)
            logger.handlers = list(error_log.handlers)
            logger.setLevel(error_log.level)
            logger.propagate = False
        access = logging.getLogger("tricorn.access")
        access.handlers = list(access_log.handlers)
        access.setLevel(access_log.level)
        access.propagate = False
        # gunicorn keeps no access log unless asked (--access-logfile, a log config,
        # syslog): then the server must not even build the records (hot path).
        return bool(access_log.handlers)

    def _config_kwargs(self, access_enabled: bool) -> dict[str, Any]:
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "app": None,  # gunicorn loads it after the fork: see run()
            "log_config": None,  # gunicorn owns logging
            "access_log": access_enabled,
            "timeout_keep_alive": cfg.keepalive,
            "timeout_graceful_shutdown": cfg.graceful_timeout,
            "limit_concurrency": cfg.worker_connections or None,
            # gunicorn drew the jitter already (self.max_requests); sys.maxsize means off.
            "limit_max_requests": self.max_requests if cfg.max_requests > 0 else None,
            "forwarded_allow_ips": cfg.forwarded_allow_ips,
        }
        # gunicorn >= 24 has these for its own ASGI worker: they mean the same here.
        if "root_path" in cfg.settings:
            kwargs["root_path"] = cfg.root_path
        if "asgi_lifespan" in cfg.settings:
            kwargs["lifespan"] = cfg.asgi_lifespan
        if cfg.backlog:
            kwargs["backlog"] = cfg.backlog
        if cfg.is_ssl:
            options = cfg.ssl_options
            tls = {
                "ssl_keyfile": options.get("keyfile"),
                "ssl_certfile": options.get("certfile"),
                "ssl_keyfile_password": options.get("password"),
                "ssl_version": options.get("ssl_version"),
                "ssl_cert_reqs": options.get("cert_reqs"),
                "ssl_ca_certs": options.get("ca_certs"),
                "ssl_ciphers": options.get("ciphers"),
            }
            # Only what gunicorn has: the rest keeps Tricorn's defaults.
            kwargs.update({name: value for name, value in tls.items() if value is not None})
        kwargs.update(self.CONFIG_KWARGS)
        return kwargs

    # -- in the forked worker ----------------------------------------------------------

    def run(self) -> None:
        """Serve gunicorn's app on gunicorn's sockets until told to stop."""
        # gunicorn's signal handlers (init_signals) stay while the app is imported: TERM
        # there only clears `alive`, which the heartbeat turns into a stop. The server
        # replaces TERM, INT, QUIT and USR1 while it runs; ABRT is handle_abort below.
        config = self.config
        config.app = self.wsgi
        try:
            config.load()
            config.get_loop_factory()  # a missing uvloop is a boot error, not a crash
        except Exception as exc:
            if isinstance(exc, ValueError):  # ConfigError: one line says it all
                self.log.error("%s", exc)
            else:
                self.log.exception("Worker (pid:%s) could not load the app", os.getpid())
            sys.exit(WORKER_BOOT_ERROR)
        server = _GunicornServer(config, self)
        # gunicorn wraps each listener; the event loops want the socket itself.
        sockets: list[socket.socket] = [getattr(sock, "sock", sock) for sock in self.sockets]
        try:
            server.run(sockets=sockets)
        finally:
            # The loop put SIG_DFL back on the signals it handled: gunicorn's handlers
            # again, so a late USR1 (logrotate) does not kill an exiting worker.
            signal.signal(signal.SIGQUIT, self.handle_quit)
            signal.signal(signal.SIGUSR1, self.handle_usr1)
        if not server.started:
            # Startup failed (logged): make gunicorn's arbiter stop, not respawn forever.
            sys.exit(WORKER_BOOT_ERROR)
        if self._quit:
            self.cfg.worker_int(self)

    async def heartbeat(self, server: Server) -> None:
        """Tell the arbiter this worker's loop is alive; stop the server when asked to.

        Runs as a task on the server's event loop until cancelled, through the graceful
        shutdown too (the arbiter's timeout applies to a draining worker as well).
        """
        interval = _MAX_HEARTBEAT
        if self.timeout:
            interval = min(_MAX_HEARTBEAT, self.timeout / 2)
        while True:
            self.notify()
            if not server.should_exit:
                if not self.alive:
                    server.should_exit = True
                elif os.getppid() != self.ppid:
                    self.log.info("Parent changed, shutting down: %s", self)
                    self.alive = False
                    server.should_exit = True
            await asyncio.sleep(interval)

    def stop_gracefully(self, server: Server) -> None:
        """SIGTERM: drain the in-flight requests; a second one stops without draining."""
        self.alive = False
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    def stop_quickly(self, server: Server) -> None:
        """SIGQUIT / SIGINT: close the listeners and connections without draining."""
        self.alive = False
        self._quit = True
        server.should_exit = True
        server.force_exit = True

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """SIGABRT, gunicorn's timeout: the loop is stuck. Say where, run the
        ``worker_abort`` hook, exit with status 1 at once."""
        self.alive = False
        stack = "".join(traceback.format_stack(frame)).rstrip() if frame is not None else ""
        self.log.error(
            "Worker (pid:%s) aborted: no heartbeat, the event loop was blocked\n%s",
            os.getpid(),
            stack,
        )
        try:
            self.cfg.worker_abort(self)
        finally:
            # Unwinding from here would run through the blocked request and the event
            # loop's cleanup, which may block again: leave now (gunicorn would SIGKILL).
            exit_now(1)


class TricornH11Worker(TricornWorker):
    """``TricornWorker`` with the pure-Python stack: the asyncio loop and h11."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "asyncio", "http": "h11"}


class _GunicornServer(Server):
    """A ``Server`` run by a gunicorn worker: heartbeat task, gunicorn's signal meanings."""

    announce = False  # gunicorn logged "Listening at: ..." once
    # drain_idle_grace stays the single-process one: gunicorn does not tell a worker
    # whether the whole server stops (then nobody takes the client's next request) or it
    # is only recycled, and an idle keep-alive connection must not hold a stop for the
    # whole keep-alive timeout.

    def __init__(self, config: Config, worker: TricornWorker) -> None:
        super().__init__(config)
        self.worker = worker

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # Run on the loop, not in the signal handler: reopening takes logging locks.
        loop.add_signal_handler(signal.SIGQUIT, self.worker.stop_quickly, self)
        loop.add_signal_handler(signal.SIGUSR1, self.worker.log.reopen_files)
        # Started before serve(): a long lifespan startup beats too.
        heartbeat = asyncio.create_task(self.worker.heartbeat(self))
        try:
            await super().serve(sockets=sockets)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            loop.remove_signal_handler(signal.SIGQUIT)
            loop.remove_signal_handler(signal.SIGUSR1)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not the base class's: SIGINT means a quick stop under gunicorn (the arbiter sends
        # it on Ctrl+C), and is not re-raised as KeyboardInterrupt afterwards.
        if sig == signal.SIGINT:
            self.worker.stop_quickly(self)
            return
        self.worker.stop_gracefully(self)
