"""Listening sockets: host/port (IPv4, IPv6, port 0), unix socket, inherited fd."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests import apps
from tests.worker.helpers import capture_logs, serve_config


def test_port_zero_logs_the_real_port(http_backend: str) -> None:
    with capture_logs() as logs, serve_config(apps.hello, port=0, http=http_backend) as server:
        assert server.started
        url = logs.running_url()
        port = int(url.rsplit(":", 1)[1])
        assert url == f"http://127.0.0.1:{port}"
        assert port != 0
        assert httpx.get(url).text == "Hello, world!"


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_host(http_backend: str) -> None:
    with (
        capture_logs() as logs,
        serve_config(apps.scope_json, host="::1", port=0, http=http_backend),
    ):
        url = logs.running_url()
        assert url.startswith("http://[::1]:")
        port = int(url.rsplit(":", 1)[1])
        scope = httpx.get(url).json()
    assert scope["server"] == ["::1", port]
    assert scope["client"][0] == "::1"


def test_unix_socket(tmp_path: os.PathLike[str], http_backend: str) -> None:
    path = os.path.join(tmp_path, "tricorn.sock")
    with capture_logs() as logs, serve_config(apps.scope_json, uds=path, http=http_backend):
        assert f"Tricorn running on unix socket {path} (Press CTRL+C to quit)" in logs.messages
        assert os.stat(path).st_mode & 0o777 == 0o666
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            scope = client.get("http://tricorn/path?x=1").json()
    assert scope["server"] == [path, None]
    assert scope["client"] is None
    assert scope["path"] == "/path"
    assert not os.path.exists(path), "the unix socket file must be removed on exit"


def test_file_descriptor(http_backend: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        with capture_logs() as logs, serve_config(apps.hello, fd=sock.fileno(), http=http_backend):
            assert httpx.get(f"http://127.0.0.1:{port}").text == "Hello, world!"
            running = [m for m in logs.messages if m.startswith("Tricorn running on")]
            assert running == [
                f"Tricorn running on http://127.0.0.1:{port} (fd {sock.fileno()}) "
                "(Press CTRL+C to quit)"
            ]
    finally:
        sock.close()


def test_address_in_use_fails_startup(http_backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with capture_logs() as logs, serve_config(apps.hello, port=port, http=http_backend) as srv:
            pass
    assert not srv.started
    assert any("in use" in m.lower() for m in logs.messages), logs.messages
    assert not any(m.startswith("Tricorn running on") for m in logs.messages)


def test_unix_socket_in_use_is_left_alone(tmp_path: os.PathLike[str], http_backend: str) -> None:
    path = os.path.join(tmp_path, "busy.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)
        other.listen()
        with (
            capture_logs() as logs,
            serve_config(apps.hello, uds=path, http=http_backend) as server,
        ):
            pass
        assert not server.started
        assert any(path in m for m in logs.messages), logs.messages
        assert os.path.exists(path), "another server's socket file must not be removed"
