"""Server start, listen and stop, over real sockets, in a thread (no signals)."""

from __future__ import annotations

import os
import random
import socket
import threading

import httpx
import pytest

from tests import apps
from tests.utils import TIME_UNIT, run_server, wait_for
from tests.worker.helpers import capture_logs


def test_start_and_stop_logs(http_backend: str) -> None:
    with capture_logs() as logs:
        with run_server(apps.hello, http=http_backend) as running:
            response = httpx.get(running.url)
            assert response.status_code == 200
            assert response.text == "Hello, world!"
        pid = os.getpid()
    assert logs.messages == [
        f"Started server process [{pid}]",
        f"Tricorn running on http://127.0.0.1:{running.port} (Press CTRL+C to quit)",
        "Shutting down",
        f"Finished server process [{pid}]",
    ]


def test_lifespan_logs_and_events_around_serving(http_backend: str) -> None:
    app = apps.LifespanRecorder()
    with capture_logs() as logs, run_server(app, http=http_backend, lifespan="on") as running:
        assert app.events == ["startup"]
        assert httpx.get(running.url).status_code == 200
    assert app.events == ["startup", "shutdown"]
    messages = logs.messages
    expected = [
        "Waiting for application startup.",
        "Application startup complete.",
        "Shutting down",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
    ]
    assert [m for m in messages if m in expected] == expected
    assert messages.index("Application startup complete.") < next(
        i for i, m in enumerate(messages) if m.startswith("Tricorn running on")
    )


def test_limit_max_requests_exits_after_n_responses(http_backend: str) -> None:
    with (
        capture_logs() as logs,
        run_server(apps.hello, http=http_backend, limit_max_requests=3) as running,
    ):
        with httpx.Client() as client:
            for _ in range(3):
                assert client.get(running.url).status_code == 200
        wait_for(lambda: not running.thread.is_alive(), what="server exit after 3 requests")
    assert "Maximum request limit of 3 exceeded. Terminating process." in logs.messages


def test_limit_max_requests_jitter_is_drawn_once(
    monkeypatch: pytest.MonkeyPatch, http_backend: str
) -> None:
    draws: list[tuple[int, int]] = []

    def randint(low: int, high: int) -> int:
        draws.append((low, high))
        return high

    monkeypatch.setattr(random, "randint", randint)
    with (
        capture_logs() as logs,
        run_server(
            apps.hello, http=http_backend, limit_max_requests=2, limit_max_requests_jitter=2
        ) as running,
    ):
        served = 0
        with httpx.Client() as client:
            while running.thread.is_alive() and served < 10:
                try:
                    client.get(running.url)
                except httpx.TransportError:
                    break
                served += 1
        wait_for(lambda: not running.thread.is_alive(), what="server exit")
    assert draws == [(0, 2)]
    assert served >= 4
    assert "Maximum request limit of 4 exceeded. Terminating process." in logs.messages


def _raw_get(sock: socket.socket, path: str = "/", close: bool = False) -> None:
    extra = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_graceful_shutdown_finishes_in_flight_request(http_backend: str) -> None:
    gate = apps.Gate()
    with capture_logs() as logs, run_server(gate, http=http_backend) as running:
        with running.connect() as client:
            _raw_get(client)
            wait_for(gate.entered.is_set, what="request in the app")
            running.server.should_exit = True
            wait_for(
                lambda: "Waiting for connections to close. (CTRL+C to force quit)" in logs.messages,
                what="shutdown waiting for the connection",
            )
            # No new connections once shutting down.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((running.host, running.port), timeout=TIME_UNIT)
            assert running.thread.is_alive()
            gate.release.set()
            response = _read_all(client)
        running.thread.join(5 * TIME_UNIT)
        assert not running.thread.is_alive()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"released")
    assert not gate.cancelled.is_set()
    assert not any(m.startswith("Cancel ") for m in logs.messages)


