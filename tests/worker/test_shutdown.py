"""Signals to a real server process (the CLI in its own session, cleaned up with killpg)."""

from __future__ import annotations

import signal
import socket
from urllib.parse import urlsplit

import pytest

from tests.utils import TIME_UNIT, wait_for
from tests.worker.helpers import cli


def _start_request(url: str, path: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    client = socket.create_connection((parts.hostname, parts.port), timeout=10 * TIME_UNIT)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return client


def _read_until(client: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_to_close(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_in_flight_request_finish(http_backend: str, sig: int) -> None:
    with cli("tests.apps:slow_stream", "--port", "0", "--http", http_backend) as process:
        url = process.wait_running()
        with _start_request(url, "/?delay=0.5") as client:
            head = _read_until(client, b"started\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            process.signal(sig)
            rest = _read_until(client, b"0\r\n\r\n")
        assert b"done\n" in rest
        assert process.wait() == 0
    output = process.output
    assert "Shutting down" in output
    assert "Finished server process" in output
    assert "Traceback" not in output


def test_sigterm_runs_lifespan_shutdown(http_backend: str) -> None:
    with cli("tests.apps:lifespan_state", "--port", "0", "--http", http_backend) as process:
        process.wait_running()
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    lines = process.lines
    assert "lifespan startup" in lines
    assert "lifespan shutdown" in lines
    assert any(line.endswith("Application shutdown complete.") for line in lines)


def test_second_sigint_forces_exit(http_backend: str) -> None:
    with cli("tests.apps:slow_stream", "--port", "0", "--http", http_backend) as process:
        url = process.wait_running()
        with _start_request(url, "/?delay=30") as client:
            assert _read_until(client, b"started\n").startswith(b"HTTP/1.1 200 ")
            process.signal(signal.SIGINT)
            wait_for(
                lambda: "Waiting for connections to close" in process.output,
                what="graceful shutdown waiting",
            )
            process.signal(signal.SIGINT)
            assert process.wait(timeout=5) == 0
            assert b"done" not in _read_to_close(client)
    assert "Traceback" not in process.output
    assert "Application shutdown" not in process.output
