"""What a forked worker runs: title, signals, the app import, then a ``Server``.

The master forks with ``fork_worker()``; the child sheds the master's state, then
``serve_forked()`` calls ``run_worker()``, and ``run_forked()`` ends the process with its
exit code through ``exit_now()`` (``os._exit``: a forked
child must never run the master's atexit hooks or return into its loop). Exit codes are
a contract: 3 means the worker could not start (import error, lifespan startup failure, no
listener) and makes the master stop instead of respawning forever.

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
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from tricorn.config import DEFAULT_GRACEFUL_TIMEOUT, STARTUP_FAILURE
from tricorn.master.process import WorkerProcess
from tricorn.master.signals import reopen_log_files
from tricorn.master.sockets import BindError, Listeners
from tricorn.master.systemd import SYSTEMD_VARIABLES
from tricorn.master.watcher import forget_user_modules
from tricorn.worker.channel import Channel
from tricorn.worker.server import Server

logger = logging.getLogger("tricorn.error")


def adapt_config(config: Any) -> None:
    """What a worker of the master does differently from a single-process server."""
    # The master recycles workers (it starts the replacement first), so the server must
    # not stop by itself after --limit-max-requests.
    config.limit_max_requests = None
    # The master kills a worker that drains past its bound: the worker keeps the same bound
    # so it closes what is left and runs lifespan shutdown before that.
    if config.timeout_graceful_shutdown is None:
        config.timeout_graceful_shutdown = DEFAULT_GRACEFUL_TIMEOUT


class WorkerServer(Server):
    """A ``Server`` that reports to the master through ``channel``.

    It tells the master *ready* once lifespan startup is done and it listens
    (``on_started``), runs the heartbeat task on its own event loop, leaves SIGINT to the
    master and does not log its addresses (the master did, once).
    """

    announce = False
    drain_idle_grace = None  # another worker serves the client's next connection: drain exactly

    def __init__(self, config: Any, channel: Channel) -> None:
        self.channel = channel
        if getattr(config, "reload", False):
            # --reload replaces the only worker stop-then-start: no other worker takes the
            # client's next request, so idle connections get the single-process grace.
            self.drain_idle_grace = Server.drain_idle_grace
        super().__init__(config)

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


def fork_worker(generation: int, child_main: Callable[[int], int]) -> WorkerProcess:
    """Fork a worker that runs ``child_main(write_fd)`` and exits with what it returns
    (in the child this never returns); the master's handle on it, reading the pipe."""
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        run_forked(lambda: child_main(write_fd))
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return WorkerProcess(pid, read_fd, generation)


def serve_forked(config: Any, listeners: Listeners, channel: Channel, name: str) -> int:
    """In a forked worker that shed the master's state: serve on the master's listeners
    (or with --reuse-port its own); the exit code."""
    for variable in SYSTEMD_VARIABLES:  # only the master speaks to systemd
        os.environ.pop(variable, None)
    try:
        sockets = listeners.for_worker()
    except BindError as exc:
        logger.error("%s", exc)
        return STARTUP_FAILURE
    return run_worker(config, sockets, channel, name)


def run_forked(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` in a freshly forked child and end the process with its exit code.

    Whatever ``main`` raises is logged and ends the child too: a forked worker must never
    return into the master's code.
    """
    code = 1
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logger.exception("Worker [%d] crashed", os.getpid())
    finally:
        logging.shutdown()
        exit_now(code)


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


def run_worker(config: Any, sockets: list[socket.socket], channel: Channel, name: str) -> int:
    """Serve ``config``'s app on ``sockets`` until told to stop; the exit code."""
    set_process_title(f"tricorn: worker [{name}]")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGABRT, _abort)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if getattr(config, "reload", False):
        forget_user_modules(config.reload_dirs)
    if not config.loaded:
        try:
            config.load()
        except ValueError as exc:  # ConfigError: the message is the whole story
            logger.error("%s", exc)
            return STARTUP_FAILURE
        except Exception:
            logger.exception("Worker [%d] could not load the app", os.getpid())
            return STARTUP_FAILURE
    adapt_config(config)
    server = WorkerServer(config, channel)
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        _flush()
    return 0 if server.started else STARTUP_FAILURE