def test_idle_keep_alive_connection_closes_during_shutdown(http_backend: str) -> None:
    # Connection timeouts are still swept while shutdown waits for connections.
    with (
        run_server(apps.hello, http=http_backend, timeout_keep_alive=1) as running,
        running.connect() as client,
    ):
        _raw_get(client)
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
        running.server.should_exit = True
        running.thread.join(3 * TIME_UNIT)
        assert not running.thread.is_alive()
        assert client.recv(65536) == b""


def test_timeout_graceful_shutdown_cancels_slow_request(http_backend: str) -> None:
    gate = apps.Gate()
    with (
        capture_logs() as logs,
        run_server(gate, http=http_backend, timeout_graceful_shutdown=0.2) as running,
        running.connect() as client,
    ):
        _raw_get(client)
        wait_for(gate.entered.is_set, what="request in the app")
        running.server.should_exit = True
        wait_for(gate.cancelled.is_set, what="the request to be cancelled")
        running.thread.join(2 * TIME_UNIT)
        assert not running.thread.is_alive()
        assert not client.recv(65536).startswith(b"HTTP/1.1 200")
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in logs.messages


def test_force_exit_stops_waiting_and_skips_lifespan_shutdown(http_backend: str) -> None:
    gate = apps.Gate()
    recorder = apps.LifespanRecorder()

    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        if scope["type"] == "lifespan":
            await recorder(scope, receive, send)
        else:
            await gate(scope, receive, send)

    with (
        capture_logs() as logs,
        run_server(app, http=http_backend, lifespan="on") as running,
        running.connect() as client,
    ):
        _raw_get(client)
        wait_for(gate.entered.is_set, what="request in the app")
        running.server.should_exit = True
        wait_for(
            lambda: any(m.startswith("Waiting for connections") for m in logs.messages),
            what="shutdown waiting",
        )
        running.server.force_exit = True
        running.thread.join(2 * TIME_UNIT)
        assert not running.thread.is_alive()
    assert gate.cancelled.is_set()
    assert recorder.events == ["startup"]


def test_main_loop_ticks_the_server_state_once_a_second(
    monkeypatch: pytest.MonkeyPatch, http_backend: str
) -> None:
    from tricorn.protocols.state import ServerState

    ticks: list[float] = []
    original = ServerState.tick

    def tick(self: ServerState, now: float) -> None:
        ticks.append(now)
        original(self, now)

    monkeypatch.setattr(ServerState, "tick", tick)
    with run_server(apps.hello, http=http_backend) as running:
        wait_for(lambda: len(ticks) >= 2, timeout=3, what="two ticks")
        assert 0.9 <= ticks[1] - ticks[0] <= 1.5
        assert b"date" in running.server.server_state.default_header_names


def test_signal_handlers_in_main_thread_are_restored(http_backend: str) -> None:
    import signal

    from tricorn import Config, Server

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = Server(Config(apps.hello, port=0, http=http_backend, log_config=None, lifespan="off"))
    seen: list[object] = []

    def stop() -> None:
        wait_for(lambda: server.started, what="server start")
        seen.append(signal.getsignal(signal.SIGTERM))
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=stop)
    helper.start()
    server.run()  # in the main thread: handlers installed; SIGTERM stops it without raising
    helper.join(5 * TIME_UNIT)
    assert seen == [server.handle_exit]
    assert server.should_exit and not server.force_exit
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_second_signal_forces_exit() -> None:
    import signal

    from tricorn import Config, Server

    server = Server(Config(apps.hello, log_config=None))
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.force_exit
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_single_process_does_not_wait_out_keep_alive_on_shutdown(http_backend: str) -> None:
    # Ctrl+C with an idle browser tab: a short grace, not the 60 s keep-alive timeout.
    with (
        run_server(apps.hello, http=http_backend, timeout_keep_alive=60) as running,
        running.connect() as client,
    ):
        _raw_get(client)
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
        running.server.should_exit = True
        running.thread.join(4 * TIME_UNIT)
        assert not running.thread.is_alive()
        assert client.recv(65536) == b""
