"""What a forked worker runs: title, signals, the app import, then a ``Server``.

The master forks (``tricorn.master.process.fork_worker``) and sheds its own state in the
child (its signal handling, pipes, systemd's variables, the modules --reload must import
again); then ``serve_forked()`` takes the worker's listeners and calls ``run_worker()``,
and the process ends with its exit code through ``exit_now()`` (``os._exit``: a forked
child must never run the master's atexit hooks or return into its loop). Exit codes are
a contract: 3 means the worker could not start (import error, lifespan startup failure, no
listener) and makes the master stop instead of respawning forever. This module knows
nothing of the master beyond its pipe (``channel``).

Signals in a worker: SIGTERM drains (the server's graceful shutdown), SIGQUIT stops at
once, SIGUSR1 reopens log files, SIGABRT (sent by the master when the heartbeat stopped)
logs where the worker was stuck and exits. SIGINT is ignored: a Ctrl+C in a terminal
reaches the whole process group, and the master already relays it as SIGTERM (reacting
twice would turn the drain into a forced stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import traceback
from types import FrameType
from typing import NoReturn

from tricorn.config import DEFAULT_GRACEFUL_TIMEOUT, STARTUP_FAILURE, Config
from tricorn.logs import reopen_log_files
from tricorn.net.listeners import Listeners
from tricorn.net.sockets import BindError
from tricorn.worker.channel import Channel
from tricorn.worker.server import Server

logger = logging.getLogger("tricorn.error")


class WorkerServer(Server):
    """A ``Server`` that reports to the master through ``channel``.

    It tells the master *ready* once lifespan startup is done and it listens
    (``on_started``), runs the heartbeat task on its own event loop, leaves SIGINT to the
    master and does not log its addresses (the master did, once). Its limits are its own,
    not the config's: it never stops after ``--limit-max-requests`` (the master recycles
    workers, replacement first), and it drains within the master's bound even when
    ``--timeout-graceful-shutdown`` is unset (the master kills a worker past it, so the
    worker closes what is left and runs lifespan shutdown before that).
    """

    announce = False
    drain_idle_grace = None  # another worker serves the client's next connection: drain exactly

    def __init__(self, config: Config, channel: Channel) -> None:
        self.channel = channel
        if config.reload:
            # --reload replaces the only worker stop-then-start: no other worker takes the
            # client's next request, so idle connections get the single-process grace.
            self.drain_idle_grace = Server.drain_idle_grace
        super().__init__(config)
        self.limit_max_requests = None
        if self.timeout_graceful_shutdown is None:
            self.timeout_graceful_shutdown = DEFAULT_GRACEFUL_TIMEOUT

    def on_started(self) -> None:
        self.channel.ready()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, self.quick_exit)
        loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
        helpers = [
            asyncio.create_task(self.channel.heartbeat(self)),
        ]
        try:
            await super().serve(sockets=sockets)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            loop.remove_signal_handler(signal.SIGQUIT)
            loop.remove_signal_handler(signal.SIGUSR1)

    def quick_exit(self) -> None:
        self.should_exit = True
        self.force_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            return  # the master relays it (see the module note)
        super().handle_exit(sig, frame)


def _abort(sig: int, frame: FrameType | None) -> None:
    # The master found this worker stuck. Say where, then go: it will SIGKILL us anyway.
    stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
    logger.error(
        "Worker [%d] aborted: no heartbeat (event loop blocked?)\n%s", os.getpid(), stack.rstrip()
    )
    exit_now(1)


def serve_forked(config: Config, listeners: Listeners, channel: Channel, name: str) -> int:
    """In a forked worker that shed the master's state: serve on the master's listeners
    (or with --reuse-port its own); the exit code."""
    try:
        sockets = listeners.for_worker()
    except BindError as exc:
        logger.error("%s", exc)
        return STARTUP_FAILURE
    return run_worker(config, sockets, channel, name)


def exit_now(code: int) -> NoReturn:
    """Flush the logs and leave the process with ``code`` (``os._exit``, no atexit hooks)."""
    _flush()
    os._exit(code)


def _flush() -> None:
    # The root's and ours: a gunicorn worker (tricorn.workers) puts gunicorn's on tricorn.error.
    for name in (None, "tricorn", "tricorn.error"):
        for handler in logging.getLogger(name).handlers:
            with contextlib.suppress(Exception):
                handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def set_process_title(title: str) -> None:
    """``ps`` shows ``title`` when setproctitle is installed; nothing happens otherwise."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


def run_worker(config: Config, sockets: list[socket.socket], channel: Channel, name: str) -> int:
    """Serve ``config``'s app on ``sockets`` until told to stop; the exit code."""
    set_process_title(f"tricorn: worker [{name}]")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGABRT, _abort)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not config.loaded:
        try:
            config.load()
        except ValueError as exc:  # ConfigError: the message is the whole story
            logger.error("%s", exc)
            return STARTUP_FAILURE
        except Exception:
            logger.exception("Worker [%d] could not load the app", os.getpid())
            return STARTUP_FAILURE
    server = WorkerServer(config, channel)
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        _flush()
    return 0 if server.started else STARTUP_FAILURE
