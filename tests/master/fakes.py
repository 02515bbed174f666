"""Fakes for the master's unit tests: workers without processes, ``os.kill`` and
``os.waitpid`` recorded instead of done."""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.worker.helpers import LogCapture
from tricorn.config import Config
from tricorn.master.arbiter import Arbiter
from tricorn.master.process import WorkerProcess, WorkerState
from tricorn.master.signals import SignalQueue


def fake_config(**settings: Any) -> Config:
    """A real ``Config`` for the master's unit tests (nothing is bound or imported)."""
    defaults: dict[str, Any] = {
        "port": 0,
        "backlog": 16,
        "workers": 2,
        "timeout_worker_healthcheck": 5,
        "timeout_graceful_shutdown": 2,
        "log_config": None,
    }
    defaults.update(settings)
    return Config("tests.apps:hello", **defaults)


class FakeOS:
    """Stands in for ``os.kill`` / ``os.waitpid``: signals are recorded, and a signal that
    ends a process makes it reapable (as the kernel would)."""

    FATAL = {signal.SIGTERM, signal.SIGKILL, signal.SIGQUIT, signal.SIGABRT}

    def __init__(self, queue: SignalQueue | None = None) -> None:
        self.sent: list[tuple[int, int]] = []
        self.exited: list[tuple[int, int]] = []
        self.live: set[int] = set()
        self.auto_exit = False
        self.queue = queue

    def kill(self, pid: int, sig: int) -> None:
        if pid not in self.live:
            raise ProcessLookupError(pid)
        self.sent.append((pid, sig))
        if self.auto_exit and sig in self.FATAL:
            status = sig if sig == signal.SIGKILL else 0  # drained: exit 0
            self.exit(pid, status)

    def exit(self, pid: int, status: int) -> None:
        self.live.discard(pid)
        self.exited.append((pid, status))
        if self.queue is not None:
            self.queue.put(signal.SIGCHLD)

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        assert pid == -1 and options == os.WNOHANG
        if self.exited:
            return self.exited.pop(0)
        if not self.live:
            raise ChildProcessError
        return 0, 0

    def signals_to(self, pid: int) -> list[int]:
        return [sig for p, sig in self.sent if p == pid]


class FakeArbiter(Arbiter):
    """An arbiter whose workers are handles without processes."""

    def __init__(self, config: Config, fake_os: FakeOS, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.fake_os = fake_os
        self.next_pid = 1000

    def start_process(self) -> WorkerProcess:
        self.next_pid += 1
        self.fake_os.live.add(self.next_pid)
        return WorkerProcess(self.next_pid, -1, self.generation)

    def ready_all(self) -> None:
        for worker in list(self.workers.values()):
            if worker.state is WorkerState.BOOTING:
                assert worker.handle_message("ready", worker.last_heartbeat)
                self.worker_ready(worker)


def status_exit(code: int) -> int:
    """The ``waitpid`` status of a process that exited with ``code``."""
    return code << 8


Logs = LogCapture  # the master's tests read .text and .messages
