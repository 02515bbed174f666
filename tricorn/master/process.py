"""The master's handle on one worker process: pid, pipe, state and what it reported.

A worker moves BOOTING -> READY -> STOPPING (or straight from BOOTING to STOPPING). Only
the master changes the state; the worker speaks through its pipe with one line per
message (a single write below PIPE_BUF, so lines never interleave):

    ready\n            lifespan startup finished and the listeners accept
    beat <requests>\n  heartbeat from a task on the worker's event loop, with its
                       request count

The handle also makes the decisions that concern one worker alone: whether it is overdue
(no heartbeat, not ready in time, not stopped by its deadline) and whether it reached a
recycling limit. Which workers to start or retire is the arbiter's business.
``fork_worker()`` makes the process and its handle; what the child runs is the worker's
(``tricorn.worker.child``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from tricorn.worker.child import exit_now

logger = logging.getLogger("tricorn.error")

# Longest line a worker may send; anything longer is garbage and dropped.
_MAX_LINE = 256
# A worker must say *ready* within this long after its fork (the app import included).
BOOT_TIMEOUT = 60.0
# SIGABRT lets a stuck worker log where it was stuck; SIGKILL follows after this long.
ABORT_GRACE = 1.0
MIB = 1024 * 1024


class WorkerState(enum.Enum):
    BOOTING = "booting"
    READY = "ready"
    STOPPING = "stopping"


class WorkerProcess:
    """One forked worker as the master sees it."""

    def __init__(self, pid: int, fd: int, generation: int, now: float | None = None) -> None:
        self.pid = pid
        self.fd = fd  # read end of the worker's pipe, -1 once closed
        self.generation = generation
        self.state = WorkerState.BOOTING
        now = time.monotonic() if now is None else now
        self.born = now
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.last_heartbeat = now
        self.requests = 0
        self.rss: int | None = None
        # Set when the master decided to replace this worker (the log line's reason).
        self.recycle_reason: str | None = None
        # Per-worker recycling thresholds, drawn with their jitter at spawn time.
        self.max_requests: int | None = None
        self.lifetime: float | None = None
        # STOPPING: when to escalate to SIGKILL, and whether we already did.
        self.kill_at: float | None = None
        self.killed = False
        self._buffer = b""

    def __repr__(self) -> str:
        return f"<WorkerProcess pid={self.pid} {self.state.value} gen={self.generation}>"

    @property
    def alive_and_serving(self) -> bool:
        return self.state is not WorkerState.STOPPING

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.born

    def read(self) -> list[str] | None:
        """Read what the worker sent: its complete lines, or None at end of file."""
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            return None
        if not data:
            return None
        return self.feed(data)

    def feed(self, data: bytes) -> list[str]:
        """Split ``data`` into complete lines (a partial line waits for the rest)."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > _MAX_LINE:
            self._buffer = b""
        return [line.decode("ascii", "replace") for line in lines if len(line) <= _MAX_LINE]

    def handle_message(self, line: str, now: float) -> bool:
        """Apply one message; True when it was the worker's *ready*."""
        self.last_heartbeat = now
        kind, _, arg = line.partition(" ")
        if kind == "beat" and arg.isdigit():
            self.requests = int(arg)
        elif kind == "ready" and self.state is WorkerState.BOOTING:
            self.state = WorkerState.READY
            self.ready_at = now
            return True
        return False

    def signal(self, sig: int) -> bool:
        """Send ``sig``; False if the process is already gone."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, sig: int, kill_at: float) -> None:
        """Ask the worker to stop with ``sig``; the master SIGKILLs it after ``kill_at``."""
        self.state = WorkerState.STOPPING
        self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)
        self.signal(sig)

    def kill(self) -> None:
        self.killed = True
        self.signal(signal.SIGKILL)

    # -- health and recycling ------------------------------------------------------------

    def check_health(self, now: float, healthcheck: float) -> None:
        """SIGKILL past the stop deadline; SIGABRT when silent for ``healthcheck`` seconds
        or not ready ``BOOT_TIMEOUT`` seconds after the fork."""
        if self.state is WorkerState.STOPPING:
            if self.kill_at is not None and now >= self.kill_at and not self.killed:
                logger.warning("Worker [%d] did not stop in time, sending SIGKILL", self.pid)
                self.kill()
        elif self.state is WorkerState.READY:
            silent = now - self.last_heartbeat
            if silent > healthcheck:
                logger.error(
                    "Worker [%d] timed out: no heartbeat for %.1f s, sending SIGABRT",
                    self.pid,
                    silent,
                )
                self.stop(signal.SIGABRT, now + ABORT_GRACE)
        elif now - self.born > BOOT_TIMEOUT:
            logger.error(
                "Worker [%d] timed out: not ready %.0f s after start, sending SIGABRT",
                self.pid,
                BOOT_TIMEOUT,
            )
            self.stop(signal.SIGABRT, now + ABORT_GRACE)

    def draw_limits(self, max_requests: int | None, jitter: int, lifetime: float | None) -> None:
        """Set this worker's recycling thresholds, each with its own random share of jitter,
        so that workers started together do not all go together."""
        if max_requests is not None:
            self.max_requests = max_requests + random.randint(0, jitter)
        if lifetime is not None:
            self.lifetime = lifetime * random.uniform(1.0, 1.1)  # up to 10% later

    def check_limits(self, now: float, max_memory: int | None) -> None:
        """Mark the worker for replacement once it reached a limit (requests, memory in
        MiB, age); the arbiter starts its successor, then retires it."""
        if self.state is WorkerState.STOPPING:
            return
        rss = self.read_rss()
        if self.state is not WorkerState.READY or self.recycle_reason is not None:
            return
        reason = None
        if self.max_requests is not None and self.requests >= self.max_requests:
            reason = f"max requests: {self.requests} >= {self.max_requests}"
        elif max_memory is not None and rss is not None and rss > max_memory * MIB:
            reason = f"max memory: {rss / MIB:.0f} MiB > {max_memory} MiB"
        elif self.lifetime is not None and self.age(now) >= self.lifetime:
            reason = f"lifetime: {self.age(now):.0f} s >= {self.lifetime:.0f} s"
        if reason is not None:
            self.recycle_reason = reason
            logger.info("Worker [%d] recycled (%s)", self.pid, reason)

    def read_rss(self) -> int | None:
        """Resident memory in bytes (psutil), None when unavailable."""
        try:
            import psutil
        except ImportError:
            return None
        try:
            self.rss = int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, OSError):
            return None
        return self.rss

    def status(self, now: float) -> dict[str, Any]:
        """This worker's row of ``tricorn status`` (JSON-ready)."""
        return {
            "pid": self.pid,
            "state": self.state.value,
            "generation": self.generation,
            "age": round(self.age(now), 3),
            "requests": self.requests,
            "rss": self.read_rss(),
            "heartbeat": round(now - self.last_heartbeat, 3),
            "recycling": self.recycle_reason,
        }

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


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


def run_forked(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` in a freshly forked child and end the process with its exit code.

    Whatever ``main`` raises is logged and ends the child too: a forked worker must never
    return into the master's code (``exit_now`` leaves with ``os._exit``, no atexit hooks).
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


def describe_status(status: int) -> str:
    """A ``waitpid`` status in words: ``exit code 1`` or ``signal 9 (SIGKILL)``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        return f"signal {sig} ({name})"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"status {status}"


def exit_code(status: int) -> int | None:
    """The exit code of a process that exited normally, None if a signal ended it."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
