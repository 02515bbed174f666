"""The master's handle on one worker process: pid, pipe, state and what it reported.

A worker moves BOOTING -> READY -> STOPPING (or straight from BOOTING to STOPPING). Only
the master changes the state; the worker speaks through its pipe with one line per
message (a single write below PIPE_BUF, so lines never interleave):

    ready\n            lifespan startup finished and the listeners accept
    beat <requests>\n  heartbeat from a task on the worker's event loop, with its
                       request count
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import time

# Longest line a worker may send; anything longer is garbage and dropped.
_MAX_LINE = 256


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

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


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
