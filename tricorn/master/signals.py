"""The master's signal queue.

Design note: a signal handler runs between two bytecodes of whatever the master was doing
(logging, forking, iterating over its workers). Doing real work there deadlocks on locks
the interrupted code holds (gunicorn learnt this the hard way). So the handlers here only
append the signal number to a queue; ``signal.set_wakeup_fd`` writes a byte to a pipe the
master's selector watches, which wakes the loop at once; the loop then pops the queue and
does the work. The queue keeps arrival order, and a signal is never lost even when the
wake-up pipe is full (the byte is only a wake-up, the queue holds the truth).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType

# What the master listens to. SIGCHLD only wakes the loop so it reaps at once.
MASTER_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)

# Signals the master does not act on but whose default action would kill it on the spot,
# leaving its workers to notice alone and its pid file and unix socket behind. Caught so
# a stray `kill -ALRM` is one log line, not an outage. (WINCH is left alone: its default is
# to ignore, and a terminal sends it on every resize.)
STRAY_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGPWR", "SIGIO")
    if hasattr(signal, name)
)


class SignalQueue:
    """Signals received by the master, in arrival order, plus a file descriptor to wait on.

    ``install()`` (main thread only) makes the signals land here; ``put()`` feeds one by hand
    (tests, or the master asking itself to stop). ``fileno()`` becomes readable whenever
    something was queued; the loop calls ``drain()`` then ``pop_all()``.
    """

    def __init__(self, signals: Iterable[int] = MASTER_SIGNALS + STRAY_SIGNALS) -> None:
        self.signals = tuple(signals)
        self._queue: collections.deque[int] = collections.deque()
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            os.set_blocking(fd, False)
        self._installed = False
        self._previous: dict[int, object] = {}
        self._previous_wakeup_fd = -1

    def fileno(self) -> int:
        return self._read_fd

    def install(self) -> None:
        """Route ``self.signals`` to this queue (no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._installed = True

    def uninstall(self) -> None:
        """Put back the handlers that were there before ``install()``."""
        if not self._installed:
            return
        self._installed = False
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_wakeup_fd)

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        # Only record: the loop does the work (see the module note).
        self._queue.append(sig)

    def put(self, sig: int) -> None:
        """Queue ``sig`` as if it had been received, and wake the loop."""
        self._queue.append(sig)
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        """Empty the wake-up pipe (the bytes carry no information we rely on)."""
        while True:
            try:
                if not os.read(self._read_fd, 4096):
                    return
            except (BlockingIOError, InterruptedError):
                return

    def pop_all(self) -> list[int]:
        """Every queued signal, oldest first."""
        popped: list[int] = []
        while self._queue:
            popped.append(self._queue.popleft())
        return popped

    def close(self) -> None:
        self.uninstall()
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def reset_in_child(self) -> None:
        """In a freshly forked worker: default handlers, no wake-up fd, pipe closed."""
        if self._installed:
            signal.set_wakeup_fd(-1)
            for sig in self.signals:
                signal.signal(sig, signal.SIG_DFL)
            self._installed = False
            self._previous.clear()
        self._queue.clear()
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def signal_name(sig: int) -> str:
    """``"SIGTERM"`` for 15; the number for an unknown signal."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
