"""Helpers for the worker tests: captured server logs, a server bound from its own config,
and the CLI in a real subprocess."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.utils import TIME_UNIT, wait_for

ROOT = Path(__file__).resolve().parents[2]
RUNNING_RE = re.compile(r"Tricorn running on (\S+)")


class LogCapture(logging.Handler):
    """Collects the formatted messages of one logger (thread-safe enough for tests)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    def running_url(self) -> str:
        for message in self.messages:
            match = RUNNING_RE.search(message)
            if match:
                return match.group(1)
        raise AssertionError(f"no 'running on' line in {self.messages}")


@contextlib.contextmanager
def capture_logs(name: str = "tricorn.error") -> Iterator[LogCapture]:
    logger = logging.getLogger(name)
    handler = LogCapture()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@contextlib.contextmanager
def serve_config(app: Any, **settings: Any) -> Iterator[Any]:
    """Run ``Server(Config(app, **settings)).run()`` in a thread: the server binds its own
    socket (host/port, uds or fd). Yields the server once started (or once it gave up)."""
    from tricorn import Config, Server

    settings.setdefault("lifespan", "off")
    settings.setdefault("log_config", None)
    server = Server(Config(app, **settings))
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), what="server start")
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10 * TIME_UNIT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5 * TIME_UNIT)
            raise AssertionError("server did not stop within its bound")
        if errors:
            raise errors[0]


class CLIProcess:
    """``python -m tricorn ...`` in its own session; output (stdout + stderr) collected."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env.pop("TRICORN_TEST_TIME_UNIT", None)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tricorn", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_running(self) -> str:
        """Wait for the 'running on' line; return the URL (or unix socket path) it names."""

        def running() -> bool:
            return bool(RUNNING_RE.search(self.output)) or self.proc.poll() is not None

        wait_for(running, timeout=15, what="'running on' log line")
        match = RUNNING_RE.search(self.output)
        if match is None:
            self.wait()
            raise AssertionError(f"server did not start:\n{self.output}")
        return match.group(1)

    def wait(self, timeout: float = 10) -> int:
        code = self.proc.wait(timeout=timeout * TIME_UNIT)
        self._reader.join(timeout=5 * TIME_UNIT)
        return code

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5 * TIME_UNIT)
        else:
            # The server may have left children in its session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reader.join(timeout=5 * TIME_UNIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def cli(*args: str) -> Iterator[CLIProcess]:
    process = CLIProcess(*args)
    try:
        yield process
    finally:
        process.close()
