"""Test helpers: one time unit, condition waits, and a real server on 127.0.0.1.

Waits are expressed in ``TIME_UNIT`` seconds, scaled by ``TRICORN_TEST_TIME_UNIT`` on slow
machines. Never sleep and hope: wait for a condition with ``wait_for``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

TIME_UNIT = float(os.environ.get("TRICORN_TEST_TIME_UNIT", "1.0"))

HTTP_BACKENDS = ["httptools", "h11"]


def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` time units."""
    deadline = time.monotonic() + timeout * TIME_UNIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class RunningServer:
    """A ``tricorn.Server`` serving in a background thread (see ``run_server``)."""

    def __init__(self, server: Any, sock: socket.socket, thread: threading.Thread) -> None:
        self.server = server
        self.sock = sock
        self.thread = thread
        self.host, self.port = sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        """A raw client socket connected to the server."""
        client = socket.create_connection((self.host, self.port), timeout=5 * TIME_UNIT)
        return client


@contextlib.contextmanager
def run_server(app: Any, **settings: Any) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1 (a free port) with a real ``tricorn.Server``.

    ``settings`` are ``tricorn.Config`` keyword arguments. The server is asked to exit on
    leaving the block and the thread is joined with a bound.
    """
    from tricorn import Config, Server

    settings.setdefault("lifespan", "off")
    settings.setdefault("log_config", None)
    config = Config(app, **settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = Server(config)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_for(lambda: server.started or errors or not thread.is_alive(), what="server start")
    if errors:
        raise errors[0]
    running = RunningServer(server, sock, thread)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=10 * TIME_UNIT)
        sock.close()
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5 * TIME_UNIT)
            raise AssertionError("server did not stop within its bound")
        if errors:
            raise errors[0]
