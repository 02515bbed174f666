"""WebSockets under the pre-fork master: the real command line, real signals, real clients.

``python -m tricorn tests.protocols.websocket.apps:recorder --workers 2`` runs in its own
session (``tests.master.test_processes.run_cli``, which always ends the group with killpg).
The app prints a line when it receives ``websocket.disconnect``, so the test sees what the
app saw, not only what the client saw.
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.master.test_processes import (
    Master,
    gone,
    group_gone,
    run_cli,
    wait_log,
    wait_serving,
)
from tests.utils import TIME_UNIT, wait_for

APP = "tests.protocols.websocket.apps:recorder"
DISCONNECT_RE = re.compile(r"ws-disconnect pid=(\d+) code=(\d+)")


def ws_connect(master: Master, stack: contextlib.ExitStack) -> tuple[ClientConnection, int]:
    """A client connected to one of the workers (closed with ``stack``), and its pid."""
    url = "ws" + master.url[len("http") :] + "/ws"
    ws = stack.enter_context(
        connect(url, proxy=None, open_timeout=5 * TIME_UNIT, close_timeout=5 * TIME_UNIT)
    )
    pid = int(ws.recv(timeout=5 * TIME_UNIT))
    return ws, pid


def close_code(ws: ClientConnection) -> int:
    """Wait for the server to close the connection; the code of its close frame."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10 * TIME_UNIT)
    assert info.value.rcvd is not None, "no close frame from the server"
    return int(info.value.rcvd.code)


def disconnects(master: Master) -> list[tuple[int, int]]:
    """(pid, code) of every websocket.disconnect the app printed."""
    return [(int(pid), int(code)) for pid, code in DISCONNECT_RE.findall(master.log())]


@contextlib.contextmanager
def clients(master: Master, count: int) -> Iterator[list[tuple[ClientConnection, int]]]:
    with contextlib.ExitStack() as stack:
        yield [ws_connect(master, stack) for _ in range(count)]


@pytest.fixture(params=["websockets", "wsproto"])
def ws_option(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_sigterm_closes_every_client_1012_and_the_app_is_told(
    tmp_path: Path, ws_option: str
) -> None:
    with run_cli(tmp_path, "--workers", "2", "--ws", ws_option, app=APP) as master:
        wait_serving(master, 2)
        tree = master.workers() | {master.pid}
        with clients(master, 6) as connected:
            for ws, _ in connected:  # every connection is alive and echoing
                ws.send("ping")
                assert ws.recv(timeout=5 * TIME_UNIT) == "ping"
            master.signal(signal.SIGTERM)
            codes = [close_code(ws) for ws, _ in connected]
        assert codes == [1012] * 6
        assert master.wait_exit() == 0, master.log()
        seen = disconnects(master)
        assert sorted(seen) == sorted((pid, 1012) for _, pid in connected), master.log()
        wait_for(lambda: all(gone(pid) for pid in tree), what="every process gone")
        assert group_gone(master.pid)
        assert "Traceback" not in master.log()


def test_sighup_retires_clients_with_1012_and_new_workers_accept(
    tmp_path: Path, ws_option: str
) -> None:
    with run_cli(tmp_path, "--workers", "2", "--ws", ws_option, app=APP) as master:
        wait_serving(master, 2)
        old_workers = master.workers()
        with clients(master, 4) as connected:
            assert {pid for _, pid in connected} <= old_workers
            master.signal(signal.SIGHUP)
            codes = [close_code(ws) for ws, _ in connected]
            wait_log(master, "Reloaded:")
            wait_serving(master, 2)
        assert codes == [1012] * 4
        wait_for(lambda: all(gone(pid) for pid in old_workers), what="old workers gone")
        assert sorted(disconnects(master)) == sorted((pid, 1012) for _, pid in connected)
        new_workers = master.workers()
        assert not (new_workers & old_workers)
        with clients(master, 4) as fresh:
            for ws, pid in fresh:
                assert pid in new_workers
                ws.send(b"\x00\x01")
                assert ws.recv(timeout=5 * TIME_UNIT) == b"\x00\x01"
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
